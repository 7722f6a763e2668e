-- pgTAP: bounded storage (issue 15 item 4): the storage prune of the
-- maintenance job ages out risk snapshots (never the latest per stage, never
-- one a stored run references), unreferenced blobs and live returns (never
-- within the longest live window), compacts the tombstones it leaves, and the
-- chain still verifies.  The prune runs "as of" a later time, so nothing waits.
BEGIN;
SET client_min_messages = warning;
SELECT plan(31);

SELECT wval_world_upsert('tap-sto', actor => 'dba');
SELECT wval_world_upsert('tap-sto-held', actor => 'dba');
SELECT wval_policy_publish(w, jsonb_set(p, '{live_monitoring}', coalesce(p -> 'live_monitoring', '{}') || '{"windows_days": [30, 180]}'), 'alice'),
       wval_policy_activate(w, 1, 'bob', 'storage test')
FROM (SELECT policy AS p FROM wval.sample_policies WHERE name = 'sample') s, unnest(ARRAY['tap-sto', 'tap-sto-held']) w;
SELECT wval_producer_register(w, 'gw') FROM unnest(ARRAY['tap-sto', 'tap-sto-held']) w;

-- every covariance goes to wval.blobs, each snapshot with one of its own
SET LOCAL wval.offload_threshold = 0;
CREATE FUNCTION pg_temp.snap(v text, k float8) RETURNS jsonb LANGUAGE sql AS $$
    SELECT jsonb_build_object('as_of', to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
                              'version', v, 'weights', jsonb_build_object('a', 0.5, 'b', 0.5),
                              'covariance', jsonb_build_object('a,a', k, 'b,b', 0.04));
$$;
SELECT count(*) FROM (
    SELECT wval_snapshot_publish('tap-sto', pg_temp.snap('p' || i, 0.01 * i), 'gw', 'paper') FROM generate_series(1, 5) i
    UNION ALL
    SELECT wval_snapshot_publish('tap-sto', pg_temp.snap('l' || i, 0.1 + 0.01 * i), 'gw', 'live') FROM generate_series(1, 2) i
    UNION ALL
    SELECT wval_snapshot_publish('tap-sto-held', pg_temp.snap('h' || i, 0.01 * i), 'gw', 'paper') FROM generate_series(1, 3) i) x;
SELECT is((SELECT count(*)::int FROM wval.blobs WHERE world_id = 'tap-sto'), 7, 'seven snapshots, seven blobs');

-- a stored run references snapshot p2 (as portfolio runs do)
SELECT wval_import_runs(jsonb_build_array(jsonb_build_object(
    'world_id', 'tap-sto', 'strategy_id', 's1', 'created_at', now() - interval '1 hour', 'status', 'pass', 'kind', 'portfolio',
    'metrics', '{}'::jsonb, 'data_snapshot', jsonb_build_object('risk_snapshot', jsonb_build_object('world_id', 'tap-sto', 'version', 'p2')))));

-- 250 days of live returns
SELECT wval_record_live_returns('tap-sto', 's1', ARRAY(SELECT current_date - i FROM generate_series(1, 250) i),
                                ARRAY(SELECT 0.001::float8 FROM generate_series(1, 250)));

-- settings
SELECT lives_ok($$SELECT wval_retention_set('risk_snapshots', '0 seconds', 'tap-sto-held', actor => 'dba')$$,
                'risk_snapshots may be kept less than 90 days');
SELECT throws_ok($$SELECT wval_retention_set('live_returns', '10 days', 'tap-sto', actor => 'dba')$$, 'WV011', NULL,
                 'live_returns are history: at least 90 days (WV011)');
SELECT throws_ok($$SELECT wval_retention_set('events', '1 day', 'tap-sto', actor => 'dba')$$, '22023', NULL,
                 'events are kept for every world, not per world (22023)');
SELECT throws_ok($$SELECT wval_retention_set('risk_snapshots', '-1 day', actor => 'dba')$$, '22023', NULL,
                 'a negative keep is 22023');
SELECT throws_ok($$SELECT wval_retention_set('blobs', '1 day', actor => 'dba')$$, '22023', NULL, 'unknown table: 22023');
SELECT is(wval._storage_keep('risk_snapshots', 'tap-sto'), interval '1 day', 'risk snapshots: 1 day by default');
SELECT is(wval._storage_keep('events', NULL), interval '7 days', 'events: 7 days by default');
SELECT is(wval._storage_keep('live_returns', 'tap-sto'), interval '90 days', 'live returns: 90 days by default');
SELECT throws_ok($$SELECT wval._storage_prune(now() - interval '1 second')$$, '22023', NULL, 'a prune as of the past: 22023');

