-- pgTAP: pg_cron jobs of wval, the watchdog against a synthetic run history,
-- wval.schedule_health and the trimming of cron.job_run_details
BEGIN;
SET client_min_messages = warning;
SET timezone = 'UTC';
SELECT plan(43);

CREATE ROLE tap_sched_admin; GRANT wval_admin TO tap_sched_admin;
CREATE ROLE tap_sched_gw;    GRANT wval_producer TO tap_sched_gw;
CREATE ROLE tap_sched_read;  GRANT wval_analyst TO tap_sched_read;

------------------------------------------------------------------------------
-- scheduling
------------------------------------------------------------------------------

SET ROLE tap_sched_admin;
SELECT ok(wval_schedule_live_monitoring() > 0, 'an admin schedules live monitoring');
RESET ROLE;
SELECT results_eq($$SELECT schedule, command FROM cron.job WHERE jobname = 'wval:live-monitoring'$$,
                  $$VALUES ('15 2 * * *'::text, 'SELECT count(*) FROM public.wval_live_run_all()'::text)$$,
                  'job wval:live-monitoring runs wval_live_run_all() daily at 02:15');
SELECT is(wval_schedule_live_monitoring('30 3 * * 1-5'),
          (SELECT jobid FROM cron.job WHERE jobname = 'wval:live-monitoring'), 'rescheduling keeps the job');
SELECT results_eq($$SELECT count(*)::int, min(schedule) FROM cron.job WHERE jobname = 'wval:live-monitoring'$$,
                  $$VALUES (1, '30 3 * * 1-5'::text)$$, '... and changes its schedule');
SELECT is((SELECT count(*)::int FROM wval.audit_log WHERE action = 'schedule_set' AND details->>'job' = 'wval:live-monitoring'), 2,
          'every (re)scheduling is audited');
SELECT throws_ok($$SELECT wval_schedule_live_monitoring('15 2 * *')$$, '22023', NULL, 'a bad cron expression: 22023');
SELECT throws_ok($$SELECT wval_schedule_live_monitoring(' ')$$, '22023', NULL, 'a blank schedule: 22023');
SELECT ok(wval_schedule_watchdog() > 0, 'the watchdog job');
SELECT results_eq($$SELECT schedule, command FROM cron.job WHERE jobname = 'wval:watchdog'$$,
                  $$VALUES ('*/5 * * * *'::text, 'SELECT count(*) FROM public.wval_watchdog()'::text)$$,
                  'job wval:watchdog runs wval_watchdog() every five minutes');
SET ROLE tap_sched_gw;
SELECT throws_ok($$SELECT wval_schedule_watchdog()$$, '42501', NULL, 'a producer cannot schedule');
SELECT throws_ok($$SELECT wval_watchdog()$$, '42501', NULL, 'a producer cannot run the watchdog');
RESET ROLE;
SELECT ok(wval_unschedule('live-monitoring'), 'wval_unschedule removes the job');
SELECT ok(NOT wval_unschedule('wval:live-monitoring'), '... and says so when there is none');
SELECT ok(wval_unschedule('watchdog'), 'the watchdog job is removed too');

------------------------------------------------------------------------------
-- the watchdog: a minutely job whose schedule took effect ten and a half
-- minutes ago, expected at T0 .. T8 (T8 = two minutes, the grace, ago)
------------------------------------------------------------------------------

-- wval._cron_schedule is internal: reached through a SECURITY DEFINER function, as wval's writers do
CREATE FUNCTION pg_temp.cron_schedule(p text, s text, c text) RETURNS bigint
LANGUAGE sql SECURITY DEFINER AS $$ SELECT wval._cron_schedule(p, s, c) $$;

CREATE TEMP TABLE t AS
SELECT date_trunc('minute', now()) - interval '10 minutes' AS t0,
       pg_temp.cron_schedule('tap-minutely', '* * * * *', 'SELECT 1') AS jobid;
INSERT INTO wval.schedule_watch (job_name, jobid, schedule, since, checked_until)
SELECT 'wval:tap-minutely', jobid, '* * * * *', t0 - interval '30 seconds', t0 - interval '30 seconds' FROM t;
-- T0, T1 ran; T2 failed; T3 never started; T4 started late; T5 failed and
-- was retried; T6 is still running; T7 never started; T8 ran
INSERT INTO cron.job_run_details (jobid, job_pid, database, username, command, status, return_message, start_time, end_time)
SELECT t.jobid, 4242, current_database(), current_user, 'SELECT 1', r.status, r.msg,
       t.t0 + r.k * interval '1 minute' + r.late, CASE WHEN r.status <> 'running' THEN t.t0 + r.k * interval '1 minute' + r.late + interval '1 second' END
