#!/usr/bin/env python3
"""test/fuzz/fuzz.py: catalogue-driven fuzzer for wval's SQL entry points.

    python3 test/fuzz/fuzz.py --seconds N --seed S [--only f1,f2] [--server-log PATH]
                              [--known FILE] [--errors FILE] [--statement-timeout 10s]

The server comes from the libpq environment (PGHOST, PGPORT, PGDATABASE,
PGUSER); PGUSER must be a superuser: the fuzzer creates a login member of each
wval role (fuzz_analyst, fuzz_producer, fuzz_validator, fuzz_admin) and a small
fixture (worlds fz-world / fz-other, an active policy, a run, a producer, a
snapshot, a consumer group, a scenario set, live returns).

It enumerates from the catalogue every function of the extension (public
wval_* and wval.*) that is granted to one of the four wval roles and calls
each one as a login member of a role that has the grant:

  1. valid arguments, then NULL in each position;
  2. each hostile value of the argument's type in each position (the other
     arguments valid);
  3. random combinations of hostile values until the time is up.

Every call is its own transaction under a statement_timeout; about a third of
the successful calls commit, so that the read paths (explain, report, live
report, views, chain checks, invariants) that run between the phases and at the
end meet what the hostile calls stored.

It fails (exit status 1, printing the input) on a backend crash (connection
lost, or "terminated by signal" in --server-log), on XX000 (internal error)
and on any SQLSTATE that test/fuzz/errors.json does not document for the
function.  --known names outcomes that are known defects being fixed
(test/fuzz/known.txt): they are counted as "known", not failed.

The same seed gives the same sequence of inputs; how far the sequence gets
depends on --seconds and on the machine.
"""
import argparse
import copy
import functools
import json
import os
import random
import sys
import time

try:
    import psycopg2
except ImportError:
    # python3 on PATH may not be Debian's (pyenv, a venv): python3-psycopg2
    # is installed for /usr/bin/python3
    if os.path.realpath(sys.executable) != os.path.realpath('/usr/bin/python3') and os.path.exists('/usr/bin/python3'):
        os.execv('/usr/bin/python3', ['/usr/bin/python3'] + sys.argv)
    raise
import psycopg2.extras

# Results stay text: a jsonb result is not parsed (and not printed).
psycopg2.extras.register_default_json(loads=lambda x: x, globally=True)
psycopg2.extras.register_default_jsonb(loads=lambda x: x, globally=True)
# Dates, times and intervals stay text too: infinity or 178000000 years do
# not fit Python's datetime, and the fuzzer only needs the server's outcome.
for _oids in ((1082, 1083, 1114, 1184, 1186, 1266), (1182, 1183, 1115, 1185, 1187, 1270)):
    psycopg2.extensions.register_type(psycopg2.extensions.new_type(_oids, 'WVAL_FUZZ_RAW', lambda v, c: v))

HERE = os.path.dirname(os.path.abspath(__file__))
ROLES = ['wval_analyst', 'wval_producer', 'wval_validator', 'wval_admin']
LOGIN = {r: 'fuzz_' + r[len('wval_'):] for r in ROLES}
WORLD = 'fz-world'
OTHER = 'fz-other'
GROUP = 'fz-group'
ENGINE = 'fz-engine'
SCENARIOS = 'fz-set'
STRATEGY = 'fz-strat'

# Calls whose effects would make the rest of the run meaningless (the '*'
# grants of the wval roles revoked, the consumer group or the producer gone,
# pg_cron jobs created that run the fuzzed code unattended) never commit;
# they are fuzzed all the same and rolled back.
NO_COMMIT = {
    'wval_world_revoke', 'wval_world_grant', 'wval_world_upsert', 'wval_unsubscribe', 'wval_producer_revoke',
    'wval_unschedule', 'wval_unschedule_bus_worker', 'wval_schedule_bus_worker', 'wval_schedule_invariants',
    'wval_schedule_live_monitoring', 'wval_schedule_maintenance', 'wval_schedule_regression',
    'wval_schedule_watchdog', 'wval_purge', 'wval_retention_set', 'wval_bus_prune',
}

# ---------------------------------------------------------------------------
# values: (label, sql fragment with at most one %s, parameter)
# ---------------------------------------------------------------------------
NOPARAM = object()
E400 = '"__wval_fuzz_1e400__"'     # replaced by the bare number 1e400 in JSON text


def jtext(doc):
    """JSON text of doc; the E400 marker becomes 1e400 (valid jsonb, not a float8)"""
    return json.dumps(doc).replace(E400, '1e400').replace(E400[1:-1], '1e400')


def lit(typ, v, label=None):
    """a value of type typ sent as a parameter and cast to exactly that type"""
    # parenthesised: -2147483648::integer would cast 2147483648 first
    return (label if label is not None else short(v), '(%s)::' + typ, v)


def expr(label, sql):
    """a value built server-side (long arrays, large texts); no parameter"""
    return (label, sql.replace('%', '%%'), NOPARAM)


def short(v):
    """a printable, bounded label for a parameter"""
    s = repr(v)
    return s if len(s) <= 60 else '%s…(%d chars)' % (s[:50], len(s))


CONTROL = ['\x01\x02', '\x1b[31mred', 'line\nbreak', 'tab\there', '\x7f', '\u0085']
INVISIBLE = ['\u202eevil', '\u200b', '\u200d', '\ufeffbom', '\u2066isolate', '\u00a0']
INJECTION = ["x'; DROP TABLE wval.worlds; --", '"; SELECT pg_sleep(10); --', "Robert'); DELETE FROM wval.audit_log; --",
             '%s%n%x', '$$', '\\', '../../etc/passwd', 'pg_temp.x', 'wval_select_candidates', 'public"."x']


