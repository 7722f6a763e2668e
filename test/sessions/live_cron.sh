#!/usr/bin/env bash
# pg_cron really runs wval's live monitoring: an every-minute job fires once
# (we wait up to ~75 s), the live run of the deployed strategy is created and
# wval.schedule_health shows the success; a stopped wval job scheduled at the
# same time shows up as missed in the watchdog and as inactive and late in the
# health view.  Meanwhile two sessions race for the same live run and get one.
set -euo pipefail
psql() { "$WVAL_BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -At "$@"; }

world="live-cron-$$"
cleanup() {
	psql -c "SELECT wval_unschedule('live-monitoring'), wval_unschedule('watchdog')" >/dev/null 2>&1 || true
}
trap cleanup EXIT

psql >/dev/null <<SQL
SELECT wval_world_upsert('$world', actor => 'test');
SELECT wval_policy_publish('$world', '{
    "validation_profiles": {"backtest": {"performance": {"sharpe_min": 0.5}}},
    "default_profile_by_stage": {"backtest_only": "backtest", "paper_only": "backtest"},
    "live_monitoring": {"sharpe_min": 0.5}}', 'alice');
SELECT wval_policy_activate('$world', 1, 'bob', 'cron test');
SELECT wval_evaluate('$world', 'alpha', 'backtest', '{0.01, 0.02, -0.005, 0.015, 0.012, 0.008, -0.003, 0.02, 0.01, 0.005}');
SELECT wval_set_stage('$world', 'alpha', 'paper', 'carol', 'backtest recommends paper');
SELECT wval_record_live_returns('$world', 'alpha',
    ARRAY(SELECT current_date - i FROM generate_series(9, 0, -1) i),
    '{0.004, -0.001, 0.003, 0.002, -0.002, 0.005, 0.001, 0.003, -0.001, 0.002}', 'gateway');
-- every minute; the watchdog job is scheduled too, but stopped at once
SELECT wval_schedule_live_monitoring('* * * * *');
SELECT wval_schedule_watchdog('* * * * *');
SELECT cron.alter_job(jobid, active => false) FROM cron.job WHERE jobname = 'wval:watchdog';
SQL
echo "scheduled wval:live-monitoring every minute at $(psql -c "SELECT now()")"

# two sessions race for yesterday's live run: the advisory lock makes it one run
race() {
	psql -c "BEGIN" -c "SELECT (wval_live_run('$world', 'alpha', current_date - 1)).run_id" -c "SELECT pg_sleep(1)" -c "COMMIT" |
		grep -E '^[0-9a-f]{8}-'
}
race >"$WVAL_WORK/live_race.1" & r1=$!
race >"$WVAL_WORK/live_race.2" & r2=$!
wait $r1 $r2
runs=$(psql -c "SELECT count(*) FROM wval.evaluation_runs WHERE world_id = '$world' AND kind = 'live' AND as_of = current_date - 1")
[ "$runs" = 1 ] && cmp -s "$WVAL_WORK/live_race.1" "$WVAL_WORK/live_race.2" ||
	{ echo "FAIL: concurrent live runs of one day: $runs runs, $(cat "$WVAL_WORK"/live_race.*)"; exit 1; }
echo "ok: two concurrent callers got the same live run"

# wait for pg_cron to run the job once
status=""
for _ in $(seq 1 45); do
	status=$(psql -c "SELECT d.status FROM cron.job_run_details d JOIN cron.job j ON j.jobid = d.jobid
	                  WHERE j.jobname = 'wval:live-monitoring' AND d.status IN ('succeeded', 'failed')
	                  ORDER BY d.runid LIMIT 1")
	[ -n "$status" ] && break
	sleep 2
done
[ -n "$status" ] || { echo "FAIL: pg_cron did not run wval:live-monitoring within 90 s"; exit 1; }
[ "$status" = succeeded ] || {
	echo "FAIL: the job failed:"
	psql -c "SELECT return_message FROM cron.job_run_details ORDER BY runid"
	exit 1
}
echo "ok: pg_cron ran wval:live-monitoring"

read -r live_status created_by < <(psql -F ' ' -c "SELECT status, created_by FROM wval.evaluation_runs
	WHERE world_id = '$world' AND strategy_id = 'alpha' AND kind = 'live' AND as_of = current_date")
[ "$live_status" = pass ] || { echo "FAIL: no passing live run for today (status '$live_status')"; exit 1; }
echo "ok: the job created today's live run (status $live_status, by $created_by)"

read -r health last_success < <(psql -F ' ' -c "SELECT status, last_success IS NOT NULL FROM wval.schedule_health
	WHERE job = 'wval:live-monitoring'")
[ "$health" = ok ] && [ "$last_success" = t ] ||
	{ echo "FAIL: schedule_health of wval:live-monitoring is '$health', last success known: $last_success"; exit 1; }
echo "ok: wval.schedule_health shows the success"

# the stopped job: its first expected minute is the first one after it was
# scheduled (the watchdog reads that time from the audit log; taking the minute
# the live job ran in instead failed when the jobs were scheduled in the first
# instant of a minute, which pg_cron still ran); with a grace of 20 s the
# watchdog calls it missed 20 s after that minute
first=$(psql -c "SELECT date_trunc('minute', max(recorded_at)) + interval '1 minute' FROM wval.audit_log
                 WHERE world_id IS NULL AND action = 'schedule_set' AND details->>'job' = 'wval:watchdog'")
psql -c "SELECT pg_sleep(greatest(0, extract(epoch FROM '$first'::timestamptz + interval '25 seconds' - now())))" >/dev/null
found=$(psql -c "SET wval.schedule_grace = '20s'" -c "SELECT string_agg(job || ' ' || problem, ', ' ORDER BY job) FROM wval_watchdog()")
[ "$found" = "wval:watchdog missed" ] ||
	{ echo "FAIL: the watchdog found '$found', expected the stopped job's run as missed and nothing else"; exit 1; }
read -r health late missed < <(psql -F ' ' -c "SET wval.schedule_grace = '20s'" -c "SELECT status, late_by IS NOT NULL, missed_24h
	FROM wval.schedule_health WHERE job = 'wval:watchdog'")
[ "$health" = inactive ] && [ "$late" = t ] && [ "$missed" = 1 ] ||
	{ echo "FAIL: schedule_health of the stopped job: status '$health', late $late, missed $missed"; exit 1; }
events=$(psql -c "SELECT count(*) FROM wval.events WHERE type = 'schedule_missed' AND subject = 'wval:watchdog'")
[ "$events" = 1 ] || { echo "FAIL: expected one schedule_missed event, saw $events"; exit 1; }
echo "ok: the stopped job shows up as missed (watchdog, schedule_health, schedule_missed)"
