#!/usr/bin/env bash
# The monitoring files, checked by the real tools (Debian packages prometheus
# and prometheus-postgres-exporter, installed by scripts/lib.sh):
#   1. promtool check rules / test rules: docs/examples/alert_rules.yml and its
#      unit tests (test/monitoring/alert_rules_test.yml), which must have a
#      firing and a silent case for every alert;
#   2. promtool check metrics on wval_metrics_prometheus();
#   3. prometheus-postgres-exporter with docs/examples/postgres_exporter_queries.yaml
#      against this cluster, connected as a login member of wval_analyst: the
#      scrape has the series this script created, with the values and labels
#      expected (cron_job, never job; no NaN; no sample for a job that never
#      succeeded), and no query fails;
#   4. docs/examples/grafana_dashboard.json is valid JSON whose every query,
#      like every alert, uses only series the exporter queries produce.
set -euo pipefail
psql() { "$WVAL_BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -At "$@"; }
py=python3; [ -x /usr/bin/python3 ] && py=/usr/bin/python3     # Debian's, with python3-yaml
for t in promtool prometheus-postgres-exporter; do
	command -v $t >/dev/null || { echo "not ok - $t not installed (scripts/lib.sh WVAL_PACKAGES)"; exit 1; }
done
failed=0
check() {	# check DESCRIPTION CMD...: runs CMD, prints ok / not ok
	local d=$1; shift
	if "$@" >"$tmp/out" 2>&1; then echo "ok - $d"; else echo "not ok - $d"; sed 's/^/    /' "$tmp/out"; failed=1; fi
}

world="mon-$$"
role="wval_mon_$$"
tmp=$(mktemp -d)
chmod 755 "$tmp"
exporter=
cleanup() {
	if [ -n "$exporter" ]; then kill "$exporter" 2>/dev/null || true; wait "$exporter" 2>/dev/null || true; fi
	psql -c "SELECT wval_unschedule('invariants')" >/dev/null 2>&1 || true
	# the role stays: wval.world_grants (append-only) names it, and while a
	# grant names a role that no longer exists, pg_has_role() in the world
	# checks fails with "role does not exist" for every non-superuser reader
	rm -rf "$tmp"
}
trap cleanup EXIT

# 1. the rules and their unit tests
check "promtool check rules docs/examples/alert_rules.yml" promtool check rules "$WVAL_REPO/docs/examples/alert_rules.yml"
check "promtool test rules test/monitoring/alert_rules_test.yml" promtool test rules "$WVAL_REPO/test/monitoring/alert_rules_test.yml"
check "every alert has a firing and a silent unit test" "$py" - "$WVAL_REPO" <<'PY'
import sys, yaml
repo = sys.argv[1]
rules = [r["alert"] for g in yaml.safe_load(open(repo + "/docs/examples/alert_rules.yml"))["groups"] for r in g["rules"]]
tests = yaml.safe_load(open(repo + "/test/monitoring/alert_rules_test.yml"))["tests"]
cases = [c for t in tests for c in t.get("alert_rule_test", [])]
bad = [a for a in rules
       if not any(c["alertname"] == a and c.get("exp_alerts") for c in cases)
       or not any(c["alertname"] == a and not c.get("exp_alerts") for c in cases)]
print("%d alerts, %d cases; without both a firing and a silent case: %s" % (len(rules), len(cases), bad))
sys.exit(1 if bad or not rules else 0)
PY

# data: a world with three failed backtest evaluations (and a pass and a
# warn), a consumer group that has not read them, an invariant report, and a
# wval pg_cron job that has never run (wval:invariants on the 1st of January)
psql >/dev/null <<SQL
SET client_min_messages = warning;
SELECT wval_world_upsert('$world', actor => 'dba'),
       wval_policy_publish('$world', (SELECT policy FROM wval.sample_policies), 'alice'),
       wval_policy_activate('$world', 1, 'bob', 'sample');
SELECT wval_subscribe('$world-group', '{evaluation_run_created}');
SELECT count(*) FROM wval.scenario_cases c, wval_evaluate('$world', c.strategy_id, 'backtest', NULL, c.metrics)
WHERE c.set_name = 'bad';
SELECT wval_run_invariants();
SELECT wval_schedule_invariants('0 0 1 1 *');   -- scheduled, never run
CREATE ROLE $role LOGIN IN ROLE wval_analyst;
SELECT wval_world_grant('$role', '$world', 'read', 'dba');
SQL

# 2. the exposition of wval_metrics_prometheus()
psql -c "SELECT wval_metrics_prometheus()" >"$tmp/wval.prom"
check "promtool check metrics accepts wval_metrics_prometheus()" promtool check metrics <"$tmp/wval.prom"
check "the exposition: cron_job label, no job label, no NaN, no last success of a job that never ran" "$py" - "$tmp/wval.prom" "$world" "$$" <<'PY'
import sys, re
text, world, pid = open(sys.argv[1]).read(), sys.argv[2], sys.argv[3]
job = 'cron_job="wval:invariants"'
want = ['wval_evaluations_total{stage="backtest",status="fail",world_id="%s"} 3' % world,
        'wval_schedule_succeeded{%s} 0' % job,
        'wval_schedule_missed_last_day{%s} ' % job]
bad = [w for w in want if w not in text]
bad += [l for l in text.splitlines() if re.search(r'[{,]job="', l) or l.endswith(" NaN")]
bad += [l for l in text.splitlines() if l.startswith("wval_schedule_last_success_timestamp_seconds{" + job)]
print("\n".join(bad))
sys.exit(1 if bad else 0)
PY

# 3. the real postgres_exporter with the shipped queries
port=$("$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
DATA_SOURCE_NAME="host=$PGHOST port=$PGPORT user=$role dbname=$PGDATABASE sslmode=disable" \
	prometheus-postgres-exporter --web.listen-address="127.0.0.1:$port" \
	--extend.query-path="$WVAL_REPO/docs/examples/postgres_exporter_queries.yaml" \
	--disable-default-metrics --disable-settings-metrics >"$tmp/exporter.log" 2>&1 &
exporter=$!
for _ in $(seq 50); do
	"$py" -c "import urllib.request; open('$tmp/scrape', 'wb').write(urllib.request.urlopen('http://127.0.0.1:$port/metrics', timeout=5).read())" 2>/dev/null && break
	sleep 0.2
done
[ -s "$tmp/scrape" ] || { echo "not ok - the exporter did not answer"; cat "$tmp/exporter.log"; exit 1; }
check "the scrape has the series of this test, with their values" "$py" - "$tmp/scrape" "$world" "$$" "$WVAL_REPO" <<'PY'
import sys, re, yaml
text, world, pid, repo = open(sys.argv[1]).read(), sys.argv[2], sys.argv[3], sys.argv[4]
samples = {}
for l in text.splitlines():
    m = re.match(r'^(wval_[a-z0-9_]+)(\{[^}]*\})? (\S+)$', l)
    if m:
        labels = dict(re.findall(r'([a-z_]+)="([^"]*)"', m.group(2) or ""))
        samples.setdefault(m.group(1), []).append((labels, m.group(3)))
def value(name, **labels):
    got = [v for l, v in samples.get(name, []) if all(l.get(k) == x for k, x in labels.items())]
    return float(got[0]) if len(got) == 1 else None
job = "wval:invariants"
checks = [
    ("evaluations, fail", value("wval_evaluations_total", world_id=world, stage="backtest", status="fail") == 3),
    ("evaluations, pass", value("wval_evaluations_total", world_id=world, stage="backtest", status="pass") == 2),
    ("latency histogram +Inf bucket", (value("wval_evaluation_duration_seconds_bucket", stage="backtest", le="+Inf") or 0) >= 6),
    ("bus backlog of the new group", value("wval_bus_backlog", group=world + "-group", type="evaluation_run_created") == 6),
    ("bus oldest unacked is a number", (value("wval_bus_oldest_unacked_seconds", group=world + "-group", type="evaluation_run_created") or -1) >= 0),
    ("schedule: cron_job label, never succeeded", value("wval_schedule_succeeded", cron_job=job) == 0),
    ("schedule: missed counter", value("wval_schedule_missed_last_day", cron_job=job) is not None),
    ("schedule: no last success for a job that never ran", value("wval_schedule_last_success_timestamp_seconds", cron_job=job) is None),
    ("invariant report", value("wval_invariant_violations", invariant="hash_chain") is not None),
    ("invariant check age", (value("wval_invariant_check_age_seconds") or -1) >= 0),
    ("validation SLO of the world", value("wval_validation_slo_met", world_id=world, stage="backtest") in (0, 1)),
    ("no wval series has a job label", not any("job" in l for s in samples.values() for l, _ in s)),
    ("no wval sample is NaN %s" % [(n, l) for n, s in samples.items() for l, v in s if v == "NaN"],
     not any(v == "NaN" for s in samples.values() for _, v in s)),
    ("every query ran (pg_exporter_last_scrape_error 0)", re.search(r"^pg_exporter_last_scrape_error 0$", text, re.M) is not None),
    ("the query file loaded", re.search(r'^pg_exporter_user_queries_load_error\{[^}]*\} 0$', text, re.M) is not None),
]
# every metric the alert rules and the dashboard use is one the queries produce
queries = yaml.safe_load(open(repo + "/docs/examples/postgres_exporter_queries.yaml"))
produced = {q + "_" + c for q, d in queries.items() for m in d["metrics"] for c, s in m.items() if s["usage"] != "LABEL"}
print("series in the scrape: %d samples of %d wval metrics; %d metrics declared by the queries"
      % (sum(map(len, samples.values())), len(samples), len(produced)))
undeclared = sorted(set(samples) - produced)
checks.append(("every scraped wval metric is declared by the query file %s" % undeclared, not undeclared))
for d, ok in checks:
    print(("ok" if ok else "not ok") + " - " + d)
sys.exit(0 if all(ok for _, ok in checks) else 1)
PY
check "the exporter logged no query error" bash -c "! grep -iE 'error|fail' '$tmp/exporter.log'"

# 4. the Grafana dashboard and the alert rules use only exported series
check "grafana_dashboard.json is valid and uses only exported series" "$py" - "$WVAL_REPO" <<'PY'
import sys, re, json, yaml
repo = sys.argv[1]
queries = yaml.safe_load(open(repo + "/docs/examples/postgres_exporter_queries.yaml"))
produced = {q + "_" + c for q, d in queries.items() for m in d["metrics"] for c, s in m.items() if s["usage"] != "LABEL"}
dash = json.load(open(repo + "/docs/examples/grafana_dashboard.json"))
exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
exprs += [v["query"]["query"] for v in dash.get("templating", {}).get("list", []) if isinstance(v.get("query"), dict)]
rules = [r for g in yaml.safe_load(open(repo + "/docs/examples/alert_rules.yml"))["groups"] for r in g["rules"]]
ids = {p["id"] for p in dash["panels"]}
bad = [] if len(ids) == len(dash["panels"]) and exprs else ["panel ids not unique or no queries"]
for where, e in [("dashboard", e) for e in exprs] + [("alert " + r["alert"], r["expr"]) for r in rules]:
    names = re.findall(r"\bwval_[a-z0-9_]+", e)
    bad += ["%s uses %s" % (where, n) for n in names if n not in produced]
    bad += ["%s uses no wval series: %s" % (where, e)] if not names else []
print("%d dashboard queries, %d alerts" % (len(exprs), len(rules)))
print("\n".join(bad))
sys.exit(1 if bad else 0)
PY

exit $failed