-- as of now nothing is old enough
SELECT is((wval._storage_prune(now()) #>> '{tables,risk_snapshots,deleted}')::int, 0, 'as of now: no snapshot goes');
SELECT is((SELECT count(*)::int FROM wval.risk_snapshots WHERE world_id = 'tap-sto'), 7, 'all seven kept');

-- two days later
SELECT wval_world_upsert('tap-sto-held', legal_hold => true, actor => 'dba');
CREATE TEMP TABLE rep AS SELECT wval._storage_prune(now() + interval '2 days') AS r;
SELECT is((SELECT (r #>> '{worlds,tap-sto,risk_snapshots,deleted}')::int FROM rep), 4,
          'two days later: four snapshots go (not the latest paper and live ones, not p2)');
SELECT is(ARRAY(SELECT version FROM wval.risk_snapshots WHERE world_id = 'tap-sto' ORDER BY version), '{l2,p2,p5}',
          'kept: the latest of each stage and the referenced one');
SELECT is((SELECT (r #>> '{worlds,tap-sto,blobs,deleted}')::int FROM rep), 4, 'their four blobs go');
SELECT is((SELECT count(*)::int FROM wval.blobs b WHERE b.world_id = 'tap-sto'
             AND EXISTS (SELECT 1 FROM wval.risk_snapshots s WHERE s.world_id = b.world_id AND 'wval-blob:' || b.blob_hash = ANY (s.blob_refs))),
          3, 'the blobs of the kept snapshots stay');
SELECT is((SELECT count(*)::int FROM wval.blobs WHERE world_id = 'tap-sto'), 3, 'no other blob stays');
SELECT is((SELECT (r #>> '{worlds,tap-sto,live_returns,longest_window_days}')::int FROM rep), 180, 'the longest live window is 180 days');
SELECT is((SELECT min(day) FROM wval.live_returns WHERE world_id = 'tap-sto'),
          ((now() + interval '2 days') AT TIME ZONE 'UTC')::date - 181,
          'live returns: kept from the longest window (180 days, more than the 90-day retention) on');
SELECT is((SELECT (r #>> '{tables,live_returns,deleted}')::int FROM rep), 2,
          'the report counts the live returns removed (two more days than the prune as of now)');
SELECT is((SELECT r -> 'legal_hold_skipped' FROM rep), '["tap-sto-held"]', 'a world under legal hold is skipped');
SELECT is((SELECT count(*)::int FROM wval.risk_snapshots WHERE world_id = 'tap-sto-held'), 3, '... and keeps its snapshots');
SELECT ok((SELECT r -> 'tables' ?& ARRAY['events', 'deliveries', 'risk_snapshots', 'blobs', 'live_returns', 'chain_tombstones'] FROM rep),
          'the report lists each table');

-- the chain: every removed link is a tombstone, consecutive ones a single range
SELECT ok(wval_verify_chain('tap-sto'), 'the chain of what remains verifies');
SELECT cmp_ok((SELECT count(*)::int FROM wval.chain_tombstones WHERE world_id = 'tap-sto'), '<', 4 + 69,
              'tombstones compacted into ranges');
SELECT is((SELECT sum(coalesce(last_seq, chain_seq) - chain_seq + 1)::int FROM wval.chain_tombstones WHERE world_id = 'tap-sto'),
          4 + 250 - (SELECT count(*)::int FROM wval.live_returns WHERE world_id = 'tap-sto'), 'the ranges cover exactly the removed links');
SELECT is((SELECT count(*)::int FROM wval.audit_log WHERE world_id = 'tap-sto' AND action = 'storage_pruned'), 2, 'audited per world, once per prune that removed something');

-- the ranges are links of the chain: without them it breaks
SELECT wval._purge_guard(true);
DELETE FROM wval.chain_tombstones WHERE world_id = 'tap-sto' AND last_seq IS NOT NULL;
SELECT wval._purge_guard(false);
SELECT is((SELECT problem FROM wval_chain_problems('tap-sto')), 'missing or duplicate rows before this one',
          'without its range tombstones the chain breaks');

-- the job runs the prune
SELECT ok(wval._maintenance(0) ? 'storage', 'wval._maintenance runs the storage prune');
SELECT is(has_function_privilege('wval_admin', 'public.wval_storage_prune()', 'EXECUTE'), true, 'admins may run the prune');
SELECT is(has_function_privilege('wval_producer', 'wval._storage_prune(timestamptz)', 'EXECUTE'), false, 'producers may not');

SELECT * FROM finish();
ROLLBACK;
