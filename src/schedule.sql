-- schedule.sql: pg_cron plumbing shared by every wval schedule (docs/live.md,
-- "Schedules"). Jobs are named wval:<purpose> so that a DBA sees them in
-- cron.job. pg_cron is optional: without it only these functions fail, with a
-- HINT saying what to set.
--
-- requires: store

-- wval._require_pg_cron(): raises WV010 with set-up instructions unless
-- pg_cron is installed in this database.
CREATE FUNCTION wval._require_pg_cron() RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, wval, pg_temp AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_cron') THEN
        RAISE EXCEPTION 'pg_cron is not installed in database "%"', current_database()
            USING ERRCODE = 'WV010',
                  DETAIL = format('shared_preload_libraries is %L, cron.database_name is %L.',
                                  current_setting('shared_preload_libraries', true),
                                  coalesce(current_setting('cron.database_name', true), '(unset)')),
                  HINT = format('Add pg_cron to shared_preload_libraries, set cron.database_name = %L in postgresql.conf, restart the server and run CREATE EXTENSION pg_cron; or run the job''s command from a scheduler of your own.',
                                current_database());
    END IF;
END
$$;
COMMENT ON FUNCTION wval._require_pg_cron() IS 'raises WV010 with set-up instructions unless pg_cron is installed in this database';

-- wval._cron_schedule(purpose, schedule, command): registers (or updates)
-- the pg_cron job wval:<purpose>; audited.
CREATE FUNCTION wval._cron_schedule(purpose text, schedule text, command text) RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    job bigint;
BEGIN
    PERFORM wval._require_text('schedule', schedule, '22023', 'Pass a cron expression such as ''15 2 * * *''.');
    PERFORM wval._require_pg_cron();
    EXECUTE 'SELECT cron.schedule($1, $2, $3)' INTO job USING 'wval:' || purpose, schedule, command;
    PERFORM wval._audit(NULL, 'schedule_set', wval._invoker(),
                        jsonb_build_object('job', 'wval:' || purpose, 'jobid', job, 'schedule', schedule, 'command', command));
    RETURN job;
END
$$;
COMMENT ON FUNCTION wval._cron_schedule(text, text, text) IS 'registers or updates the pg_cron job wval:<purpose> (WV010 with a HINT when pg_cron is missing); audited';

CREATE FUNCTION public.wval_unschedule(name text) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    job text := CASE WHEN name LIKE 'wval:%' THEN name ELSE 'wval:' || name END;
    found_job boolean;
BEGIN
    PERFORM wval._require_text('name', name);
    PERFORM wval._require_pg_cron();
    EXECUTE 'SELECT EXISTS (SELECT 1 FROM cron.job WHERE jobname = $1)' INTO found_job USING job;
    IF found_job THEN
        EXECUTE 'SELECT cron.unschedule($1)' USING job;
        PERFORM wval._audit(NULL, 'schedule_removed', wval._invoker(), jsonb_build_object('job', job));
    END IF;
    RETURN found_job;
END
$$;
COMMENT ON FUNCTION public.wval_unschedule(text) IS 'removes the pg_cron job wval:<name> (name with or without the wval: prefix); false when it was not scheduled; only wval jobs';

GRANT EXECUTE ON FUNCTION public.wval_unschedule(text) TO wval_admin;

------------------------------------------------------------------------------
-- Cron expressions (schedule.c): when a schedule is expected to fire
------------------------------------------------------------------------------

CREATE FUNCTION wval._cron_valid(schedule text) RETURNS boolean
    AS 'MODULE_PATHNAME', 'wval_cron_valid' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION wval._cron_valid(text) IS 'true for a cron expression wval can evaluate (five fields of *, values, ranges, steps and names, or an @macro)';

CREATE FUNCTION wval._cron_check(schedule text) RETURNS text
    AS 'MODULE_PATHNAME', 'wval_cron_check' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION wval._cron_check(text) IS 'returns the cron expression, or raises 22023 naming the field that is wrong';

