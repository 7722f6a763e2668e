#!/usr/bin/env python3
"""scripts/scenario-sets.py DIR: the SQL that loads the shipped scenario data.

Prints, for the install script (scripts/install-script.py runs it after
src/scenarios.sql, whose header names it), an INSERT of DIR/sample_policy.json
into wval.sample_policies and one wval._load_scenario_set call per other
DIR/<set>.json, in the order of the file names, with the set's expected
outcomes from wval._scenario_expectations.  Each file must be valid JSON (a
set: an array of runs) and is embedded between $json$ quotes unchanged.
"""
import json
import os
import sys


def quoted(path):
    text = open(path, encoding='utf-8').read()
    try:
        json.loads(text)
    except ValueError as e:
        sys.exit('%s: not valid JSON: %s' % (path, e))
    if '$json$' in text:
        sys.exit('%s: contains $json$, the quote of the install script' % path)
    return '$json$' + text + '$json$'


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    d = sys.argv[1]
    out = ['INSERT INTO wval.sample_policies VALUES (\'sample\', %s);' % quoted(os.path.join(d, 'sample_policy.json'))]
    for name in sorted(os.listdir(d)):
        if not name.endswith('.json') or name == 'sample_policy.json':
            continue
        s = name[:-len('.json')]
        if not s.replace('_', '').isalnum():
            sys.exit('%s: a set name is letters, digits and _' % name)
        out.append("SELECT wval._load_scenario_set('%s', %s, (SELECT expected FROM wval._scenario_expectations WHERE set_name = '%s'));"
                   % (s, quoted(os.path.join(d, name)), s))
    print('\n'.join(out))


main()