def text_values(name):
    vals = ['', ' ', '   ', 'NULL', 'null', '*', '-', 'a' * 200, 'a' * 201, 'é' * 101, '😀' * 60, 'x' * 100000,
            'backtest', 'live', 'retired', 'approved', '1e400', 'NaN', 'Infinity', WORLD + ' ', WORLD.upper(), OTHER,
            'wval', 'wval:hub', 'postgres', 'Pacific/Kiritimati', '0 0 31 2 *', '* * * * * *', '@reboot']
    vals += CONTROL + INVISIBLE + INJECTION
    return [lit('text', v) for v in vals]


FLOAT_VALUES = ['NaN', 'Infinity', '-Infinity', 1e308, -1e308, 1.7976931348623157e308, 5e-324, -5e-324, 0.0, -0.0,
                1.0, -1.0, 0.5, 0.999999999, 1.000001, 252.0, 1e15, -1e-300, 2.0, 3.0, 1e-12]
INT_VALUES = [0, -1, 1, 2, 2147483647, -2147483648, 252, 366, 10001, 100000]
BIGINT_VALUES = [0, -1, 1, 9223372036854775807, -9223372036854775808, 2147483648]
DATE_VALUES = ['infinity', '-infinity', '4713-01-01 BC', '5874897-12-31', '2000-02-29', '1970-01-01', '9999-12-31']
TS_VALUES = ['infinity', '-infinity', '4713-01-01 00:00:00+00 BC', '294276-12-31 23:59:59+00', '2000-01-01 00:00:00+00',
             '1970-01-01 00:00:00+00', '2100-01-01 00:00:00+14']
INTERVAL_VALUES = ['0', '-1 day', '1 microsecond', '-1 microsecond', '178000000 years', '-178000000 years',
                   '89 days', '90 days', '1 mon -30 days', '2147483647 days']
UUID_VALUES = ['00000000-0000-0000-0000-000000000000', 'ffffffff-ffff-ffff-ffff-ffffffffffff',
               '12345678-1234-5678-1234-567812345678']


def float_array_values():
    return [
        lit('double precision[]', '{}'), lit('double precision[]', '{NULL}'), lit('double precision[]', '{0.01,NULL}'),
        lit('double precision[]', '{NaN}'), lit('double precision[]', '{Infinity,0.01}'),
        lit('double precision[]', '{-Infinity}'), lit('double precision[]', '{-1}'), lit('double precision[]', '{-1.5}'),
        lit('double precision[]', '{0}'), lit('double precision[]', '{0,0,0,0,0}'), lit('double precision[]', '{0.01}'),
        lit('double precision[]', '{1e308,1e308,-1e308}'), lit('double precision[]', '{5e-324,-5e-324,0}'),
        lit('double precision[]', '{{0.01,0.02},{0.03,0.04}}'), lit('double precision[]', '[0:2]={0.01,0.02,0.03}'),
        lit('double precision[]', '[-5:-3]={0.01,0.02,0.03}'),
        expr('1000 x 0.001', "array_fill(0.001::float8, ARRAY[1000])"),
        expr('alternating +-0.5 x 500', "ARRAY(SELECT CASE WHEN i % 2 = 0 THEN 0.5 ELSE -0.5 END::float8 "
                                         "FROM generate_series(1, 500) i)"),
        expr('100000 noisy returns', "ARRAY(SELECT (sin(i) / 50)::float8 FROM generate_series(1, 100000) i)"),
        expr('1000000 noisy returns', "ARRAY(SELECT (sin(i) / 50)::float8 FROM generate_series(1, 1000000) i)"),
        expr('10001 returns', "ARRAY(SELECT (cos(i) / 40)::float8 FROM generate_series(1, 10001) i)"),
    ]


def deep(n):
    return '[' * n + ']' * n


ODD = [None, E400, '-' + E400, 1e308, -1e308, 0, -1, 1e-320, '', ' ', 'x' * 1000, [], {}, [1, [2, [3]]], True,
       '\u0001', '\u202e', 'NaN', 'Infinity', 2 ** 63, -(2 ** 63) - 1, 3.5, '2000-01-01T00:00:00Z']


def json_values():
    vals = ['{}', '[]', 'null', '1', '-0', '1e400', '-1e400', '"str"', 'true', '"NaN"', '{"a": null}',
            '[{}]', '[1,2,3]', '[null]', '{"": ""}',
            '{"returns": {"sharpe": 1e400}}', '{"returns": {"sharpe": -1e400}}', '{"returns": {"sharpe": "NaN"}}',
            '{"returns": "x"}', '{"returns": {"sharpe": [1, 2]}}', '{"returns": {"sharpe": 1e-400}}',
            '{"sample": {"n_trades_total": -5}}', '{"sample": {"n_trades_total": 1e300}}',
            '{"run_id": ""}', '{"run_id": 12}', '{"run_id": "\\u202e"}', '{"actor": ""}', '{"actor": "\\u0001"}',
            '{"data_as_of": "yesterday"}', '{"data_as_of": "infinity"}', '{"data_as_of": 1e400}',
            '{"periods_per_year": 0}', '{"periods_per_year": 1e10}', '{"risk_free": "NaN"}',
            '{"benchmark": [1, 2, 3]}', '{"benchmark": "x"}', '{"search_intensity": -1}',
            '{"validation_profiles": {}}', '{"validation_profiles": {"backtest": {"performance": {"sharpe_min": 1e400}}}}',
            '{"validation_profiles": {"backtest": {"unknown_layer": {"x": 1}}}}',
            '[{"strategy_id": ""}]', '[{"strategy_id": "c1", "returns": [1e400]}]', '{"scen": {"max_drawdown": 1e400}}',
            '{"weights": {"a": 1e400}}', '{"as_of": "2000-01-01T00:00:00Z"}']
    out = [lit('jsonb', v) for v in vals]
    out += [lit('jsonb', deep(1000), 'nested 1000 deep'),
            lit('jsonb', json.dumps({'k%d' % i: i for i in range(100000)}), '100000 keys'),
            lit('jsonb', json.dumps({('k' * 10000) + str(i): i for i in range(3)}), 'three 10 kB keys'),
            expr('snapshot with 12000 weights', "jsonb_build_object('as_of', to_char(now() AT TIME ZONE 'UTC', "
                 "'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), 'version', 'fz-wide-' || txid_current(), 'weights', "
                 "(SELECT jsonb_object_agg('s' || i, 1.0 / 12000) FROM generate_series(1, 12000) i), 'covariance', "
                 "(SELECT jsonb_object_agg('s' || i || ',s' || i, 0.01) FROM generate_series(1, 12000) i))"),
            expr('5 MB string', "jsonb_build_object('returns', jsonb_build_object('sharpe', 1), 'x', repeat('y', 5000000))")]
    return out