CREATE FUNCTION wval._cron_next(schedule text, after timestamptz, tz text DEFAULT 'GMT') RETURNS timestamptz
    AS 'MODULE_PATHNAME', 'wval_cron_next' LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION wval._cron_next(text, timestamptz, text) IS 'the first time strictly after "after" at which the schedule fires on the wall clock of time zone tz; null when it never fires';

CREATE FUNCTION wval._cron_times(schedule text, after timestamptz, until timestamptz, tz text DEFAULT 'GMT',
                                 max_rows integer DEFAULT 10000)
RETURNS SETOF timestamptz
    AS 'MODULE_PATHNAME', 'wval_cron_times' LANGUAGE C STABLE STRICT PARALLEL SAFE ROWS 100;
COMMENT ON FUNCTION wval._cron_times(text, timestamptz, timestamptz, text, integer) IS 'the times in (after, until] at which the schedule fires in time zone tz, oldest first, at most max_rows';

-- wval._cron_timezone(): the zone pg_cron reads schedules in (cron.timezone
-- from pg_cron 1.5 on; GMT before).
CREATE FUNCTION wval._cron_timezone() RETURNS text
LANGUAGE sql STABLE AS $$ SELECT coalesce(nullif(current_setting('cron.timezone', true), ''), 'GMT') $$;
COMMENT ON FUNCTION wval._cron_timezone() IS 'the time zone pg_cron evaluates schedules in: cron.timezone, GMT when unset (pg_cron < 1.5)';

-- wval._schedule_grace(): how long after an expected time a run may start
-- before the watchdog calls it missed (setting wval.schedule_grace).
CREATE FUNCTION wval._schedule_grace() RETURNS interval
LANGUAGE sql STABLE AS $$
    SELECT coalesce(nullif(current_setting('wval.schedule_grace', true), '')::interval, interval '2 minutes')
$$;
COMMENT ON FUNCTION wval._schedule_grace() IS 'the setting wval.schedule_grace: how late a run may start before it counts as missed (default 2 minutes)';

------------------------------------------------------------------------------
-- The watchdog: expected runs of every wval:* job versus cron.job_run_details
------------------------------------------------------------------------------

CREATE TABLE wval.schedule_watch (
    job_name      text PRIMARY KEY,
    jobid         bigint NOT NULL,
    schedule      text NOT NULL,
    since         timestamptz NOT NULL,
    checked_until timestamptz NOT NULL,
    checked_at    timestamptz
);
COMMENT ON TABLE wval.schedule_watch IS 'watchdog state per wval:* pg_cron job: since when its current schedule applies and up to which expected time it was checked (mutable; a job id or schedule change restarts it)';
COMMENT ON COLUMN wval.schedule_watch.since IS 'when the job''s current schedule took effect (the audit row of wval._cron_schedule, else when the watchdog first saw it)';
COMMENT ON COLUMN wval.schedule_watch.checked_until IS 'expected times up to here have been compared with cron.job_run_details';
COMMENT ON COLUMN wval.schedule_watch.jobid IS 'cron.job.jobid; kept after the job is removed so that its run history can still be trimmed';
COMMENT ON COLUMN wval.schedule_watch.job_name IS 'pg_cron job name (wval:<purpose>)';
COMMENT ON COLUMN wval.schedule_watch.schedule IS 'the cron expression being watched';
COMMENT ON COLUMN wval.schedule_watch.checked_at IS 'when the watchdog last looked at the job; null before its first check';

