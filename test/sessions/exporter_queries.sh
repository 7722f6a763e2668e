#!/usr/bin/env bash
# Every query of docs/examples/postgres_exporter_queries.yaml runs as an
# analyst and returns the columns its metrics name; the alert rules only use
# metric names those queries produce.
set -euo pipefail
py=python3; [ -x /usr/bin/python3 ] && py=/usr/bin/python3     # Debian's, with python3-yaml
"$py" - <<'PY'
import os, subprocess, sys, re, yaml
repo = os.environ["WVAL_REPO"]
queries = yaml.safe_load(open(os.path.join(repo, "docs/examples/postgres_exporter_queries.yaml")))
rules = yaml.safe_load(open(os.path.join(repo, "docs/examples/alert_rules.yml")))
psql = [os.path.join(os.environ["WVAL_BINDIR"], "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-At"]
produced = set()
failed = 0
for name, q in queries.items():
    cols = [c for m in q["metrics"] for c in m]
    produced.update(name + "_" + c for m in q["metrics"] for c, spec in m.items() if spec["usage"] != "LABEL")
    sql = "SET ROLE wval_analyst; CREATE TEMP VIEW q AS " + q["query"].strip().rstrip(";") + \
          "; SELECT string_agg(attname, ',' ORDER BY attnum) FROM pg_attribute WHERE attrelid = 'q'::regclass AND attnum > 0"
    out = subprocess.run(psql + ["-c", sql], capture_output=True, text=True)
    got = out.stdout.strip().splitlines()[-1].split(",") if out.returncode == 0 and out.stdout.strip() else []
    ok = out.returncode == 0 and sorted(got) == sorted(cols)
    failed += not ok
    print(("ok" if ok else "not ok") + " - query %s returns %s%s" % (name, cols, "" if ok else " (got %r; %s)" % (got, out.stderr.strip())))
for r in rules["groups"][0]["rules"]:
    for n in re.findall(r"wval_[a-z_0-9]+", r["expr"]):
        ok = n in produced
        failed += not ok
        print(("ok" if ok else "not ok") + " - alert %s uses %s" % (r["alert"], n))
sys.exit(1 if failed else 0)
PY