@functools.lru_cache(maxsize=None)
def hostile_values(typ, name):
    """every hostile value of one argument (NULL is tried separately)"""
    if typ == 'text':
        return text_values(name)
    if typ == 'name':
        return [lit('name', v) for v in ['', ' ', 'postgres', 'pg_signal_backend', 'wval_admin', 'fuzz_nobody',
                                          'public', '"x"; DROP ROLE postgres; --', 'a' * 63, '\u200b', '\x01']]
    if typ == 'jsonb':
        return json_values()
    if typ == 'double precision':
        return [lit(typ, str(v)) for v in FLOAT_VALUES]
    if typ == 'integer':
        return [lit(typ, v) for v in INT_VALUES]
    if typ == 'bigint':
        return [lit(typ, v) for v in BIGINT_VALUES]
    if typ == 'boolean':
        return [lit(typ, True), lit(typ, False)]
    if typ == 'uuid':
        return [lit(typ, v) for v in UUID_VALUES] + [
            expr('a run of the other world', "(SELECT run_id FROM wval.evaluation_runs WHERE world_id = '%s' LIMIT 1)" % OTHER),
            expr('the newest run', '(SELECT run_id FROM wval.evaluation_runs ORDER BY created_at DESC LIMIT 1)')]
    if typ == 'date':
        return [lit(typ, v) for v in DATE_VALUES]
    if typ == 'timestamp with time zone':
        return [lit(typ, v) for v in TS_VALUES]
    if typ == 'interval':
        return [lit(typ, v) for v in INTERVAL_VALUES]
    if typ == 'bytea':
        return [lit(typ, psycopg2.Binary(b''), 'empty'), lit(typ, psycopg2.Binary(b'\x00'), '\\x00'),
                lit(typ, psycopg2.Binary(bytes(range(16))), '16 bytes'),
                expr('1 MB', "decode(repeat('ab', 1000000), 'hex')")]
    if typ == 'double precision[]':
        return float_array_values()
    if typ == 'date[]':
        return [lit(typ, v) for v in ['{}', '{NULL}', '{infinity}', '{-infinity}', '{2024-01-01,2024-01-01}',
                                      '{2024-01-02,2024-01-01}', '{5874897-12-31}', '{{2024-01-01},{2024-01-02}}']] + [
            expr('1000 days', 'ARRAY(SELECT current_date - i FROM generate_series(1, 1000) i)'),
            expr('100000 days', 'ARRAY(SELECT current_date - i FROM generate_series(1, 100000) i)')]
    if typ == 'text[]':
        return [lit(typ, v) for v in ['{}', '{NULL}', '{""}', '{*}', '{evaluation_run_created,evaluation_run_created}',
                                      '{"x\'; DROP TABLE t; --"}', '{"\\u200b"}', '{{a},{b}}']] + [
            expr('10000 types', "ARRAY(SELECT 't' || i FROM generate_series(1, 10000) i)")]
    if typ == 'bigint[]':
        return [lit(typ, v) for v in ['{}', '{NULL}', '{-1}', '{0}', '{9223372036854775807}', '{1,1,1}']] + [
            expr('100000 ids', 'ARRAY(SELECT i::bigint FROM generate_series(1, 100000) i)')]
    if typ == 'oid':
        return [lit(typ, v) for v in [0, 10, 4294967295]] + [expr('a fuzz role', "'fuzz_analyst'::regrole::oid")]
    if typ == 'wval.risk_snapshots':
        return [expr('a stored snapshot', '(SELECT s FROM wval.risk_snapshots s ORDER BY s.received_at DESC LIMIT 1)')]
    return []


# ---------------------------------------------------------------------------
# the fixture and the valid value of each argument
# ---------------------------------------------------------------------------
RET60 = [round(0.002 + 0.01 * ((i * 7919) % 13 - 6) / 6, 6) for i in range(60)]
SAMPLE_POLICY = None      # read from wval.sample_policies at set-up


def now_iso():
    return time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())


