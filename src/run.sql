-- run.sql: the one writer of evaluation runs, next to run.c (docs/development.md).
-- Every kind of run is stored by the C run writer: wval_evaluate and
-- wval_evaluate_portfolio call it in C, the SQL entry points (wval_record_run,
-- wval_live_run, wval_evaluate_cohort, wval_import_runs) through this wrapper.
--
-- requires: store bus

CREATE FUNCTION wval._store_run(run wval.evaluation_runs, emit boolean DEFAULT true)
RETURNS wval.evaluation_runs
    AS 'MODULE_PATHNAME', 'wval_store_run'
    LANGUAGE C VOLATILE;
COMMENT ON FUNCTION wval._store_run(wval.evaluation_runs, boolean) IS 'internal: stores a run in the caller''s transaction: its evaluation_run_created event (unless emit is false: imported runs) and the run row, which the chain trigger links into the world''s hash chain; null run_id, kind, context, metrics, results and created_at take their defaults; returns the stored row';