FROM t, (VALUES (0, 'succeeded', 'SELECT 1', interval '1 second'), (1, 'succeeded', 'SELECT 1', interval '2 seconds'),
                (2, 'failed', 'ERROR:  boom', interval '1 second'), (4, 'succeeded', 'SELECT 1', interval '30 seconds'),
                (5, 'failed', 'ERROR:  first try', interval '1 second'), (5, 'succeeded', 'SELECT 1', interval '20 seconds'),
                (6, 'running', NULL, interval '1 second'), (8, 'succeeded', 'SELECT 1', interval '1 second')) r(k, status, msg, late);

SELECT results_eq($$SELECT job, expected_at, problem, message FROM wval_watchdog()$$,
                  $$SELECT 'wval:tap-minutely', t0 + k * interval '1 minute', p, m
                    FROM t, (VALUES (2, 'failed', 'ERROR:  boom'), (3, 'missed', NULL), (7, 'missed', NULL)) x(k, p, m)$$,
                  'the watchdog finds the failed run and the two missed ones');
SELECT results_eq($$SELECT job_name, expected_at, problem, cron_runid IS NOT NULL FROM wval.schedule_misses
                    WHERE job_name = 'wval:tap-minutely' ORDER BY expected_at$$,
                  $$SELECT 'wval:tap-minutely', t0 + k * interval '1 minute', p, f
                    FROM t, (VALUES (2, 'failed', true), (3, 'missed', false), (7, 'missed', false)) x(k, p, f)$$,
                  'they are recorded in wval.schedule_misses');
SELECT results_eq($$SELECT payload->'data'->>'problem', (payload->'data'->>'expected_at')::timestamptz,
                           payload->'data'->>'last_success_at' IS NOT NULL, world_id IS NULL
                    FROM wval.events WHERE type = 'schedule_missed' AND subject = 'wval:tap-minutely' ORDER BY event_id$$,
                  $$SELECT p, t0 + k * interval '1 minute', true, true
                    FROM t, (VALUES (2, 'failed'), (3, 'missed'), (7, 'missed')) x(k, p)$$,
                  'each emitted schedule_missed with the expected time and the last success');
SELECT is((SELECT checked_until FROM wval.schedule_watch WHERE job_name = 'wval:tap-minutely'),
          (SELECT t0 + interval '6 minutes' - interval '1 microsecond' FROM t),
          'the run still in progress (T6) is looked at again next time');
SELECT is_empty($$SELECT * FROM wval_watchdog()$$, 'a second check reports nothing new');
SELECT is((SELECT count(*)::int FROM wval.events WHERE type = 'schedule_missed' AND subject = 'wval:tap-minutely'), 3,
          'and emits nothing again (one event per job and expected time)');
UPDATE cron.job_run_details SET status = 'failed', return_message = 'ERROR:  killed', end_time = start_time + interval '5 seconds'
WHERE jobid = (SELECT jobid FROM t) AND status = 'running';
SELECT results_eq($$SELECT problem, message FROM wval_watchdog()$$, $$VALUES ('failed', 'ERROR:  killed')$$,
                  'the run that was in progress failed later: reported then');
SELECT is((SELECT checked_until FROM wval.schedule_watch WHERE job_name = 'wval:tap-minutely'),
          now() - interval '2 minutes', 'checked up to now minus the grace');
SELECT throws_ok($$SELECT wval_watchdog(now() + interval '1 minute')$$, '22023', NULL, 'the watchdog does not look into the future');
SELECT throws_ok($$SELECT wval_watchdog(lookback => '0 days')$$, '22023', NULL, 'a lookback must be positive');
SELECT throws_ok($$SELECT wval_watchdog(lookback => '178000000 years')$$, '22023', 'invalid value for "lookback"',
                 'a lookback beyond 100 years is 22023, not a timestamp overflow (22008)');
SELECT throws_ok($$SELECT wval_watchdog('0044-03-15 12:00+00')$$, '22023', 'invalid value for "at"',
                 'a point in time before 1900 is 22023');
SELECT throws_ok($$SELECT * FROM wval._schedule_health(timestamptz '294276-12-31 23:59:59+00')$$, '22023', 'invalid value for "at"',
                 'schedule health as of the last representable time is 22023, not 22008');
SELECT throws_ok($$INSERT INTO wval.schedule_misses (job_name, expected_at, jobid, schedule, problem)
                   VALUES ('wval:x', now(), 1, '* * * * *', 'missed'); DELETE FROM wval.schedule_misses$$, 'WV003', NULL,
                 'schedule misses are append-only');

------------------------------------------------------------------------------
-- wval.schedule_health
------------------------------------------------------------------------------

-- a five-minutely job that was due an hour ago and never ran, an inactive
-- one, and one whose schedule the evaluator does not know (@reboot)
CREATE TEMP TABLE t2 AS
SELECT pg_temp.cron_schedule('tap-stale', '*/5 * * * *', 'SELECT 1') AS stale,
       pg_temp.cron_schedule('tap-paused', '0 * * * *', 'SELECT 1') AS paused,
       pg_temp.cron_schedule('tap-reboot', '@reboot', 'SELECT 1') AS reboot;
