-- retention: settings, legal hold, import of historical runs, purge (dry run and
-- real), whole-month partitions, tombstones and the chain
\set SHOW_CONTEXT never

SELECT world_id FROM wval_world_upsert('w-ret', 'medium', false, actor => 'dba');

-- settings: at least 90 days, per table and world; the longest applicable setting wins
SELECT * FROM wval_retention_set('evaluation_runs', '30 days', 'w-ret');
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY terse
INSERT INTO wval.retention (table_name, world_id, keep, updated_by) VALUES ('*', '*', '10 days', 'dba');
\set VERBOSITY default
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM wval_retention_set('audit_log', '1 year');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM wval_retention_set('evaluation_runs', '1 year', 'w-nowhere');
\echo :LAST_ERROR_SQLSTATE
SELECT table_name, world_id, keep, updated_by FROM wval_retention_set('policy_versions', '2 years', 'w-ret', actor => 'dba');
SELECT table_name, world_id, keep FROM wval_retention_set('*', '100 days', 'w-ret', actor => 'dba');
SELECT wval._retention_keep('evaluation_runs', 'w-ret') AS runs, wval._retention_keep('policy_versions', 'w-ret') AS versions,
       wval._retention_keep('evaluation_runs', 'w-other') AS elsewhere;
SELECT * FROM wval_retention_set('*', NULL, 'w-ret', actor => 'dba');
SELECT table_name, world_id, keep FROM wval.retention WHERE world_id = 'w-ret';
SELECT action, actor, details->>'table_name' AS table_name, details->>'keep' AS keep
FROM wval.audit_log WHERE world_id = 'w-ret' AND action = 'retention_set' ORDER BY id;

