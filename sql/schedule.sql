-- schedule: the cron-expression evaluator of the watchdog, and the schedule
-- functions without pg_cron (this database has none)
\set SHOW_CONTEXT never
SET timezone = 'UTC';

-- the next time a schedule fires, strictly after a moment (2026-11-27 is a Friday)
SELECT e AS schedule, wval._cron_next(e, '2026-11-27 06:00:00+00') AS next
FROM unnest(ARRAY[
    '15 2 * * *',           -- daily at 02:15: tomorrow
    '0 6 * * *',            -- exactly now does not count: tomorrow
    '*/15 * * * *',         -- every quarter hour
    '0 */6 * * *',          -- every six hours
    '5,35 8-10 * * *',      -- a list and a range
    '10/20 7 * * *',        -- a/s is a-59/s
    '0 9 * * mon-fri',      -- weekdays by name: today, a Friday
    '0 9 * * 7',            -- 7 is Sunday
    '0 0 1 * mon',          -- day of month OR day of week: Monday the 30th comes first
    '0 0 */10 * mon',       -- a day-of-month field starting with * ANDs: the 1st, 11th, 21st, 31st that are Mondays
    '0 0 29 2 *',           -- 29 February: 2028
    '30 1 1 jan,JUL *',     -- month names, any case
    '@hourly', '@daily', '@weekly', '@monthly', '@yearly',
    '0 0 30 2 *'            -- never fires: null
]) e;

-- expected times in (after, until], oldest first, capped by max_rows
SELECT t FROM wval._cron_times('0 */6 * * *', '2026-11-27 00:00:00+00', '2026-11-28 00:00:00+00') t;
SELECT count(*), min(t), max(t) FROM wval._cron_times('* * * * *', '2026-11-27 00:00:00+00', '2026-11-28 00:00:00+00') t;
SELECT count(*) FROM wval._cron_times('* * * * *', '2026-11-27 00:00:00+00', '2026-11-28 00:00:00+00', 'GMT', 10) t;
SELECT count(*) FROM wval._cron_times('0 0 30 2 *', '2026-01-01 00:00:00+00', '2030-01-01 00:00:00+00') t;

-- the wall clock of another time zone (pg_cron >= 1.5 reads cron.timezone)
SELECT wval._cron_next('0 2 * * *', '2026-11-27 06:00:00+00', 'Asia/Seoul') AS seoul_02_00,
       wval._cron_next('30 2 * * *', '2026-03-08 00:00:00+00', 'America/New_York') AS ny_spring_gap,
       wval._cron_timezone() AS pg_cron_zone;

-- what the evaluator accepts
SELECT e, wval._cron_valid(e) FROM unnest(ARRAY['* * * * *', ' 1  2 3 4 5 ', '0 0 * * SUN', '@daily',
    '* * * *', '* * * * * *', '60 * * * *', '* 24 * * *', '* * 0 * *', '* * * 13 *', '* * * * 8',
    '5-1 * * * *', '*/0 * * * *', '1,,2 * * * *', '1, * * * *', 'x * * * *', '* * * foo *', '@reboot', '']) e;

-- errors name the field
SELECT wval._cron_check('61 * * * *');
SELECT wval._cron_check('* * * *');
SELECT wval._cron_check('0 0 * * 8');
SELECT wval._cron_check('5-1 * * * *');
SELECT wval._cron_check('0 */0 * * *');
SELECT wval._cron_check('1,,2 * * * *');
SELECT wval._cron_check('0 0 * * mon,');
SELECT wval._cron_check('0 0 * jna *');
SELECT wval._cron_check('@daly');
SELECT wval._cron_next('* * * * *', 'infinity');

-- without pg_cron: the schedule functions fail with WV010 and a HINT; the
-- DETAIL quotes the server's pg_cron settings (they differ between
-- installations: the test driver's cluster, make tempcheck, a DBA's server),
-- so it is compared with the settings, not printed ...
DO $$
DECLARE
    st text; msg text; det text; hin text;
BEGIN
    PERFORM wval_schedule_live_monitoring();
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL, hin = PG_EXCEPTION_HINT;
    RAISE NOTICE 'sqlstate: %', st;
    RAISE NOTICE 'message: %', msg;
    RAISE NOTICE 'detail quotes shared_preload_libraries and cron.database_name: %',
        det = format('shared_preload_libraries is %L, cron.database_name is %L.',
                     current_setting('shared_preload_libraries'),
                     coalesce(current_setting('cron.database_name', true), '(unset)'));
    RAISE NOTICE 'hint: %', hin;
END
$$;
\set VERBOSITY terse
SELECT wval_schedule_live_monitoring();
SELECT wval_schedule_watchdog();
SELECT wval_watchdog();
SELECT wval_unschedule('live-monitoring');
\set VERBOSITY default
-- ... a bad expression is caught before that ...
SELECT wval_schedule_live_monitoring('15 25 * * *');
-- ... and what only reads works: no jobs, nothing trimmed
SELECT count(*) AS jobs FROM wval.schedule_health;
SELECT wval._trim_cron_history();
SELECT wval._trim_cron_history('0 days');

-- the grace setting
SELECT wval._schedule_grace();
SET wval.schedule_grace = '30s';
SELECT wval._schedule_grace();
RESET wval.schedule_grace;
