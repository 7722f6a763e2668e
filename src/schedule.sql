-- schedule.sql: pg_cron plumbing shared by every wval schedule (spec live.md,
-- "Schedules"). Jobs are named wval:<purpose> so that a DBA sees them in
-- cron.job. pg_cron is optional: without it only these functions fail, with a
-- HINT saying what to set.

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