-- import: history from 2021 with its original timestamps (client ids r01 ... r12; run_id
-- values that are not uuids are kept as client_run_id)
SELECT wval_import_runs('[
  {"world_id": "w-ret", "strategy_id": "s1", "created_at": "2021-01-10T10:00:00Z", "status": "pass", "run_id": "r01",
   "metrics": {"returns": {"sharpe": 0.9}}, "created_by": "import-bot", "policy_version": 1,
   "results": {"performance.sharpe_min": {"status": "pass", "severity": "blocking", "owner": "quant", "reason_code": "ok", "tags": ["performance"]}}},
  {"world_id": "w-ret", "strategy_id": "s2", "created_at": "2021-01-20T10:00:00Z", "status": "fail", "run_id": "r02",
   "metrics": {"returns": {"sharpe": 0.2}}, "created_by": "import-bot"},
  {"world_id": "w-ret", "strategy_id": "s1", "created_at": "2021-02-10T10:00:00Z", "status": "pass", "run_id": "r03",
   "metrics": {"returns": {"sharpe": 1.0}}, "created_by": "import-bot",
   "results": {"performance.sharpe_min": {"status": "pass", "severity": "blocking", "owner": "quant", "reason_code": "ok"},
               "performance.max_dd_max": {"status": "pass", "severity": "blocking", "owner": "quant", "reason_code": "ok"}}},
  {"world_id": "w-ret", "strategy_id": "s2", "created_at": "2021-02-15T10:00:00Z", "status": "fail", "run_id": "r04",
   "metrics": {"returns": {"sharpe": 0.3}}, "created_by": "import-bot",
   "results": {"performance.sharpe_min": {"status": "fail", "severity": "blocking", "owner": "quant", "reason_code": "sharpe_below_min"}}},
  {"world_id": "w-ret", "strategy_id": "s1", "created_at": "2021-03-10T10:00:00Z", "status": "pass", "run_id": "r05",
   "metrics": {"returns": {"sharpe": 1.1}}, "created_by": "import-bot"},
  {"world_id": "w-ret", "strategy_id": "s2", "created_at": "2021-03-12T10:00:00Z", "status": "fail", "run_id": "r06",
   "metrics": {"returns": {"sharpe": 0.35}}, "created_by": "import-bot"},
  {"world_id": "w-ret", "strategy_id": "s1", "created_at": "2021-03-20T10:00:00Z", "status": "pass", "run_id": "r07",
   "metrics": {"returns": {"sharpe": 1.2}}, "created_by": "import-bot"},
  {"world_id": "w-ret", "strategy_id": "s3", "created_at": "2021-03-25T10:00:00Z", "status": "pass", "run_id": "r08",
   "metrics": {"returns": {"sharpe": 0.8}}, "created_by": "import-bot"},
  {"world_id": "w-ret", "strategy_id": "s2", "created_at": "2021-04-02T10:00:00Z", "status": "pass", "run_id": "r09",
   "metrics": {"returns": {"sharpe": 0.7}}, "created_by": "import-bot"},
  {"world_id": "w-ret", "strategy_id": "s1", "stage": "paper", "created_at": "2021-04-15T10:00:00Z", "status": "pass", "run_id": "r10",
   "metrics": {"returns": {"sharpe": 1.0}}, "created_by": "import-bot"},
  {"world_id": "w-ret", "strategy_id": "s1", "created_at": "2021-05-01T10:00:00Z", "status": "pass", "run_id": "r11",
   "metrics": {"returns": {"sharpe": 1.3}}, "created_by": "import-bot"},
  {"world_id": "w-ret", "strategy_id": "s3", "created_at": "2021-05-05T10:00:00Z", "status": "pass", "run_id": "r12",
   "metrics": {"returns": {"sharpe": 0.85}}, "created_by": "import-bot"}
]');
-- ... the months got their own partitions first; the chain follows the import order
SELECT client_run_id, tableoid::regclass AS part, chain_seq - min(chain_seq) OVER () + 1 AS seq, created_by
FROM wval.evaluation_runs WHERE world_id = 'w-ret' ORDER BY chain_seq;
-- (their results are part of each run: wval.rule_results derives one row per check)
SELECT to_char(rr.created_at AT TIME ZONE 'UTC', 'YYYY-MM') AS month, count(*) AS rule_results
FROM wval.rule_results rr WHERE rr.world_id = 'w-ret' GROUP BY 1 ORDER BY 1;
SELECT wval_verify_chain('w-ret') AS chain_ok;
-- importing the same runs again adds nothing
SELECT wval_import_runs('[{"world_id": "w-ret", "strategy_id": "s1", "created_at": "2021-01-10T10:00:00Z", "status": "pass", "run_id": "r01", "metrics": {}}]') AS imported;
-- errors: nothing is imported when one element is wrong
SELECT wval_import_runs('{"runs": []}');
\echo :LAST_ERROR_SQLSTATE
SELECT wval_import_runs('[{"world_id": "w-ret", "strategy_id": "s1", "status": "pass", "metrics": {}}]');
\echo :LAST_ERROR_SQLSTATE
SELECT wval_import_runs('[{"world_id": "w-ret", "strategy_id": "s1", "created_at": "last tuesday", "status": "pass", "metrics": {}}]');
\echo :LAST_ERROR_SQLSTATE
SELECT wval_import_runs('[{"world_id": "w-ret", "strategy_id": "s1", "created_at": "2999-01-01", "status": "pass", "metrics": {}}]');
\echo :LAST_ERROR_SQLSTATE
SELECT wval_import_runs('[{"world_id": "w-ret", "strategy_id": "s1", "created_at": "2021-01-01", "status": "great", "metrics": {}}]');
\echo :LAST_ERROR_SQLSTATE
SELECT wval_import_runs('[{"world_id": "w-nowhere", "strategy_id": "s1", "created_at": "2021-01-01", "status": "pass", "metrics": {}}]');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS runs FROM wval.evaluation_runs WHERE world_id = 'w-ret';

