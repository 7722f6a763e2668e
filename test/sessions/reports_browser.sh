#!/usr/bin/env bash
# The HTML reports seen in a real browser (issue 16): seeds a small database
# of its own (eight weeks of imported history, two evaluated strategies, one
# of them with markup in its name, an approved override, a second policy
# version, live returns with a demotion candidate), renders the validation,
# world and live reports as HTML, and loads each one in headless Chromium
# (reports_browser.py: Chrome DevTools Protocol, network blocked). Fails on
# any console error, any request besides the report's file, a missing chart
# or a script/img element; saves one full-page screenshot per report under
# $WVAL_WORK/reports_browser/ (docs/images/ holds copies; REPORTS_BROWSER_OUT
# sends them elsewhere).
set -euo pipefail

PSQL=("$WVAL_BINDIR/psql" -X -q -t -A -v ON_ERROR_STOP=1)
DB=wval_browser_$$
OUT=${REPORTS_BROWSER_OUT:-${WVAL_WORK:-/tmp}/reports_browser}
fail() { echo "FAIL: $*"; exit 1; }
mkdir -p "$OUT"
chmod 755 "$OUT"
cleanup() { "${PSQL[@]}" -d postgres -c "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1 || true; }
trap cleanup EXIT
"${PSQL[@]}" -d postgres -c "CREATE DATABASE $DB"
P=("${PSQL[@]}" -d "$DB")

"${P[@]}" <<'SQL' >/dev/null
SET client_min_messages = warning;
CREATE EXTENSION wval;
SELECT wval_maintain();
SELECT wval_world_upsert('desk', actor => 'dba');
SELECT wval_policy_publish('desk', '{
    "validation_profiles": {"backtest": {"performance": {"sharpe_min": 0.5, "max_dd_max": 0.12}}},
    "default_profile_by_stage": {"backtest_only": "backtest", "paper_only": "backtest", "paper_ok_live_candidate": "backtest"},
    "live_monitoring": {"sharpe_min": 0.5, "dd_max": 0.04, "demote_after": 1, "windows_days": [30, 60]}}', 'alice', 'first');
SELECT wval_policy_activate('desk', 1, 'bob', 'initial rollout');

-- eight weeks of history (imported), three of every four runs passing
SELECT wval_import_runs(jsonb_agg(jsonb_build_object(
    'world_id', 'desk', 'strategy_id', 'hist-' || (i % 5), 'created_at', now() - (i * interval '13 hours') - interval '1 day',
    'status', CASE WHEN i % 4 = 0 THEN 'fail' WHEN i % 7 = 0 THEN 'warn' ELSE 'pass' END,
    'policy_version', 1, 'metrics', jsonb_build_object('returns', jsonb_build_object('sharpe', 0.2 + (i % 9) * 0.15)),
    'results', jsonb_build_object(
        'performance.sharpe_min', jsonb_build_object('status', CASE WHEN i % 4 = 0 THEN 'fail' ELSE 'pass' END,
                                                     'severity', 'blocking', 'owner', 'quant',
                                                     'reason_code', CASE WHEN i % 4 = 0 THEN 'below_min' ELSE 'ok' END),
        'performance.max_dd_max', jsonb_build_object('status', CASE WHEN i % 8 = 0 THEN 'fail' ELSE 'pass' END,
                                                     'severity', 'blocking', 'owner', 'risk',
                                                     'reason_code', CASE WHEN i % 8 = 0 THEN 'above_max' ELSE 'ok' END)))
    ORDER BY i DESC))
FROM generate_series(1, 100) i;

-- two strategies evaluated from five years of monthly returns
SELECT wval_evaluate('desk', s, 'backtest',
    returns => ARRAY(SELECT round((0.008 + 0.025 * sin(i * 1.3 + length(s)) - CASE WHEN i % 17 = 0 THEN 0.05 ELSE 0 END)::numeric, 5)::float8
                     FROM generate_series(1, 60) i),
    context => '{"periods_per_year": 12}')
FROM unnest(ARRAY['carry-1', '<script>alert(1)</script> "><img src=x onerror=alert(2)> & | `x`']) s;
SELECT wval_evaluate('desk', 'hist-1', 'backtest', returns => ARRAY(SELECT -0.01 + 0.005 * (i % 3) FROM generate_series(1, 24) i),
                     context => '{"periods_per_year": 12}');
SELECT wval_override(r.run_id, 'approved', '<b>known data gap</b> & | `fixed`', 'carol')
FROM wval.evaluation_runs r WHERE r.world_id = 'desk' AND r.strategy_id = 'hist-1' AND r.status = 'fail'
ORDER BY r.created_at DESC LIMIT 1;
SELECT wval_override(r.run_id, 'rejected', 'no: ' || r.strategy_id, 'carol')
FROM wval.evaluation_runs r WHERE r.world_id = 'desk' AND r.strategy_id LIKE '<script>%';

-- a second policy version (a looser drawdown limit)
SELECT wval_policy_publish('desk', '{
    "validation_profiles": {"backtest": {"performance": {"sharpe_min": 0.5, "max_dd_max": 0.15}}},
    "default_profile_by_stage": {"backtest_only": "backtest", "paper_only": "backtest", "paper_ok_live_candidate": "backtest"},
    "live_monitoring": {"sharpe_min": 0.5, "dd_max": 0.04, "demote_after": 1, "windows_days": [30, 60]}}', 'alice', 'looser dd');
SELECT wval_policy_activate('desk', 2, 'bob', 'drawdown limit of the new mandate', force => true);

-- live: 60 days of realized returns of carry-1 at paper, a bad last month
SELECT wval_set_stage('desk', 'carry-1', 'paper', 'vera', 'paper trading');
SELECT wval_record_live_returns('desk', 'carry-1',
    ARRAY(SELECT (current_date - 61 + i)::date FROM generate_series(1, 60) i),
    ARRAY(SELECT 0.001 + 0.006 * sin(i * 0.9) - CASE WHEN i > 40 THEN 0.004 ELSE 0 END FROM generate_series(1, 60) i));
SELECT wval_live_run('desk', 'carry-1', current_date - 1);
SQL

echo "seeded in ${SECONDS} s"
run=$("${P[@]}" -c "SELECT run_id FROM wval.evaluation_runs WHERE world_id = 'desk' AND strategy_id = 'carry-1' AND kind = 'single'")
bad=$("${P[@]}" -c "SELECT run_id FROM wval.evaluation_runs WHERE world_id = 'desk' AND strategy_id LIKE '<script>%'")
[ -n "$run" ] && [ -n "$bad" ] || fail "seed runs missing"
"${P[@]}" -c "SELECT wval_report('$run', 'html')" >"$OUT/validation.html"
"${P[@]}" -c "SELECT wval_report('$bad', 'html')" >"$OUT/validation-markup.html"
"${P[@]}" -c "SELECT wval_world_report('desk', current_date - 62, current_date, 'html')" >"$OUT/world.html"
"${P[@]}" -c "SELECT wval_live_report('desk', current_date - 1, 'html')" >"$OUT/live.html"
chmod 644 "$OUT"/*.html
echo "rendered in ${SECONDS} s"

MARKUP='<script>alert(1)</script> "><img src=x onerror=alert(2)> & | `x`'
timeout 60 /usr/bin/python3 "$(dirname "$0")/reports_browser.py" "$OUT" \
	"validation=$OUT/validation.html:equity,drawdown,rolling-sharpe,distribution" \
	"validation-markup=$OUT/validation-markup.html:equity,drawdown,rolling-sharpe,distribution" \
	"world=$OUT/world.html:status-mix,pass-rate" \
	"live=$OUT/live.html:equity-1,drawdown-1,rolling-sharpe-1" \
	--text "validation-markup=$MARKUP" --text "world=$MARKUP" --text "world=<b>known data gap</b> & | \`fixed\`" \
	--text "live=carry-1" || fail "a report failed in the browser"
echo "browser done in ${SECONDS} s"
echo "ok - validation, world and live reports render in Chromium with every chart, no console error, no request"