CREATE TABLE wval.schedule_misses (
    job_name        text NOT NULL,
    expected_at     timestamptz NOT NULL,
    jobid           bigint NOT NULL,
    schedule        text NOT NULL,
    problem         text NOT NULL CHECK (problem IN ('missed', 'failed')),
    cron_runid      bigint,
    message         text,
    last_success_at timestamptz,
    detected_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_name, expected_at)
);
COMMENT ON TABLE wval.schedule_misses IS 'expected runs of wval:* pg_cron jobs that did not start (missed) or failed, one row per job and expected time, found by wval_watchdog(); each emitted schedule_missed';
COMMENT ON COLUMN wval.schedule_misses.problem IS 'missed: no run started between the expected time and the next one; failed: a run started and failed';
COMMENT ON COLUMN wval.schedule_misses.cron_runid IS 'cron.job_run_details.runid of the failed run';
COMMENT ON COLUMN wval.schedule_misses.message IS 'return_message of the failed run';
COMMENT ON COLUMN wval.schedule_misses.last_success_at IS 'end of the job''s latest successful run when the problem was found';
COMMENT ON COLUMN wval.schedule_misses.job_name IS 'pg_cron job name (wval:<purpose>)';
COMMENT ON COLUMN wval.schedule_misses.expected_at IS 'the expected start time (from the cron expression) that was missed or failed';
COMMENT ON COLUMN wval.schedule_misses.jobid IS 'cron.job.jobid of the job';
COMMENT ON COLUMN wval.schedule_misses.schedule IS 'the cron expression in force';
COMMENT ON COLUMN wval.schedule_misses.detected_at IS 'when wval_watchdog() found it';
SELECT wval._protect('wval.schedule_misses');

-- wval._schedule_since(jobid, schedule): when a job's current schedule took
-- effect according to the audit log (null when wval did not schedule it).
CREATE FUNCTION wval._schedule_since(p_jobid bigint, p_schedule text) RETURNS timestamptz
LANGUAGE sql STABLE SET search_path = pg_catalog, wval, pg_temp AS $$
    SELECT max(a.recorded_at) FROM wval.audit_log a
    WHERE a.world_id IS NULL AND a.action = 'schedule_set'
      AND a.details->>'jobid' = p_jobid::text AND a.details->>'schedule' = p_schedule
$$;
COMMENT ON FUNCTION wval._schedule_since(bigint, text) IS 'when wval._cron_schedule gave a job its current schedule (audit log), null when unknown';