class Fuzzer:
    def __init__(self, args):
        self.args = args
        self.rnd = random.Random(args.seed)
        self.salt = '%d-%d' % (args.seed, int(time.time()) % 100000)
        self.counter = 0
        self.errors = load_errors(args.errors)
        self.known = load_known(args.known) if args.known else {}
        self.conns = {}
        self.stats = {}           # outcome class -> count
        self.calls = 0
        self.failures = []        # (kind, function, role, sql, params, message)
        self.failed_keys = set()
        self.crashed_functions = set()
        self.unmapped = set()
        self.log_start = self.log_size()

    # -- connections --------------------------------------------------------
    def connect(self, user=None):
        last = None
        for _ in range(90):
            try:
                kw = {'user': user} if user else {}
                c = psycopg2.connect(options='-c statement_timeout=%s -c lock_timeout=%s -c client_min_messages=error'
                                     % (self.args.statement_timeout, self.args.statement_timeout), **kw)
                return c
            except psycopg2.OperationalError as e:    # the server is restarting after a crash
                last = e
                time.sleep(1)
        raise SystemExit('fuzz: cannot connect%s: %s' % (' as ' + user if user else '', last))

    def conn(self, role):
        c = self.conns.get(role)
        if c is None or c.closed:
            c = self.connect(LOGIN.get(role))
            self.conns[role] = c
        return c

    def drop_all(self):
        for c in self.conns.values():
            try:
                c.close()
            except Exception:
                pass
        self.conns = {}

    def log_size(self):
        try:
            return os.path.getsize(self.args.server_log) if self.args.server_log else 0
        except OSError:
            return 0

    def crash_lines(self, offset):
        """the server log's 'terminated by signal' lines written since offset (a plain
        line scan: the log holds the fuzzed statements, megabytes long)"""
        if not self.args.server_log:
            return []
        found = []
        try:
            with open(self.args.server_log, 'rb') as f:
                f.seek(offset)
                for line in f:
                    if b'terminated by signal' in line:
                        found.append(line.decode('utf-8', 'replace').strip()[:300])
        except OSError:
            pass
        return found

    # -- set-up ---------------------------------------------------------------
    def setup(self):
        global SAMPLE_POLICY
        c = self.connect()
        c.autocommit = True
        k = c.cursor()
        k.execute('SELECT rolsuper FROM pg_roles WHERE rolname = current_user')
        if not k.fetchone()[0]:
            raise SystemExit('fuzz: PGUSER must be a superuser (it creates the login roles and the fixture)')
        for role, login in LOGIN.items():
            k.execute('SELECT 1 FROM pg_roles WHERE rolname = %s', (login,))
            if not k.fetchone():
                k.execute('CREATE ROLE %s LOGIN' % login)
            k.execute('GRANT %s TO %s' % (role, login))
        k.execute("SELECT policy::text FROM wval.sample_policies ORDER BY name = 'sample' DESC LIMIT 1")
        SAMPLE_POLICY = k.fetchone()[0]
        for w in (WORLD, OTHER):
            k.execute('SELECT wval_world_upsert(%s, risk_tier => %s, actor => %s)', (w, 'medium', 'fz-dba'))
            k.execute('SELECT wval_active_policy_version(%s)', (w,))
            if k.fetchone()[0] is None:
                k.execute("SELECT wval_policy_publish(%s, %s::jsonb, 'fz-alice', 'fuzz fixture')",
                          (w, SAMPLE_POLICY))
                v = k.fetchone()[0]
                k.execute("SELECT wval_policy_activate(%s, %s, 'fz-bob', 'fuzz fixture')", (w, v))
            k.execute('SELECT 1 FROM wval.current_producers WHERE world_id = %s AND actor = %s', (w, ENGINE))
            if not k.fetchone():
                k.execute('SELECT wval_producer_register(%s, %s)', (w, ENGINE))
            k.execute("SELECT wval_evaluate(%s, %s, 'backtest', %s::float8[], '{}', %s::jsonb)",
                      (w, STRATEGY, RET60, json.dumps({'actor': 'fz-quant'})))
            k.execute("SELECT wval_snapshot_publish(%s, %s::jsonb, %s, 'paper')", (w, self.snapshot_doc(), ENGINE))
            k.execute("SELECT wval_record_live_returns(%s, %s, ARRAY[current_date - 2, current_date - 1], "
                      "ARRAY[0.001, -0.002]::float8[], 'manual')", (w, STRATEGY))
        k.execute('SELECT 1 FROM wval.consumer_groups WHERE group_name = %s', (GROUP,))
        if not k.fetchone():
            k.execute("SELECT wval_subscribe(%s, ARRAY(SELECT DISTINCT type FROM wval.events) || ARRAY['evaluation_run_created'])", (GROUP,))
        k.execute("SELECT wval_scenario_add(%s, %s, '{\"returns\": {\"sharpe\": 1.0}}', 'pass', 'fuzz fixture')",
                  (SCENARIOS, 'fz-case-' + self.salt))
        c.close()

    def unique(self, prefix):
        self.counter += 1
        return '%s-%s-%d' % (prefix, self.salt, self.counter)

    def snapshot_doc(self, version=None):
        return json.dumps({'as_of': now_iso(), 'version': version or self.unique('fz-snap'),
                           'weights': {'a': 0.6, 'b': 0.4},
                           'covariance': {'a,a': 0.04, 'b,b': 0.09, 'a,b': 0.006}, 'ttl_sec': 86400})

    def valid(self, fn, name, typ):
        """a valid value for one argument, by name and type"""
        n = name or ''
        text = {
            'world_id': WORLD, 'p_world_id': WORLD, 'strategy_id': STRATEGY, 'actor': 'fz-carol',
            'reason': 'fuzz reason', 'note': 'fuzz note', 'group_name': GROUP, 'campaign_id': 'fz-campaign',
            'format': 'markdown', 'category': 'risk_breach', 'reason_code': 'FZ_CODE', 'severity': 'high',
            'source': 'manual', 'table_name': 'evaluation_runs', 'set_name': SCENARIOS, 'expected_status': 'pass',
            'privilege': 'read', 'p_privilege': 'read', 'error': 'fuzz error', 'risk_tier': 'medium',
            'dedupe': 'strategy', 'backoff': '500ms', 'visibility': '30s', 'schedule': '0 4 * * *',
            'name': 'wval:fz-none', 'outcome': 'failed', 'stage': 'backtest', 'status': 'approved',
            'evidence_url': 'https://example.org/fz', 'notes': 'fuzz notes',
        }
        if typ == 'text':
            if fn in ('wval_snapshot_publish', 'wval_snapshot_latest', 'wval_snapshot_as_of',
                      'wval_portfolio_risk', 'wval_select', 'wval_set_stage') and n == 'stage':
                return lit('text', 'paper')
            if fn == 'wval_snapshot_publish' and n == 'actor':
                return lit('text', ENGINE)
            if fn == 'wval_record_failure' and n == 'status':
                return lit('text', 'candidate')
            if fn == 'wval_snapshot' and n == 'version':
                return expr('a stored version', "(SELECT version FROM wval.risk_snapshots WHERE world_id = '%s' "
                                                "ORDER BY received_at DESC LIMIT 1)" % WORLD)
            if fn == 'wval_scenario_add' and n == 'case_id':
                return lit('text', self.unique('fz-case'))
            if n in ('signature', 'snapshot_stage', 'stage') and fn in ('wval_snapshot_publish', 'wval_evaluate_portfolio'):
                return lit('text', None)
            if n in text:
                return lit('text', text[n])
            return lit('text', 'fz')
        if typ == 'jsonb':
            if n in ('policy', 'old_policy', 'new_policy'):
                return lit('jsonb', SAMPLE_POLICY, 'sample policy')
            if n == 'snapshot':
                return lit('jsonb', self.snapshot_doc(), 'valid snapshot')
            if n == 'metrics':
                return lit('jsonb', '{"returns": {"sharpe": 1.2}, "sample": {"n_trades_total": 100}}')
            if n == 'candidates':
                return lit('jsonb', json.dumps([{'strategy_id': 'fz-c1', 'returns': RET60},
                                                {'strategy_id': 'fz-c2', 'metrics': {'returns': {'sharpe': 0.8}}}]),
                           'two candidates')
            if n == 'runs' and fn == 'wval_import_runs':
                return lit('jsonb', json.dumps([{'world_id': WORLD, 'strategy_id': 'fz-imported',
                                                 'created_at': '2024-01-02T00:00:00Z', 'status': 'fail',
                                                 'metrics': {'returns': {'sharpe': 0.1}}}]), 'one imported run')
            if n == 'runs':
                return lit('jsonb', json.dumps([{'strategy_id': 'r1', 'metrics': {'returns': {'sharpe': 1.0}}}]),
                           'one JSON run')
            if n == 'context':
                return lit('jsonb', json.dumps({'actor': 'fz-quant', 'run_id': self.unique('fz-run')}))
            if n == 'stress':
                return lit('jsonb', '{"crash": {"a": -0.2, "b": -0.1}}')
            if n in ('settings', 'extra_metrics', 'p_payload'):
                return lit('jsonb', '{}')
            return lit('jsonb', '{}')
        if typ == 'double precision[]':
            if n == 'rets':
                return lit(typ, [0.001, -0.002], 'two returns')
            if n == 'benchmark':
                return lit(typ, None)
            return lit(typ, RET60, '60 returns')
        if typ == 'date[]':
            return expr('two days', 'ARRAY[current_date - 2, current_date - 1]')
        if typ == 'integer':
            table = {'months_ahead': 1, 'periods_per_year': 252, 'n_obs': 60, 'n_trials': 10, 'search_intensity': 1,
                     'max_attempts': 3, 'max': 10, 'max_events': 10, 'max_ms': 1000, 'version': 1, 'old_version': 1,
                     'new_version': 1}
            return lit(typ, table.get(n, 1))
        if typ == 'double precision':
            table = {'kurtosis': 3.0, 'p': 0.95, 'fail_impact_ratio': 0.5, 'risk_free': 0.0, 'skew': 0.0,
                     'trials_sharpe_variance': None, 'trials_sharpe_variance_annual': None,
                     'max_capital_at_risk_pct': 0.1, 'r': 0.01}
            return lit(typ, table.get(n, 1.0))
        if typ == 'uuid':
            if n == 'case_id':
                return lit(typ, None)
            return expr('the fixture run', "(SELECT run_id FROM wval.evaluation_runs WHERE world_id = '%s' "
                                           "AND strategy_id = '%s' ORDER BY created_at LIMIT 1)" % (WORLD, STRATEGY))
        if typ == 'bigint':
            return expr('the newest event', '(SELECT max(event_id) FROM wval.events)')
        if typ == 'bigint[]':
            return expr('the newest event', 'ARRAY[(SELECT max(event_id) FROM wval.events)]')
        if typ == 'text[]':
            return lit(typ, ['evaluation_run_created'])
        if typ == 'boolean':
            return lit(typ, n in ('dry_run', 'raise_on_breach'))
        if typ == 'timestamp with time zone':
            if n == 'older_than':
                return expr('now() - 400 days', "now() - interval '400 days'")
            if n == 'since':
                return expr('now() - 30 days', "now() - interval '30 days'")
            return expr('now()', 'now()')
        if typ == 'interval':
            return lit(typ, '400 days' if n == 'keep' else '7 days')
        if typ == 'date':
            return expr('current_date', 'current_date')
        if typ == 'name':
            return lit(typ, 'fuzz_analyst')
        if typ == 'oid':
            return expr('a fuzz role', "'fuzz_analyst'::regrole::oid")
        if typ == 'bytea':
            return lit(typ, None)
        if typ == 'wval.risk_snapshots':
            return hostile_values(typ, n)[0]
        return ('NULL', 'NULL::' + typ, NOPARAM)

    # -- catalogue ------------------------------------------------------------
    def catalogue(self):
        c = self.connect()
        k = c.cursor()
        k.execute("""
            SELECT p.oid::regprocedure::text, p.proname, p.prokind,
                   coalesce(p.proargnames[1:p.pronargs], '{}'),
                   ARRAY(SELECT format_type(t, NULL) FROM unnest(p.proargtypes::oid[]) t),
                   ARRAY(SELECT r FROM unnest(%s::text[]) r WHERE has_function_privilege(r, p.oid, 'EXECUTE'))
            FROM pg_proc p
            JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
            JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'wval'
            WHERE ((p.pronamespace = 'public'::regnamespace AND p.proname LIKE 'wval%%')
                   OR p.pronamespace = 'wval'::regnamespace)
            ORDER BY 1""", (ROLES,))
        funcs = []
        for sig, name, kind, names, types, roles in k.fetchall():
            if not roles:
                continue
            names = list(names) + [None] * (len(types) - len(names))
            types = list(types)
            if kind == 'a':
                types[0] = 'double precision[]'     # an aggregate's input is fed as unnest(array)
            qual = name if sig.startswith('wval_') else 'wval.' + name
            funcs.append({'sig': sig, 'name': qual, 'kind': kind, 'names': names, 'types': types, 'roles': roles})
        k.execute("""SELECT c.relname, ARRAY(SELECT r FROM unnest(%s::text[]) r WHERE has_table_privilege(r, c.oid, 'SELECT'))
                     FROM pg_class c WHERE c.relnamespace = 'wval'::regnamespace AND c.relkind IN ('v', 'm')
                     ORDER BY 1""", (ROLES,))
        views = [(n, r) for n, r in k.fetchall() if r]
        c.close()
        if self.args.only:
            wanted = set(self.args.only.split(','))
            funcs = [f for f in funcs if f['name'] in wanted or f['sig'] in wanted
                     or f['name'].replace('wval.', '') in wanted]
        return funcs, views

    # -- one call ------------------------------------------------------------
    def allowed(self, fname):
        spec = self.errors['functions'].get(fname)
        if spec is None:
            self.unmapped.add(fname)
            spec = {}
        return set(self.errors['global']) | set(spec.get('allowed', []))

    def count(self, cls):
        self.stats[cls] = self.stats.get(cls, 0) + 1

    def fail(self, kind, fname, role, sql, labels, message):
        key = (kind, fname)
        self.count('FAIL ' + kind)
        if key in self.failed_keys:
            return      # one report per function and kind, the rest are counted
        self.failed_keys.add(key)
        self.failures.append((kind, fname, role, sql, labels, message))
        print('FAIL %s in %s as %s\n  sql:    %s\n  inputs: %s\n  error:  %s' % (
            kind, fname, LOGIN.get(role, role), sql[:600], labels, message[:600]), flush=True)

    def run_sql(self, fname, role, sql, params, labels, commit, autocommit=False):
        """runs one statement as role; classifies the outcome; returns True when it succeeded"""
        self.calls += 1
        c = self.conn(role)
        before = self.log_size()
        try:
            c.autocommit = autocommit
            k = c.cursor()
            k.execute(sql, params)
            if k.description:
                try:
                    k.fetchmany(50)
                except (ValueError, OverflowError):     # a value Python cannot represent: the server's part is done
                    pass
            if not autocommit:
                if commit:
                    c.commit()
                else:
                    c.rollback()
            self.count('ok')
            return True
        except (psycopg2.OperationalError, psycopg2.InterfaceError) as e:
            if getattr(e, 'pgcode', None) and not isinstance(e, psycopg2.InterfaceError) and not c.closed:
                return self.classify(e, fname, role, sql, labels, c)
            time.sleep(2)
            signalled = self.crash_lines(before)
            self.count('crash')
            self.crashed_functions.add(fname)
            self.fail('crash', fname, role, sql, labels, signalled[0] if signalled else 'connection lost: %s' % e)
            self.drop_all()
            return False
        except psycopg2.Error as e:
            return self.classify(e, fname, role, sql, labels, c)

    def classify(self, e, fname, role, sql, labels, c):
        code = e.pgcode or '?????'
        msg = (e.pgerror or str(e)).strip().replace('\n', ' | ')
        try:
            c.rollback()
        except psycopg2.Error:
            self.drop_all()
        if code == '57014':
            self.count('timeout')
        elif code in self.known.get(fname, set()):
            self.count('known ' + code)
        elif code.startswith('XX'):
            self.count(code)
            self.fail('internal error ' + code, fname, role, sql, labels, msg)
        elif code not in self.allowed(fname):
            self.count(code)
            self.fail('undocumented SQLSTATE ' + code, fname, role, sql, labels, msg)
        else:
            self.count(code)
        return False

    def call(self, f, override, commit):
        """calls f with the valid values, except the positions in override"""
        frags, params, labels = [], [], []
        param_of = []
        for i, (n, t) in enumerate(zip(f['names'], f['types'])):
            if i in override:
                v = override[i]
            else:
                v = self.valid(f['name'], n, t)
            label, frag, param = v
            frags.append(frag)
            param_of.append([] if param is NOPARAM else [param])
            if i in override:
                labels.append('%s=%s' % (n or '$%d' % (i + 1), label))
        if f['kind'] == 'a':
            # the input array comes last in the statement, so does its parameter
            param_of = param_of[1:] + param_of[:1]
        params = [p for ps in param_of for p in ps]
        if f['kind'] == 'a':
            args = ['u.r'] + frags[1:]
            sql = 'SELECT %s(%s) FROM unnest(%s) u(r)' % (f['name'], ', '.join(args), frags[0])
        elif f['kind'] == 'p':
            sql = 'CALL %s(%s)' % (f['name'], ', '.join(frags))
        else:
            sql = 'SELECT * FROM %s(%s)' % (f['name'], ', '.join(frags))
        role = self.rnd.choice(f['roles'])
        commit = commit and f['name'] not in NO_COMMIT
        return self.run_sql(f['name'], role, sql, params, ', '.join(labels) or '(valid arguments)', commit)

    # -- read paths -----------------------------------------------------------
    def read_paths(self, views, deadline, roles=ROLES):
        """explain, reports, views, chain checks and invariants over what is stored, as each role"""
        for role in roles:
            c = self.conn(role)
            try:
                k = c.cursor()
                k.execute('SELECT run_id::text FROM wval.evaluation_runs ORDER BY created_at DESC LIMIT 10')
                runs = [r[0] for r in k.fetchall()]
                k.execute('SELECT world_id FROM wval.worlds ORDER BY world_id LIMIT 10')
                worlds = [r[0] for r in k.fetchall()]
                c.rollback()
            except psycopg2.Error as e:
                self.fail('read set-up error %s' % e.pgcode, 'read paths', role, '', '', str(e))
                self.drop_all()
                continue
            checks = []
            for r in runs:
                checks += [('wval_run_explain', 'SELECT wval_run_explain(%s::uuid)', (r,)),
                           ('wval_report', "SELECT wval_report(%s::uuid, 'markdown')", (r,)),
                           ('wval_report', "SELECT wval_report(%s::uuid, 'html')", (r,))]
            for w in worlds:
                checks += [('wval_live_report', "SELECT wval_live_report(%s, current_date, 'markdown')", (w,)),
                           ('wval_live_report', "SELECT wval_live_report(%s, current_date, 'html')", (w,)),
                           ('wval_verify_chain', 'SELECT wval_verify_chain(%s)', (w,)),
                           ('wval_chain_problems', 'SELECT * FROM wval_chain_problems(%s)', (w,)),
                           ('wval_check_invariants', 'SELECT * FROM wval_check_invariants(%s)', (w,)),
                           ('wval_ruleset', 'SELECT wval_ruleset(%s)', (w,)),
                           ('wval_snapshot_latest', 'SELECT wval_snapshot_latest(%s, include_stale => true)', (w,)),
                           ('wval_portfolio_risk', 'SELECT wval_portfolio_risk(%s)', (w,)),
                           ('wval_run_history', 'SELECT * FROM wval_run_history(%s, %s)', (w, STRATEGY))]
            checks += [('wval_metrics_prometheus', 'SELECT wval_metrics_prometheus()', None),
                       ('wval_check_invariants', 'SELECT * FROM wval_check_invariants()', None),
                       ('wval_rule_failure_stats', 'SELECT * FROM wval_rule_failure_stats()', None),
                       ('wval_validation_slo', 'SELECT * FROM wval_validation_slo()', None),
                       ('wval_failure_rate', 'SELECT * FROM wval_failure_rate()', None)]
            checks += [('view wval.' + v, 'SELECT * FROM wval.%s' % v, None) for v, roles in views if role in roles]
            for fname, sql, params in checks:
                if time.time() > deadline:
                    return
                self.run_sql(fname, role, sql, params, 'read path', False)

    # -- the run --------------------------------------------------------------
    def plan(self, funcs):
        """phase 1 (valid, NULLs) and phase 2 (one hostile value per position), in seeded order"""
        p1, per_function = [], []
        for f in funcs:
            p1.append((f, {}))
            mine = []
            for i, t in enumerate(f['types']):
                p1.append((f, {i: ('NULL', 'NULL::' + t, NOPARAM)}))
                for v in hostile_values(t, f['names'][i]) + self.mutations(f, i):
                    mine.append((f, {i: v}))
            self.rnd.shuffle(mine)
            per_function.append(mine)
        # round robin over the functions, so that a short pass gives each of
        # them some hostile values rather than all of them to a few
        p2 = []
        for k in range(max(len(m) for m in per_function)):
            p2 += [m[k] for m in per_function if k < len(m)]
        return p1, p2

    def mutations(self, f, i):
        """documents of the argument's kind with one odd leaf or one unknown key (jsonb only)"""
        if f['types'][i] != 'jsonb':
            return []
        label, frag, param = self.valid(f['name'], f['names'][i], 'jsonb')
        if param is NOPARAM or param is None:
            return []
        out = []
        for _ in range(6):
            doc = json.loads(param)
            self.mutate(doc)
            out.append(lit('jsonb', jtext(doc), 'mutated ' + label + ': ' + short(jtext(doc))))
        return out

    def mutate(self, d, depth=0):
        if isinstance(d, dict) and d:
            k = self.rnd.choice(sorted(d))
            if self.rnd.random() < 0.2:
                d['unknown_%d' % self.rnd.randint(0, 9)] = self.odd()
            elif isinstance(d[k], (dict, list)) and d[k] and depth < 8 and self.rnd.random() < 0.8:
                self.mutate(d[k], depth + 1)
            else:
                d[k] = self.odd()
        elif isinstance(d, list) and d:
            i = self.rnd.randrange(len(d))
            if isinstance(d[i], (dict, list)) and d[i] and depth < 8:
                self.mutate(d[i], depth + 1)
            else:
                d[i] = self.odd()

    def odd(self):
        # a copy: the shared lists and objects of ODD must not grow with each mutation
        return copy.deepcopy(self.rnd.choice(ODD))

    def random_override(self, f):
        n = len(f['types'])
        if n == 0:
            return {}
        over = {}
        for i in self.rnd.sample(range(n), self.rnd.randint(1, min(3, n))):
            choices = hostile_values(f['types'][i], f['names'][i]) + self.mutations(f, i)
            if not choices or self.rnd.random() < 0.15:
                over[i] = ('NULL', 'NULL::' + f['types'][i], NOPARAM)
            else:
                over[i] = self.rnd.choice(choices)
        return over

    def run(self):
        start = time.time()
        end = start + self.args.seconds
        self.setup()
        funcs, views = self.catalogue()
        skipped = sorted(f['sig'] for f in funcs if 'skip' in self.known.get(f['name'], set()))
        funcs = [f for f in funcs if 'skip' not in self.known.get(f['name'], set())]
        if not funcs:
            raise SystemExit('fuzz: no function to fuzz')
        print('fuzz: %d functions granted to a wval role, %d views; seed %d, %d s, statement_timeout %s'
              % (len(funcs), len(views), self.args.seed, self.args.seconds, self.args.statement_timeout), flush=True)
        for s in skipped:
            print('fuzz: skipped (known.txt): %s' % s)
        p1, p2 = self.plan(funcs)
        # the read paths run when a quarter, half and three quarters of the
        # time are up, and at the end with 15 % of the time reserved
        read_end = end - max(3, self.args.seconds * 0.15)
        marks = [start + (read_end - start) * q for q in (0.25, 0.5, 0.75)]
        phases = {'valid/NULL': 0, 'hostile per position': 0, 'random combinations': 0}
        queue = [('valid/NULL', x) for x in p1] + [('hostile per position', x) for x in p2]
        qi = 0
        while time.time() < read_end:
            if marks and time.time() >= marks[0]:
                # one role per intermediate pass, a few seconds at most
                marks.pop(0)
                self.read_paths(views, min(read_end, time.time() + max(2, self.args.seconds * 0.04)),
                                [ROLES[len(marks) % len(ROLES)]])
                continue
            if qi < len(queue):
                phase, (f, over) = queue[qi]
                qi += 1
            else:
                phase, f = 'random combinations', self.rnd.choice(funcs)
                over = self.random_override(f)
            if f['name'] in self.crashed_functions:
                continue
            phases[phase] += 1
            self.call(f, over, self.rnd.random() < 0.33)
        self.read_paths(views, end)
        # a crash of any other process of the cluster (a pg_cron job, a worker)
        crashes = self.crash_lines(self.log_start)
        self.drop_all()
        self.report(start, funcs, phases, qi, len(queue), crashes)
        return 1 if self.failures or crashes else 0

    def report(self, start, funcs, phases, qi, qn, crashes):
        print()
        print('fuzz: %d inputs tried over %d functions in %.0f s (%s); systematic inputs covered %d of %d'
              % (self.calls, len(funcs), time.time() - start,
                 ', '.join('%s %d' % kv for kv in phases.items()), min(qi, qn), qn))
        order = sorted(self.stats.items(), key=lambda kv: (not kv[0] == 'ok', kv[0]))
        print('fuzz: outcomes: ' + ', '.join('%s=%d' % kv for kv in order))
        print('fuzz: backend crashes: %d, XX000: %d' % (max(self.stats.get('crash', 0), len(crashes)),
                                                       self.stats.get('XX000', 0)))
        for line in crashes:
            print('FAIL server log: %s' % line.strip())
        if self.unmapped:
            print('fuzz: warning: not in %s (only the global classes allowed): %s'
                  % (os.path.relpath(self.args.errors), ', '.join(sorted(self.unmapped))))
        if self.failures or crashes:
            print('fuzz: FAILED: %d distinct failures (function, kind) listed above' % len(self.failures))
        else:
            print('fuzz: passed')