-- what protects old runs: r04 has an approved override, r05 an open ex-post case,
-- r08 is superseded by a kept run (below); r06's case was dismissed and r07's override rejected
SELECT status FROM wval_override((SELECT run_id FROM wval.evaluation_runs WHERE client_run_id = 'r04'), 'approved', 'known data gap', 'carol');
SELECT status FROM wval_record_failure((SELECT run_id FROM wval.evaluation_runs WHERE client_run_id = 'r05'), 'risk_breach', 'var_breach', 'high', 'dave');
SELECT status FROM wval_record_failure((SELECT run_id FROM wval.evaluation_runs WHERE client_run_id = 'r06'), 'data_issue', 'bad_prices', 'low', 'dave');
SELECT status FROM wval_record_failure((SELECT run_id FROM wval.evaluation_runs WHERE client_run_id = 'r06'), 'data_issue', 'bad_prices', 'low', 'dave',
       status => 'dismissed', case_id => (SELECT case_id FROM wval.ex_post_failures f JOIN wval.evaluation_runs r USING (run_id) WHERE r.client_run_id = 'r06' LIMIT 1));
SELECT status FROM wval_override((SELECT run_id FROM wval.evaluation_runs WHERE client_run_id = 'r07'), 'rejected', 'no', 'carol');
-- r13 corrects r08 (supersedes): a kept run keeps what it points at
SELECT wval_import_runs(jsonb_build_array(jsonb_build_object('world_id', 'w-ret', 'strategy_id', 's3', 'created_at', '2021-05-06T10:00:00Z',
       'status', 'pass', 'run_id', 'r13', 'metrics', '{}'::jsonb, 'created_by', 'import-bot',
       'supersedes', (SELECT run_id FROM wval.evaluation_runs WHERE client_run_id = 'r08')))) AS imported;

-- the purge refuses to cut inside the minimum retention ...
\set VERBOSITY terse
SELECT wval_purge(now() - interval '30 days', 'w-ret');
\echo :LAST_ERROR_SQLSTATE
SELECT wval_purge(now() - interval '30 days');
\echo :LAST_ERROR_SQLSTATE
-- ... or a world's longer setting
SELECT table_name FROM wval_retention_set('evaluation_runs', '10 years', 'w-ret', actor => 'dba');
SELECT wval_purge('2021-04-01', 'w-ret');
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY default
SELECT * FROM wval_retention_set('evaluation_runs', NULL, 'w-ret', actor => 'dba');
-- ... and under a legal hold
SELECT world_id, legal_hold FROM wval_world_upsert('w-ret', legal_hold => true, actor => 'dba');
SELECT wval_purge('2021-04-01', 'w-ret');
\echo :LAST_ERROR_SQLSTATE
SELECT world_id, legal_hold FROM wval_world_upsert('w-ret', legal_hold => false, actor => 'dba');
SELECT wval_purge('2021-04-01', NULL::text, NULL);
\echo :LAST_ERROR_SQLSTATE

-- dry run (the default): the report, nothing deleted
CREATE TEMP TABLE before AS
SELECT (SELECT count(*) FROM wval.evaluation_runs WHERE world_id = 'w-ret') AS runs,
       (SELECT count(*) FROM wval.rule_results WHERE world_id = 'w-ret') AS results,
       (SELECT count(*) FROM wval.overrides WHERE world_id = 'w-ret') AS overrides,
       (SELECT count(*) FROM wval.ex_post_failures WHERE world_id = 'w-ret') AS failures;
CREATE TEMP TABLE before_results AS SELECT run_id, rule FROM wval.rule_results WHERE world_id = 'w-ret';
CREATE TEMP TABLE dry AS SELECT wval_purge('2021-04-01', 'w-ret') AS r;
SELECT t.key AS table_name, t.value->'candidates' AS candidates, t.value->'deleted' AS deleted,
       t.value->'protected' AS protected,
       CASE WHEN (t.value->>'oldest_kept')::timestamptz > now() - interval '1 day' THEN 'today'
            ELSE t.value->>'oldest_kept' END AS oldest_kept