CREATE FUNCTION public.wval_watchdog(at timestamptz DEFAULT now(), lookback interval DEFAULT '1 day')
RETURNS TABLE (job text, expected_at timestamptz, problem text, message text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    j record;
    w wval.schedule_watch;
    tz text := wval._cron_timezone();
    horizon timestamptz;
    from_t timestamptz;
    last_ok timestamptz;
    hold timestamptz;
    newest timestamptz;
    nslots bigint;
    found_rows jsonb;
BEGIN
    PERFORM wval._require_pg_cron();
    -- at and lookback must leave at - lookback a timestamp (no 22008 later)
    IF at IS NULL OR NOT isfinite(at) OR at > now() OR lookback IS NULL OR lookback <= interval '0'
       OR lookback > interval '100 years' OR at < timestamptz '1900-01-01 00:00+00' THEN
        RAISE EXCEPTION 'invalid value for "%"',
              CASE WHEN at IS NULL OR NOT isfinite(at) OR at > now() OR at < timestamptz '1900-01-01 00:00+00' THEN 'at' ELSE 'lookback' END
            USING ERRCODE = '22023',
                  DETAIL = format('at is %s, lookback is %s.', coalesce(at::text, 'null'), coalesce(lookback::text, 'null')),
                  HINT = 'Pass a point in time since 1900 that is not in the future (what was missed is recorded for good) and a positive interval of at most 100 years such as ''1 day''.';
    END IF;
    horizon := at - wval._schedule_grace();
    FOR j IN
        SELECT c.jobid, c.jobname::text AS jobname, c.schedule FROM cron.job c
        WHERE c.jobname LIKE 'wval:%' ORDER BY c.jobname
    LOOP
        SELECT * INTO w FROM wval.schedule_watch s WHERE s.job_name = j.jobname FOR UPDATE;
        IF NOT FOUND OR w.jobid <> j.jobid OR w.schedule <> j.schedule THEN
            INSERT INTO wval.schedule_watch AS s (job_name, jobid, schedule, since, checked_until)
            VALUES (j.jobname, j.jobid, j.schedule, least(coalesce(wval._schedule_since(j.jobid, j.schedule), at), at),
                    least(coalesce(wval._schedule_since(j.jobid, j.schedule), at), at))
            ON CONFLICT (job_name) DO UPDATE
                SET jobid = excluded.jobid, schedule = excluded.schedule, since = excluded.since,
                    checked_until = excluded.checked_until
            RETURNING * INTO w;
        END IF;
        UPDATE wval.schedule_watch s SET checked_at = at WHERE s.job_name = j.jobname;
        CONTINUE WHEN NOT wval._cron_valid(j.schedule);
        from_t := greatest(w.checked_until, at - lookback);
        CONTINUE WHEN from_t >= horizon;

        SELECT max(d.end_time) INTO last_ok FROM cron.job_run_details d
        WHERE d.jobid = j.jobid AND d.status = 'succeeded';

        -- every expected time in (from_t, horizon] with the runs that started
        -- between it and the next expected time; the ones without a
        -- successful (or still running) run are recorded and announced
        WITH slots AS (
            SELECT e.t AS expected_at,
                   coalesce(bool_or(d.status = 'succeeded'), false) AS ok,
                   coalesce(bool_or(d.status IN ('starting', 'running', 'sending', 'connecting')), false) AS busy,
                   max(d.runid) FILTER (WHERE d.status = 'failed') AS failed_run,
                   (array_agg(d.return_message ORDER BY d.runid DESC) FILTER (WHERE d.status = 'failed'))[1] AS message
            FROM wval._cron_times(j.schedule, from_t, horizon, tz, 10000) e(t)
            LEFT JOIN cron.job_run_details d
                   ON d.jobid = j.jobid AND d.start_time >= e.t
                  AND d.start_time < coalesce(wval._cron_next(j.schedule, e.t, tz), 'infinity')
            GROUP BY e.t),
        found AS (
            INSERT INTO wval.schedule_misses AS m (job_name, expected_at, jobid, schedule, problem, cron_runid,
                                                   message, last_success_at)
            SELECT j.jobname, s.expected_at, j.jobid, j.schedule,
                   CASE WHEN s.failed_run IS NULL THEN 'missed' ELSE 'failed' END, s.failed_run, s.message, last_ok
            FROM slots s
            WHERE NOT s.ok AND NOT s.busy
            ON CONFLICT DO NOTHING
            RETURNING m.*),
        emitted AS (
            SELECT f.job_name, f.expected_at, f.problem, f.message,
                   wval._emit('schedule_missed', NULL, f.job_name,
                              format('schedule_missed:-:%s:%s', f.job_name,
                                     to_char(f.expected_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')),
                              jsonb_build_object('job', f.job_name, 'jobid', f.jobid, 'schedule', f.schedule,
                                                 'expected_at', f.expected_at, 'problem', f.problem,
                                                 'last_success_at', f.last_success_at, 'message', f.message)) AS event_id
            FROM found f)
        SELECT (SELECT min(s.expected_at) FROM slots s WHERE s.busy AND NOT s.ok),
               (SELECT max(s.expected_at) FROM slots s),
               (SELECT count(*) FROM slots s),
               (SELECT coalesce(jsonb_agg(jsonb_build_object('job', e.job_name, 'expected_at', e.expected_at,
                                                             'problem', e.problem, 'message', e.message)
                                          ORDER BY e.expected_at), '[]')
                FROM emitted e)
          INTO hold, newest, nslots, found_rows;

        RETURN QUERY
        SELECT x.job, x.expected_at, x.problem, x.message
        FROM jsonb_to_recordset(found_rows) AS x(job text, expected_at timestamptz, problem text, message text)
        ORDER BY x.expected_at;

        -- a run still in progress is looked at again next time
        UPDATE wval.schedule_watch s
        SET checked_until = CASE WHEN hold IS NOT NULL THEN hold - interval '1 microsecond'
                                 WHEN nslots >= 10000 THEN newest
                                 ELSE horizon END
        WHERE s.job_name = j.jobname;
    END LOOP;
END
$$;
COMMENT ON FUNCTION public.wval_watchdog(timestamptz, interval) IS 'compares the expected runs of every wval:* pg_cron job (from its cron expression) with cron.job_run_details up to "at" (not in the future) minus wval.schedule_grace, at most lookback back: each missed or failed run is recorded in wval.schedule_misses and emits schedule_missed once per job and expected time; returns what it found';

CREATE FUNCTION public.wval_schedule_watchdog(schedule text DEFAULT '*/5 * * * *') RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
BEGIN
    PERFORM wval._require_text('schedule', schedule, '22023', 'Pass a cron expression such as ''*/5 * * * *''.');
    PERFORM wval._cron_check(schedule);
    RETURN wval._cron_schedule('watchdog', schedule, 'SELECT count(*) FROM public.wval_watchdog()');
END
$$;
COMMENT ON FUNCTION public.wval_schedule_watchdog(text) IS 'schedules (or reschedules) the pg_cron job wval:watchdog that runs wval_watchdog(); WV010 with set-up instructions when pg_cron is missing';

-- wval._schedule_health(at): the rows of wval.schedule_health (no rows
-- without pg_cron).
CREATE FUNCTION wval._schedule_health(at timestamptz DEFAULT now())
RETURNS TABLE (job text, jobid bigint, schedule text, active boolean, since timestamptz,
               last_success timestamptz, last_failure timestamptz, last_failure_message text,
               next_expected timestamptz, late_by interval, missed_24h bigint, status text)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    tz text := wval._cron_timezone();
    grace interval := wval._schedule_grace();
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_cron') THEN
        RETURN;
    END IF;
    -- the next expected run and the 24-hour window must stay timestamps
    IF at IS NOT NULL AND (NOT isfinite(at) OR at > now() + interval '100 years'
                           OR at < timestamptz '1900-01-01 00:00+00') THEN
        RAISE EXCEPTION 'invalid value for "at"' USING ERRCODE = '22023',
            DETAIL = format('at is %s.', at),
            HINT = 'Pass a point in time between 1900 and 100 years from now (default now()).';
    END IF;
    RETURN QUERY
    WITH j AS (
        SELECT c.jobid, c.jobname::text AS job, c.schedule, c.active, wval._cron_valid(c.schedule) AS valid,
               coalesce(CASE WHEN w.jobid = c.jobid AND w.schedule = c.schedule THEN w.since END,
                        wval._schedule_since(c.jobid, c.schedule),
                        (SELECT min(d.start_time) FROM cron.job_run_details d WHERE d.jobid = c.jobid),
                        at) AS since
        FROM cron.job c
        LEFT JOIN wval.schedule_watch w ON w.job_name = c.jobname::text
        WHERE c.jobname LIKE 'wval:%'),
    r AS (
        SELECT d.jobid,
               max(d.end_time) FILTER (WHERE d.status = 'succeeded') AS last_success,
               max(d.start_time) FILTER (WHERE d.status IN ('succeeded', 'starting', 'running', 'sending', 'connecting')) AS last_good_start,
               max(d.start_time) FILTER (WHERE d.status = 'failed') AS last_failure,
               (array_agg(d.return_message ORDER BY d.start_time DESC) FILTER (WHERE d.status = 'failed'))[1] AS last_failure_message,
               (array_agg(d.status ORDER BY d.start_time DESC) FILTER (WHERE d.status IN ('succeeded', 'failed')))[1] AS last_finished
        FROM cron.job_run_details d
        WHERE d.jobid IN (SELECT j.jobid FROM j)
        GROUP BY d.jobid),
    x AS (
        SELECT j.*, r.last_success, r.last_failure, r.last_failure_message, r.last_finished,
               CASE WHEN j.valid THEN wval._cron_next(j.schedule, greatest(j.since, r.last_good_start), tz) END AS due,
               CASE WHEN j.valid THEN wval._cron_next(j.schedule, at, tz) END AS next_expected,
               (SELECT count(*) FROM wval.schedule_misses m
                WHERE m.job_name = j.job AND m.expected_at > at - interval '24 hours') AS missed_24h
        FROM j LEFT JOIN r ON r.jobid = j.jobid)
    SELECT x.job, x.jobid, x.schedule, x.active, x.since, x.last_success, x.last_failure, x.last_failure_message,
           x.next_expected,
           CASE WHEN x.due + grace <= at THEN at - x.due END,
           x.missed_24h,
           CASE WHEN NOT x.valid THEN 'unknown_schedule'
                WHEN NOT x.active THEN 'inactive'
                WHEN x.last_finished = 'failed' THEN 'failing'
                WHEN x.due + grace <= at THEN 'late'
                ELSE 'ok' END
    FROM x
    ORDER BY x.job;
END
$$;
COMMENT ON FUNCTION wval._schedule_health(timestamptz) IS 'the rows of wval.schedule_health as of a point in time';

CREATE VIEW wval.schedule_health AS SELECT * FROM wval._schedule_health();
COMMENT ON VIEW wval.schedule_health IS 'one row per wval:* pg_cron job: schedule, active, last success (end of the latest successful run), last failure and its message, next expected run, late_by (time since the first expected run that has not succeeded, once wval.schedule_grace has passed), schedule_missed rows of the last 24 hours, status ok | late | failing | inactive | unknown_schedule; empty without pg_cron';
COMMENT ON COLUMN wval.schedule_health.job IS 'pg_cron job name (wval:<purpose>)';
COMMENT ON COLUMN wval.schedule_health.jobid IS 'cron.job.jobid';
COMMENT ON COLUMN wval.schedule_health.schedule IS 'the job''s cron expression';
COMMENT ON COLUMN wval.schedule_health.active IS 'cron.job.active';
COMMENT ON COLUMN wval.schedule_health.since IS 'when the current schedule took effect';
COMMENT ON COLUMN wval.schedule_health.last_success IS 'end of the latest successful run; null when none';
COMMENT ON COLUMN wval.schedule_health.last_failure IS 'start of the latest failed run; null when none';
COMMENT ON COLUMN wval.schedule_health.last_failure_message IS 'return_message of the latest failed run';
COMMENT ON COLUMN wval.schedule_health.next_expected IS 'next time the schedule fires (in cron.timezone); null for an unknown schedule';
COMMENT ON COLUMN wval.schedule_health.late_by IS 'time since the first expected run that has not succeeded, once wval.schedule_grace has passed; null when not late';
COMMENT ON COLUMN wval.schedule_health.missed_24h IS 'rows of wval.schedule_misses for the job with expected_at in the last 24 hours';
COMMENT ON COLUMN wval.schedule_health.status IS 'ok | late | failing | inactive | unknown_schedule';

-- wval._trim_cron_history(keep): removes the cron.job_run_details rows of
-- wval's own jobs that ended more than `keep` ago; other jobs' rows stay.
CREATE FUNCTION wval._trim_cron_history(keep interval DEFAULT '14 days') RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    n bigint;
BEGIN
    IF keep IS NULL OR keep <= interval '0' THEN
        RAISE EXCEPTION 'invalid value for "keep"' USING ERRCODE = '22023',
            DETAIL = format('keep is %s.', coalesce(keep::text, 'null')),
            HINT = 'Pass a positive interval such as ''14 days''.';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_cron') THEN
        RETURN 0;
    END IF;
    DELETE FROM cron.job_run_details d
    WHERE coalesce(d.end_time, d.start_time) < now() - keep
      AND d.status IN ('succeeded', 'failed')
      AND (d.jobid IN (SELECT c.jobid FROM cron.job c WHERE c.jobname LIKE 'wval:%')
           OR d.jobid IN (SELECT w.jobid FROM wval.schedule_watch w));
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n > 0 THEN
        PERFORM wval._audit(NULL, 'cron_history_trimmed', wval._invoker(),
                            jsonb_build_object('keep', keep, 'deleted', n));
    END IF;
    RETURN n;
END
$$;
COMMENT ON FUNCTION wval._trim_cron_history(interval) IS 'deletes cron.job_run_details rows of wval:* jobs (also removed ones the watchdog knew) that ended more than keep ago (default 14 days); leaves other jobs alone; 0 without pg_cron';

SELECT pg_catalog.pg_extension_config_dump('wval.schedule_watch', '');
SELECT pg_catalog.pg_extension_config_dump('wval.schedule_misses', '');

GRANT SELECT ON wval.schedule_watch, wval.schedule_misses, wval.schedule_health TO wval_analyst;
GRANT EXECUTE ON FUNCTION wval._schedule_health(timestamptz) TO wval_analyst;
GRANT EXECUTE ON FUNCTION public.wval_watchdog(timestamptz, interval), public.wval_schedule_watchdog(text) TO wval_admin;