def load_errors(path):
    with open(path) as f:
        doc = json.load(f)
    return {'global': list(doc['global']), 'functions': doc['functions']}


def load_known(path):
    """known.txt: 'function SQLSTATE|skip  # why' per line"""
    known = {}
    with open(path) as f:
        for line in f:
            line = line.split('#', 1)[0].strip()
            if not line:
                continue
            fn, what = line.split()[:2]
            known.setdefault(fn, set()).add(what)
    return known


def main():
    ap = argparse.ArgumentParser(description='catalogue-driven fuzzer for wval (libpq environment for the server)')
    ap.add_argument('--seconds', type=float, default=60, help='time budget (default 60)')
    ap.add_argument('--seed', type=int, default=1, help='seed of the input sequence (default 1)')
    ap.add_argument('--only', help='comma-separated function names (wval_check, wval._world) or signatures')
    ap.add_argument('--server-log', help="the server's log file, to tell crashes from other lost connections")
    ap.add_argument('--known', help='known defects to tolerate (test/fuzz/known.txt)')
    ap.add_argument('--errors', default=os.path.join(HERE, 'errors.json'), help='the documented SQLSTATEs')
    ap.add_argument('--statement-timeout', default='10s', help='statement_timeout of every call (default 10s)')
    args = ap.parse_args()
    sys.exit(Fuzzer(args).run())


if __name__ == '__main__':
    main()