FROM dry, jsonb_each(dry.r->'worlds'->'w-ret'->'tables') t ORDER BY t.key;
SELECT p->>'partition' AS partition, p->'rows' AS rows, p->'dropped' AS dropped
FROM dry, jsonb_array_elements(dry.r->'partitions') p;
SELECT dry.r->'dry_run' AS dry_run, dry.r->'legal_hold_skipped' AS held FROM dry;
SELECT (SELECT count(*) FROM wval.evaluation_runs WHERE world_id = 'w-ret') = b.runs AS runs_kept,
       (SELECT count(*) FROM wval.rule_results WHERE world_id = 'w-ret') = b.results AS results_kept,
       (SELECT count(*) FROM wval.overrides WHERE world_id = 'w-ret') = b.overrides AS overrides_kept,
       (SELECT count(*) FROM wval.ex_post_failures WHERE world_id = 'w-ret') = b.failures AS failures_kept,
       to_regclass('wval.evaluation_runs_p202101') IS NOT NULL AS january_still_there
FROM before b;

-- the real purge removes exactly what the dry run promised
CREATE TEMP TABLE real AS SELECT wval_purge('2021-04-01', 'w-ret', dry_run => false) AS r;
SELECT t.key AS table_name, t.value->'candidates' AS candidates, t.value->'deleted' AS deleted
FROM real, jsonb_each(real.r->'worlds'->'w-ret'->'tables') t ORDER BY t.key;
SELECT (SELECT jsonb_object_agg(t.key, t.value - 'deleted') FROM real, jsonb_each(real.r->'worlds'->'w-ret'->'tables') t)
     = (SELECT jsonb_object_agg(t.key, t.value - 'deleted') FROM dry, jsonb_each(dry.r->'worlds'->'w-ret'->'tables') t) AS same_as_promised,
       (SELECT count(*) FROM wval.evaluation_runs WHERE world_id = 'w-ret') = b.runs - (d.r #>> '{worlds,w-ret,tables,evaluation_runs,candidates}')::int AS runs_gone,
       (SELECT count(*) FROM wval.rule_results WHERE world_id = 'w-ret')
         = b.results - (SELECT count(*) FROM before_results x WHERE NOT EXISTS (SELECT 1 FROM wval.evaluation_runs e WHERE e.run_id = x.run_id))
         AND (SELECT count(*) FROM before_results x WHERE NOT EXISTS (SELECT 1 FROM wval.evaluation_runs e WHERE e.run_id = x.run_id)) > 0 AS results_gone_with_their_runs,
       (SELECT count(*) FROM wval.overrides WHERE world_id = 'w-ret') = b.overrides - (d.r #>> '{worlds,w-ret,tables,overrides,candidates}')::int AS overrides_gone,
       (SELECT count(*) FROM wval.ex_post_failures WHERE world_id = 'w-ret') = b.failures - (d.r #>> '{worlds,w-ret,tables,ex_post_failures,candidates}')::int AS failures_gone
FROM before b, dry d;
SELECT client_run_id, stage FROM wval.evaluation_runs WHERE world_id = 'w-ret' ORDER BY client_run_id;
SELECT p->>'partition' AS partition, p->'dropped' AS dropped FROM real, jsonb_array_elements(real.r->'partitions') p;
SELECT to_regclass('wval.evaluation_runs_p202101') AS january_runs;
-- every removed chained row left its link: the chain of what remains still verifies
SELECT table_name, count(*) FROM wval.chain_tombstones WHERE world_id = 'w-ret' GROUP BY table_name ORDER BY table_name;
SELECT wval_verify_chain('w-ret') AS chain_ok;
SELECT action, details->'tables'->'evaluation_runs'->'deleted' AS runs_deleted FROM wval.audit_log
WHERE world_id = 'w-ret' AND action = 'purge';
-- nothing left to purge before that cut; history stays append-only outside the purge
SELECT wval_purge('2021-04-01', 'w-ret', dry_run => false) #> '{worlds,w-ret,tables,evaluation_runs,candidates}' AS candidates;
DELETE FROM wval.evaluation_runs WHERE world_id = 'w-ret';
\echo :LAST_ERROR_SQLSTATE
DELETE FROM wval.chain_tombstones WHERE world_id = 'w-ret';
\echo :LAST_ERROR_SQLSTATE