INSERT INTO wval.schedule_watch (job_name, jobid, schedule, since, checked_until)
SELECT 'wval:tap-stale', stale, '*/5 * * * *', now() - interval '1 hour', now() - interval '1 hour' FROM t2;
SELECT cron.alter_job(paused, active => false) FROM t2;

SELECT results_eq($$SELECT job, status FROM wval.schedule_health WHERE job LIKE 'wval:tap-%' ORDER BY job$$,
                  $$VALUES ('wval:tap-minutely', 'ok'), ('wval:tap-paused', 'inactive'), ('wval:tap-reboot', 'unknown_schedule'),
                           ('wval:tap-stale', 'late')$$,
                  'status per job');
SELECT results_eq($$SELECT last_success, last_failure, last_failure_message, late_by, missed_24h
                    FROM wval.schedule_health WHERE job = 'wval:tap-minutely'$$,
                  $$SELECT t0 + interval '8 minutes 2 seconds', t0 + interval '6 minutes 1 second', 'ERROR:  killed', NULL::interval, 4::bigint FROM t$$,
                  'the minutely job: last success, last failure and its message, not late, four problems in 24 hours');
SELECT is((SELECT next_expected FROM wval.schedule_health WHERE job = 'wval:tap-minutely'),
          date_trunc('minute', now()) + interval '1 minute', 'the next expected run');
SELECT is((SELECT late_by FROM wval.schedule_health WHERE job = 'wval:tap-stale'),
          now() - to_timestamp(ceil(extract(epoch FROM now() - interval '1 hour') / 300) * 300),
          'late_by counts from the first expected run that did not succeed');
SELECT ok((SELECT late_by IS NULL AND next_expected IS NULL FROM wval.schedule_health WHERE job = 'wval:tap-reboot'),
          'an unknown schedule has no expected times');
SELECT is((SELECT count(*)::int FROM wval_watchdog() w WHERE w.job = 'wval:tap-stale'),
          (SELECT count(*)::int FROM generate_series(date_trunc('minute', now() - interval '1 hour') + interval '1 minute',
                                                     now() - interval '2 minutes', interval '1 minute') m
           WHERE extract(minute FROM m)::int % 5 = 0),
          'the watchdog reports every missed five-minute run of the stale job');
SELECT is((SELECT count(*)::int FROM wval_watchdog() w WHERE w.job IN ('wval:tap-paused', 'wval:tap-reboot')), 0,
          'jobs scheduled just now are not late yet');
SELECT is((SELECT status FROM wval._schedule_health(now() + interval '2 hours') WHERE job = 'wval:tap-paused'), 'inactive',
          'a stopped job stays inactive ...');
SELECT ok((SELECT late_by > interval '1 hour' FROM wval._schedule_health(now() + interval '2 hours') WHERE job = 'wval:tap-paused'),
          '... and its lateness grows');
SET ROLE tap_sched_read;
SELECT is((SELECT count(*)::int FROM wval.schedule_health WHERE job LIKE 'wval:tap-%'), 4, 'an analyst reads schedule health');
RESET ROLE;

------------------------------------------------------------------------------
-- trimming cron.job_run_details: only wval's own jobs (also removed ones)
------------------------------------------------------------------------------

CREATE TEMP TABLE t3 AS SELECT cron.schedule('tap-other-job', '0 0 * * *', 'SELECT 1') AS other;
INSERT INTO wval.schedule_watch (job_name, jobid, schedule, since, checked_until)
VALUES ('wval:tap-removed', 987654321, '0 0 * * *', now() - interval '90 days', now() - interval '90 days');
INSERT INTO cron.job_run_details (jobid, job_pid, database, username, command, status, return_message, start_time, end_time)
SELECT j, 1, current_database(), current_user, 'SELECT 1', 'succeeded', 'SELECT 1',
       now() - interval '20 days', now() - interval '20 days' + interval '1 second'
FROM t, t3, unnest(ARRAY[t.jobid, t3.other, 987654321]) j;
SELECT is(wval._trim_cron_history(), 2::bigint, 'two old rows of wval jobs are trimmed (one of a removed job)');
SELECT is((SELECT count(*)::int FROM cron.job_run_details WHERE jobid = (SELECT other FROM t3)), 1, 'the other job''s row stays');
SELECT is((SELECT count(*)::int FROM cron.job_run_details WHERE jobid = (SELECT jobid FROM t)), 8, 'recent rows stay');
SELECT is(wval._trim_cron_history('1 minute'), 8::bigint, 'a shorter keep trims more');
SELECT is((SELECT count(*)::int FROM wval.audit_log WHERE action = 'cron_history_trimmed'), 2, 'trimming is audited');

SELECT * FROM finish();
ROLLBACK;
