--
-- hub: the risk snapshot contract (order of checks, SQLSTATEs), canonical
-- form and hash, offload to blobs, dedupe and collisions, TTL, HMAC, reads,
-- freshness, counters and the portfolio baseline.
--
-- Expected numbers were computed independently (Python: hashlib, hmac,
-- statistics.NormalDist / variance / covariance), see docs/risk-hub.md.
--
SET client_min_messages = warning;

-- try(sql): runs a statement, returns 'ok' or 'SQLSTATE: message'
CREATE FUNCTION pg_temp.try(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE q;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END
$$;

-- snap(version, extra): a valid snapshot as of now, merged with extra
CREATE FUNCTION pg_temp.snap(v text, extra jsonb DEFAULT '{}') RETURNS jsonb LANGUAGE sql AS $$
    SELECT jsonb_build_object(
        'as_of', to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        'version', v,
        'weights', jsonb_build_object('a', 0.6, 'b', 0.4)) || extra;
$$;

-- every publish tried through pubq/pub is recorded, to check the counters
CREATE TEMP TABLE outcomes (world text, stage text, code text);

-- pubq(world, stage, sql): try a publish statement and record its outcome
CREATE FUNCTION pg_temp.pubq(world text, stage text, q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    r text := pg_temp.try(q);
BEGIN
    INSERT INTO outcomes VALUES (world, CASE WHEN stage IN ('backtest', 'paper', 'shadow', 'live') THEN stage ELSE 'invalid' END,
                                 split_part(r, ':', 1));
    RETURN r;
END
$$;

-- pub(snapshot, actor, stage, world): try a publish (producer gw, paper stage)
CREATE FUNCTION pg_temp.pub(s jsonb, actor text DEFAULT 'gw', stage text DEFAULT 'paper', world text DEFAULT 'hub_w')
RETURNS text LANGUAGE sql AS $$
    SELECT pg_temp.pubq(world, stage, format('SELECT wval_snapshot_publish(%L, %L::jsonb, %L, %L)', world, s, actor, stage));
$$;

SELECT world_id FROM wval_world_upsert('hub_w');
SELECT world_id, actor, status, hmac_key IS NULL AS no_key FROM wval_producer_register('hub_w', 'gw');

-- the rejection counters exist from the world's creation on
SELECT count(*) AS counter_sequences FROM pg_class
WHERE relnamespace = 'wval'::regnamespace AND relkind = 'S'
  AND relname LIKE 'snapshot_rejects_' || left(encode(sha256('hub_w'), 'hex'), 16) || '_%';

------------------------------------------------------------------------------
-- Canonical form: contract fields without hash, jsonb text; fixed input,
-- text and hash checked with Python's hashlib
------------------------------------------------------------------------------
SELECT wval_snapshot_canonical('hub_w',
    '{"as_of": "2024-05-01T12:00:00Z", "version": "v1", "weights": {"b": 0.4, "a": 0.6}}') AS canonical;
SELECT 'sha256:' || encode(sha256(convert_to(wval_snapshot_canonical('hub_w',
    '{"as_of": "2024-05-01T12:00:00Z", "version": "v1", "weights": {"b": 0.4, "a": 0.6}}'), 'UTF8')), 'hex') AS hash;
-- the hash field is not part of the canonical text
SELECT wval_snapshot_canonical('hub_w',
    '{"as_of": "2024-05-01T12:00:00Z", "version": "v1", "weights": {"b": 0.4, "a": 0.6},
      "hash": "sha256:414902d5a6688b554794b133fec7bed7869132ccfd1941985e680e8349879775"}') AS canonical_without_hash;

------------------------------------------------------------------------------
-- Arguments and structure
------------------------------------------------------------------------------
SELECT pg_temp.pub(pg_temp.snap('x'), world => 'no_such_world') AS unknown_world;
SELECT pg_temp.try($$SELECT wval_snapshot_publish(NULL, '{}', 'gw', 'paper')$$) AS null_world;
SELECT pg_temp.pub(pg_temp.snap('x'), stage => 'prod') AS bad_stage;
SELECT pg_temp.pub(pg_temp.snap('x'), actor => '') AS empty_actor;
SELECT pg_temp.pubq('hub_w', 'paper', $$SELECT wval_snapshot_publish('hub_w', NULL, 'gw', 'paper')$$) AS null_snapshot;
SELECT pg_temp.pub('[1, 2]') AS array_snapshot;
SELECT pg_temp.pub(pg_temp.snap('x', '{"weight": {"a": 1}}')) AS unknown_field;

------------------------------------------------------------------------------
-- Field rules, in the order of the spec
------------------------------------------------------------------------------
SELECT pg_temp.pub(pg_temp.snap('x') - 'as_of') AS as_of_missing;
SELECT pg_temp.pub(pg_temp.snap('x', '{"as_of": 1714564800}')) AS as_of_number;
SELECT pg_temp.pub(pg_temp.snap('x', '{"as_of": "2024-05-01 12:00:00"}')) AS as_of_no_offset;
SELECT pg_temp.pub(pg_temp.snap('x', '{"as_of": "2024-02-30T12:00:00Z"}')) AS as_of_no_such_day;
SELECT pg_temp.pub(pg_temp.snap('x', jsonb_build_object('as_of', to_char((now() + interval '1 hour') AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')))) AS as_of_future;

SELECT pg_temp.pub(pg_temp.snap('x') - 'version') AS version_missing;
SELECT pg_temp.pub(pg_temp.snap('x', '{"version": 42}')) AS version_number;
SELECT pg_temp.pub(pg_temp.snap('')) AS version_empty;

SELECT pg_temp.pub(pg_temp.snap('x') - 'weights') AS weights_missing;
SELECT pg_temp.pub(pg_temp.snap('x', '{"weights": [0.6, 0.4]}')) AS weights_array;
SELECT pg_temp.pub(pg_temp.snap('x', '{"weights": {"a": "0.6", "b": 0.4}}')) AS weight_string;
SELECT pg_temp.pub(pg_temp.snap('x', '{"weights": {"a": true}}')) AS weight_boolean;
SELECT pg_temp.pub(pg_temp.snap('x', '{"weights": {"a": "NaN", "b": 1}}')) AS weight_nan;
SELECT pg_temp.pub(pg_temp.snap('x', '{"weights": {"a": null, "b": 1}}')) AS weight_null;
SELECT pg_temp.pub(pg_temp.snap('x', '{"weights": {"a": 1e400}}')) AS weight_overflow;
SELECT pg_temp.pub(pg_temp.snap('x', '{"weights": {"a": 0.5, "b": 0.4}}')) AS weights_sum_0_9;
SELECT pg_temp.pub(pg_temp.snap('x', '{"weights": {"a": 1.0011}}')) AS weights_sum_1_0011;
SELECT pg_temp.pub(pg_temp.snap('x', '{"weights": {}}')) AS weights_empty;
SELECT pg_temp.pub(pg_temp.snap('x', '{"weights": {"a": 0.5, "b": -0.5}}')) AS weights_sum_zero;
-- the tolerance is inclusive: 0.999 and 1.001 are accepted
SELECT pg_temp.pub(pg_temp.snap('w_0999', '{"weights": {"a": 0.999}}')) AS weights_sum_0_999;
SELECT pg_temp.pub(pg_temp.snap('w_1001', '{"weights": {"a": 0.601, "b": 0.4}}')) AS weights_sum_1_001;

SELECT pg_temp.pub(pg_temp.snap('x', '{"covariance": [0.04]}')) AS covariance_array;
SELECT pg_temp.pub(pg_temp.snap('x', '{"covariance": {"ab": 0.04}}')) AS covariance_bad_key;
SELECT pg_temp.pub(pg_temp.snap('x', '{"covariance": {"a,b": "0.01"}}')) AS covariance_string;
SELECT pg_temp.pub(pg_temp.snap('x', '{"covariance": {"a,a": -0.01}}')) AS covariance_negative_variance;
SELECT pg_temp.pub(pg_temp.snap('x', '{"covariance": {"a,b": 0.01, "b:a": 0.02}}')) AS covariance_twice;

SELECT pg_temp.pub(pg_temp.snap('x', '{"covariance": {"a,a": 0.04}, "covariance_ref": "s3://b/k"}')) AS ref_and_inline;
SELECT pg_temp.pub(pg_temp.snap('x', '{"covariance_ref": "http://example.com/c.json"}')) AS ref_scheme;
SELECT pg_temp.pub(pg_temp.snap('x', jsonb_build_object('stress_ref', 'wval-blob:sha256:' || repeat('0', 64)))) AS ref_unknown_blob;

SELECT pg_temp.pub(pg_temp.snap('x', '{"realized_returns": [0.01]}')) AS returns_array;
SELECT pg_temp.pub(pg_temp.snap('x', '{"realized_returns": {"a": []}}')) AS returns_empty_series;
SELECT pg_temp.pub(pg_temp.snap('x', '{"realized_returns": {"a": [0.01, "x"]}}')) AS returns_string;
SELECT pg_temp.pub(pg_temp.snap('x', jsonb_build_object('realized_returns',
    jsonb_build_object('a', (SELECT jsonb_agg(0.001) FROM generate_series(1, 200001)))))) AS returns_series_too_long;

SELECT pg_temp.pub(pg_temp.snap('x', '{"stress": {"crash": 0.3}}')) AS stress_not_object;
SELECT pg_temp.pub(pg_temp.snap('x', '{"stress": {"crash": {"max_drawdown": "high"}}}')) AS stress_string;
SELECT pg_temp.pub(pg_temp.snap('x', '{"stress": {"crash": {"a": {"es_99": true}}}}')) AS stress_per_strategy_boolean;

SELECT pg_temp.pub(pg_temp.snap('x', '{"constraints": 1}')) AS constraints_scalar;
SELECT pg_temp.pub(pg_temp.snap('x', '{"constraints": {"candidate_weight": 1.5}}')) AS candidate_weight;

SELECT pg_temp.pub(pg_temp.snap('x', '{"ttl_sec": 0}')) AS ttl_zero;
SELECT pg_temp.pub(pg_temp.snap('x', '{"ttl_sec": 86401}')) AS ttl_too_long;
SELECT pg_temp.pub(pg_temp.snap('x', '{"ttl_sec": "10"}')) AS ttl_string;
SELECT pg_temp.pub(pg_temp.snap('x', '{"ttl_sec": 1.5}')) AS ttl_fraction;
SELECT pg_temp.pub(pg_temp.snap('x', jsonb_build_object('as_of', to_char((now() - interval '1 hour') AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')))) AS expired;

SELECT pg_temp.pub(pg_temp.snap('x', jsonb_build_object('hash', 'sha256:' || repeat('0', 64)))) AS hash_mismatch;
SELECT pg_temp.pub(pg_temp.snap('x', '{"provenance": {"actor": "someone_else"}}')) AS provenance_actor;
SELECT pg_temp.pub(pg_temp.snap('x', '{"provenance": {"stage": "live"}}')) AS provenance_stage;
SELECT pg_temp.pub(pg_temp.snap('x'), actor => 'stranger') AS unregistered_actor;

-- two problems: the earlier rule is reported
SELECT pg_temp.pub(pg_temp.snap('x', '{"weights": {"a": "1"}}') - 'version') AS version_before_weights;
SELECT pg_temp.pub(pg_temp.snap('x', '{"ttl_sec": 0, "covariance": {"a,a": -1}}')) AS covariance_before_ttl;
SELECT pg_temp.pub(pg_temp.snap('x', jsonb_build_object(
    'as_of', to_char((now() - interval '1 hour') AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
    'hash', 'sha256:' || repeat('0', 64)))) AS expiry_before_hash;
SELECT pg_temp.pub(pg_temp.snap('x', jsonb_build_object('hash', 'sha256:' || repeat('0', 64))), actor => 'stranger')
    AS hash_before_actor;

-- nothing of the rejected publishes was stored or announced
SELECT count(*) AS stored FROM wval.risk_snapshots WHERE world_id = 'hub_w';
SELECT count(*) AS events FROM wval.events WHERE world_id = 'hub_w';

------------------------------------------------------------------------------
-- A stored snapshot: canonical payload, hash recheck in SQL, event
------------------------------------------------------------------------------
CREATE TEMP TABLE sent AS
SELECT pg_temp.snap('v1', '{"covariance": {"a,a": 0.04, "b,b": 0.09, "a:b": 0.006},
                             "constraints": {"candidate_weight": 0.1},
                             "provenance": {"actor": "gw", "stage": "paper", "source": "rebalance"},
                             "ttl_sec": 60}') AS s;
SELECT version, actor, stage, ttl_sec, signed, blob_refs, payload = (SELECT s FROM sent) AS payload_is_snapshot
FROM wval_snapshot_publish('hub_w', (SELECT s FROM sent), 'gw', 'paper');
SELECT version, hash = 'sha256:' || encode(sha256(convert_to(payload::text, 'UTF8')), 'hex') AS hash_rechecks,
       as_of = (payload->>'as_of')::timestamptz AS as_of_matches,
       received_at >= as_of AS arrived_after_as_of
FROM wval.risk_snapshots WHERE world_id = 'hub_w' ORDER BY snapshot_id;
SELECT e.type, e.subject,
       e.idempotency_key = 'risk_snapshot_updated:hub_w:' || s.version || ':' || s.hash || ':gw:paper' AS key_per_bus_md,
       (e.payload->'data') - 'as_of'::text - 'hash'::text AS data,
       e.payload->'data'->>'hash' = s.hash AS data_hash,
       e.expires_at - e.created_at = make_interval(secs => s.ttl_sec) AS ttl_is_snapshot_ttl
FROM wval.events e JOIN wval.risk_snapshots s ON s.world_id = e.world_id AND s.version = e.subject
WHERE e.world_id = 'hub_w' ORDER BY e.event_id;

-- the published hash is accepted when given
SELECT pg_temp.pub(s || jsonb_build_object('version', 'v1h', 'hash',
                   'sha256:' || encode(sha256(convert_to(wval_snapshot_canonical('hub_w', s || '{"version": "v1h"}'), 'UTF8')), 'hex')))
    AS hash_given FROM sent;

------------------------------------------------------------------------------
-- Dedupe and collision
------------------------------------------------------------------------------
SELECT (SELECT snapshot_id FROM wval_snapshot_publish('hub_w', s, 'gw', 'paper'))
     = (SELECT snapshot_id FROM wval.risk_snapshots WHERE world_id = 'hub_w' AND version = 'v1') AS retry_returns_stored
FROM sent;
SELECT count(*) AS v1_events FROM wval.events WHERE world_id = 'hub_w' AND subject = 'v1';
SELECT pg_temp.pub(s || '{"ttl_sec": 61}') AS collision FROM sent;
SELECT count(*) AS v1_rows FROM wval.risk_snapshots WHERE world_id = 'hub_w' AND version = 'v1';

------------------------------------------------------------------------------
-- Offload: a 150-entry covariance goes to wval.blobs and still verifies
------------------------------------------------------------------------------
CREATE TEMP TABLE cov150 AS
SELECT jsonb_object_agg(k, v) AS c FROM (
    SELECT 's' || i || ',s' || j AS k, CASE WHEN i = j THEN 0.04 ELSE 0.001 * (i + j) END AS v
    FROM generate_series(1, 20) i, generate_series(1, 20) j
    WHERE i <= j ORDER BY i, j LIMIT 150) x;
SELECT count(*) AS entries FROM cov150, jsonb_object_keys(c);
CREATE TEMP TABLE big AS SELECT pg_temp.snap('big1', jsonb_build_object(
    'weights', '{"s1": 0.5, "s2": 0.5}'::jsonb, 'covariance', (SELECT c FROM cov150))) AS s;
SELECT version, payload ? 'covariance' AS inline, payload->>'covariance_ref' = blob_refs[1] AS ref_listed,
       blob_refs[1] LIKE 'wval-blob:sha256:%' AS blob_ref,
       hash = 'sha256:' || encode(sha256(convert_to(payload::text, 'UTF8')), 'hex') AS hash_rechecks,
       payload::text = wval_snapshot_canonical('hub_w', (SELECT s FROM big)) AS canonical_is_offloaded_form
FROM wval_snapshot_publish('hub_w', (SELECT s FROM big), 'gw', 'paper');
SELECT kind, size_bytes = length(content::text) AS size_ok,
       blob_hash = 'sha256:' || encode(sha256(convert_to(content::text, 'UTF8')), 'hex') AS blob_hash_rechecks,
       'wval-blob:' || blob_hash = (SELECT payload->>'covariance_ref' FROM wval.risk_snapshots WHERE version = 'big1') AS referenced,
       content = (SELECT c FROM cov150) AS content_is_covariance
FROM wval.blobs WHERE world_id = 'hub_w';
-- expand resolves the reference inline (the inline snapshot comes back);
-- the stored form keeps the reference
SELECT (wval_snapshot('hub_w', 'big1', true)->'snapshot') = (SELECT s FROM big) AS expands_back,
       wval_snapshot('hub_w', 'big1', true)->'snapshot' ? 'covariance_ref' AS ref_left,
       wval_snapshot('hub_w', 'big1')->'snapshot' ? 'covariance_ref' AS stored_form_has_ref;
-- an identical retry of the large snapshot is a dedupe hit too
SELECT version FROM wval_snapshot_publish('hub_w', (SELECT s FROM big), 'gw', 'paper');
SELECT count(*) AS big1_events FROM wval.events WHERE world_id = 'hub_w' AND subject = 'big1';
-- the portfolio baseline reads the covariance from its blob:
-- w = (0.5, 0.5), C_11 = C_22 = 0.04, C_12 = 0.003: sigma^2 = 0.0215, sigma = 0.146628782986
SELECT round((r->>'sigma')::numeric, 12) AS sigma, r->>'covariance_source' AS source, r->>'version' AS version
FROM wval_portfolio_risk('hub_w', 'paper') r;
-- an identical covariance in a later snapshot reuses the blob
SELECT blob_refs = (SELECT blob_refs FROM wval.risk_snapshots WHERE version = 'big1') AS same_blob
FROM wval_snapshot_publish('hub_w', pg_temp.snap('big2', jsonb_build_object(
    'weights', '{"s1": 0.4, "s2": 0.6}'::jsonb, 'covariance', (SELECT c FROM cov150))), 'gw', 'paper');
SELECT count(*) AS blobs FROM wval.blobs WHERE world_id = 'hub_w';
-- a producer may also send the reference it was given
SELECT payload->'covariance_ref' = (SELECT payload->'covariance_ref' FROM wval.risk_snapshots WHERE version = 'big1') AS by_ref
FROM wval_snapshot_publish('hub_w', pg_temp.snap('big3', jsonb_build_object(
    'weights', '{"s1": 1}'::jsonb,
    'covariance_ref', (SELECT payload->'covariance_ref' FROM wval.risk_snapshots WHERE version = 'big1'))), 'gw', 'paper');
SELECT pg_temp.pub(pg_temp.snap('x', jsonb_build_object('stress_ref',
    (SELECT payload->'covariance_ref' FROM wval.risk_snapshots WHERE version = 'big1')))) AS ref_wrong_kind;
-- 101 return points and 101 stress scenarios are offloaded, 100 are not
SELECT version, array_length(blob_refs, 1) AS refs, payload ? 'realized_returns_ref' AS returns_ref,
       payload ? 'stress_ref' AS stress_ref
FROM wval_snapshot_publish('hub_w', pg_temp.snap('rr101', jsonb_build_object(
    'realized_returns', jsonb_build_object('a', (SELECT jsonb_agg(0.001) FROM generate_series(1, 51)),
                                           'b', (SELECT jsonb_agg(-0.001) FROM generate_series(1, 50))),
    'stress', (SELECT jsonb_object_agg('sc' || i, jsonb_build_object('max_drawdown', 0.1)) FROM generate_series(1, 101) i))),
    'gw', 'paper');
SELECT version, blob_refs, payload ? 'realized_returns' AS returns_inline, payload ? 'stress' AS stress_inline
FROM wval_snapshot_publish('hub_w', pg_temp.snap('rr100', jsonb_build_object(
    'realized_returns', jsonb_build_object('a', (SELECT jsonb_agg(0.001) FROM generate_series(1, 100))),
    'stress', (SELECT jsonb_object_agg('sc' || i, jsonb_build_object('max_drawdown', 0.1)) FROM generate_series(1, 100) i))),
    'gw', 'paper');
-- the threshold is a setting, and a world setting overrides it
SET wval.offload_threshold = 200;
SELECT version, blob_refs, payload ? 'covariance' AS inline
FROM wval_snapshot_publish('hub_w', pg_temp.snap('big_inline', jsonb_build_object(
    'weights', '{"s1": 1}'::jsonb, 'covariance', (SELECT c FROM cov150))), 'gw', 'paper');
RESET wval.offload_threshold;
SELECT world_id FROM wval_world_upsert('hub_w', settings => '{"offload_threshold": 2}');
SELECT version, payload ? 'covariance_ref' AS offloaded
FROM wval_snapshot_publish('hub_w', pg_temp.snap('small_off', '{"covariance": {"a,a": 0.04, "b,b": 0.09, "a,b": 0.006}}'), 'gw', 'paper');
SELECT world_id FROM wval_world_upsert('hub_w', settings => '{}');
-- external references are stored as given
SELECT payload->>'covariance_ref' AS external, blob_refs
FROM wval_snapshot_publish('hub_w', pg_temp.snap('ext1', '{"covariance_ref": "s3://risk/w/cov-1.json"}'), 'gw', 'paper');

------------------------------------------------------------------------------
-- HMAC signatures (pgcrypto's hmac computes the expected value here)
------------------------------------------------------------------------------
SELECT actor, status FROM wval_producer_register('hub_w', 'signer', decode(repeat('ab', 20), 'hex'));
SELECT actor, status, has_key FROM wval.current_producers WHERE world_id = 'hub_w' ORDER BY actor;
-- fixed text, value checked with Python's hmac module
SELECT encode(hmac(convert_to('{"as_of": "2024-05-01T12:00:00Z", "version": "v1", "weights": {"a": 0.6, "b": 0.4}}', 'UTF8'),
                   decode(repeat('ab', 20), 'hex'), 'sha256'), 'hex') AS hmac_of_fixed_text;
SELECT pg_temp.pub(pg_temp.snap('h1'), actor => 'signer', stage => 'live') AS unsigned;
CREATE TEMP TABLE hs AS SELECT pg_temp.snap('h1') AS s;
-- the signed message: a fixed first line, world, actor, stage, the canonical text
SELECT wval_snapshot_signed_message('hub_w', s, 'signer', 'live')
       = E'wval-snapshot-signature-v1\nhub_w\nsigner\nlive\n' || wval_snapshot_canonical('hub_w', s) AS message_layout
FROM hs;
SELECT wval_snapshot_signed_message('hub_w',
    '{"as_of": "2024-05-01T12:00:00Z", "version": "v1", "weights": {"b": 0.4, "a": 0.6}}', 'signer', 'live') AS signed_message;
-- the canonical text alone (what producers signed before) no longer verifies
SELECT pg_temp.pubq('hub_w', 'live', format('SELECT wval_snapshot_publish(%L, %L::jsonb, %L, %L, %L)', 'hub_w', s, 'signer', 'live',
    encode(hmac(convert_to(wval_snapshot_canonical('hub_w', s), 'UTF8'), decode(repeat('ab', 20), 'hex'), 'sha256'), 'hex'))) AS canonical_only
FROM hs;
SELECT version, signed
FROM hs, wval_snapshot_publish('hub_w', s, 'signer', 'live',
    upper(encode(hmac(convert_to(wval_snapshot_signed_message('hub_w', s, 'signer', 'live'), 'UTF8'), decode(repeat('ab', 20), 'hex'), 'sha256'), 'hex')));
SELECT pg_temp.pubq('hub_w', 'live', format('SELECT wval_snapshot_publish(%L, %L::jsonb, %L, %L, %L)', 'hub_w', pg_temp.snap('h2'), 'signer', 'live',
    encode(hmac(convert_to(wval_snapshot_signed_message('hub_w', s, 'signer', 'live'), 'UTF8'), decode(repeat('ab', 20), 'hex'), 'sha256'), 'hex'))) AS signature_of_other_text
FROM hs;
SELECT pg_temp.pubq('hub_w', 'live', format('SELECT wval_snapshot_publish(%L, %L::jsonb, %L, %L, %L)', 'hub_w', pg_temp.snap('h3'), 'signer', 'live', 'abc')) AS short_signature;
-- revoked producers are refused
SELECT status FROM wval_producer_revoke('hub_w', 'signer', 'key leaked');
SELECT pg_temp.pub(pg_temp.snap('h4'), actor => 'signer', stage => 'live') AS revoked;
SELECT pg_temp.try($$SELECT wval_producer_revoke('hub_w', 'signer')$$) AS revoke_twice;
SELECT pg_temp.try($$SELECT wval_producer_register('hub_w', 'k', '\x0102')$$) AS short_key;

------------------------------------------------------------------------------
-- Reads and freshness
------------------------------------------------------------------------------
SELECT wval_snapshot_latest('hub_w', 'live')->>'version' AS latest_live,
       wval_snapshot_latest('hub_w', 'live')->'stale' AS stale,
       wval_snapshot_latest('hub_w', 'live')->'signed' AS signed;
SELECT wval_snapshot_latest('hub_w', 'paper', 'gw')->>'version' AS latest_paper;
-- a snapshot 20 minutes old (ttl_sec 86400) is stale for reads of the latest
SELECT version FROM wval_snapshot_publish('hub_w', pg_temp.snap('old1', jsonb_build_object(
    'as_of', to_char((now() - interval '20 minutes') AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
    'ttl_sec', 86400, 'covariance', '{"a,a": 0.04, "b,b": 0.09}'::jsonb)), 'gw', 'backtest');
SELECT wval_snapshot_latest('hub_w', 'backtest') IS NULL AS hidden_when_stale;
SELECT wval_snapshot_latest('hub_w', 'backtest', include_stale => true)->>'version' AS asked_for,
       wval_snapshot_latest('hub_w', 'backtest', include_stale => true)->'stale' AS stale;
SET wval.snapshot_max_age = '1h';
SELECT wval_snapshot_latest('hub_w', 'backtest')->'stale' AS stale_with_1h;
RESET wval.snapshot_max_age;
SELECT wval_snapshot('hub_w', 'old1')->'stale' AS by_version_flagged;
SELECT pg_temp.try($$SELECT wval_snapshot('hub_w', 'nope')$$) AS unknown_version;
SELECT pg_temp.try($$SELECT wval_snapshot_latest('nope')$$) AS unknown_world;
-- as of a time: what the hub held then
SELECT wval_snapshot_as_of('hub_w', now() - interval '1 day') IS NULL AS nothing_yesterday,
       wval_snapshot_as_of('hub_w', clock_timestamp(), 'backtest')->>'version' AS backtest_now,
       wval_snapshot_as_of('hub_w', clock_timestamp(), 'backtest')->'stale' AS stale_now;
SELECT world_id, stage, version, fresh FROM wval.snapshot_freshness WHERE world_id = 'hub_w' ORDER BY stage;

------------------------------------------------------------------------------
-- Portfolio baseline (two assets; Python: statistics.NormalDist)
--   w = (0.6, 0.4), C_aa = 0.04, C_bb = 0.09, C_ab = 0.006:
--     sigma^2 = 0.03168, sigma = 0.17798876369, VaR = 0.414063782014, ES = 0.474378184049
--   C_ab missing, filled 0.5 * sqrt(0.04 * 0.09) = 0.03:
--     sigma^2 = 0.0432, sigma = 0.207846096908, VaR = 0.48352232567, ES = 0.553954373123
------------------------------------------------------------------------------
SELECT world_id FROM wval_world_upsert('hub_p');
SELECT actor FROM wval_producer_register('hub_p', 'risk');
SELECT pg_temp.try($$SELECT wval_portfolio_risk('hub_p')$$) AS no_snapshot;
SELECT version FROM wval_snapshot_publish('hub_p', pg_temp.snap('p1', '{"covariance": {"a,a": 0.04, "b,b": 0.09, "a,b": 0.006}}'), 'risk', 'live');
SELECT round((r->>'variance')::numeric, 12) AS variance, round((r->>'sigma')::numeric, 11) AS sigma,
       round((r->>'var_99')::numeric, 12) AS var_99, round((r->>'es_99')::numeric, 12) AS es_99,
       r->'weights' AS weights, r->'filled_pairs' AS filled, r->>'covariance_source' AS source, r->'z_99' AS z
FROM wval_portfolio_risk('hub_p') r;
SELECT version FROM wval_snapshot_publish('hub_p', pg_temp.snap('p2', '{"covariance": {"a,a": 0.04, "b,b": 0.09}}'), 'risk', 'live');
SELECT round((r->>'variance')::numeric, 12) AS variance, round((r->>'sigma')::numeric, 12) AS sigma,
       round((r->>'var_99')::numeric, 11) AS var_99, round((r->>'es_99')::numeric, 12) AS es_99,
       r->'filled_pairs' AS filled, r->'missing_correlation' AS rho
FROM wval_portfolio_risk('hub_p') r;
-- weights are normalised: 0.6006 / 0.4004 (sum 1.001) is the same portfolio
SELECT version FROM wval_snapshot_publish('hub_p', pg_temp.snap('p3', '{"weights": {"a": 0.6006, "b": 0.4004},
    "covariance": {"a,a": 0.04, "b,b": 0.09}}'), 'risk', 'live');
SELECT round((r->>'sigma')::numeric, 12) AS sigma, r->'weights_sum' AS raw_sum,
       round((r->'weights'->>'a')::numeric, 12) AS w_a
FROM wval_portfolio_risk('hub_p') r;
-- the fill correlation is a setting
SET wval.missing_correlation = 0;
SELECT round((r->>'variance')::numeric, 12) AS variance_rho_0 FROM wval_portfolio_risk('hub_p') r;
RESET wval.missing_correlation;
-- three assets, one pair missing: sigma^2 = 0.0379, sigma = 0.194679223339
SELECT version FROM wval_snapshot_publish('hub_p', pg_temp.snap('p4', '{"weights": {"a": 0.5, "b": 0.3, "c": 0.2},
    "covariance": {"a,a": 0.04, "b,b": 0.09, "c,c": 0.16, "a,b": 0.01, "b,c": 0.02}}'), 'risk', 'live');
SELECT round((r->>'sigma')::numeric, 12) AS sigma, round((r->>'var_99')::numeric, 12) AS var_99,
       round((r->>'es_99')::numeric, 11) AS es_99, r->'filled_pairs' AS filled
FROM wval_portfolio_risk('hub_p') r;
-- no covariance: estimated from realized returns (sample covariance, series
-- aligned at their ends): sigma = 0.013307266186, VaR = 0.0309573304, ES = 0.035466715072
SELECT version FROM wval_snapshot_publish('hub_p', pg_temp.snap('p5', '{"weights": {"a": 0.5, "b": 0.5},
    "realized_returns": {"a": [0.01, 0.02, -0.01, 0.03], "b": [0.0, 0.01, 0.02, -0.01, 0.005]}}'), 'risk', 'live');
SELECT round((r->>'sigma')::numeric, 12) AS sigma, round((r->>'var_99')::numeric, 12) AS var_99,
       round((r->>'es_99')::numeric, 12) AS es_99, r->>'covariance_source' AS source
FROM wval_portfolio_risk('hub_p') r;
-- neither covariance nor returns; a missing variance; an external covariance
SELECT version FROM wval_snapshot_publish('hub_p', pg_temp.snap('p6'), 'risk', 'shadow');
SELECT pg_temp.try($$SELECT wval_portfolio_risk('hub_p', 'shadow')$$) AS no_covariance;
SELECT version FROM wval_snapshot_publish('hub_p', pg_temp.snap('p7', '{"covariance": {"a,a": 0.04}}'), 'risk', 'shadow');
SELECT pg_temp.try($$SELECT wval_portfolio_risk('hub_p', 'shadow')$$) AS no_variance_of_b;
SELECT version FROM wval_snapshot_publish('hub_p', pg_temp.snap('p8', '{"covariance_ref": "file:///risk/cov.json"}'), 'risk', 'shadow');
SELECT pg_temp.try($$SELECT wval_portfolio_risk('hub_p', 'shadow')$$) AS external_covariance;
-- only a stale snapshot: WV005
SELECT version FROM wval_snapshot_publish('hub_p', pg_temp.snap('p9', jsonb_build_object(
    'as_of', to_char((now() - interval '1 hour') AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'), 'ttl_sec', 86400,
    'covariance', '{"a,a": 0.04, "b,b": 0.09}'::jsonb)), 'risk', 'backtest');
SELECT pg_temp.try($$SELECT wval_portfolio_risk('hub_p', 'backtest')$$) AS stale;

------------------------------------------------------------------------------
-- Counters: rejections are counted although their transactions rolled back
------------------------------------------------------------------------------
-- processed / dedupe counted by hand from the statements above: paper
-- stored w_0999 w_1001 v1 v1h big1 big2 big3 rr101 rr100 big_inline
-- small_off ext1 (12) and answered the retries of v1 and big1 (2); live
-- stored h1, backtest old1.  expired / failed must equal the rejected calls
-- recorded in outcomes (WV005 = expired, any other error = failed).
SELECT s.stage, s.processed, s.dedupe, s.expired, s.failed,
       s.expired = coalesce(o.expired, 0) AS expired_matches_calls,
       s.failed = coalesce(o.failed, 0) AS failed_matches_calls
FROM wval_snapshot_stats('hub_w') s
LEFT JOIN (SELECT stage, count(*) FILTER (WHERE code = 'WV005') AS expired,
                  count(*) FILTER (WHERE code NOT IN ('ok', 'WV005')) AS failed
           FROM outcomes WHERE world = 'hub_w' GROUP BY stage) o ON o.stage = s.stage
ORDER BY s.stage;
SELECT world_id IS NULL AS unattributed, failed >= 1 AS counted
FROM wval_snapshot_stats() WHERE world_id IS NULL;

------------------------------------------------------------------------------
-- History: append-only and chained
------------------------------------------------------------------------------
SELECT pg_temp.try($$UPDATE wval.risk_snapshots SET ttl_sec = 1$$) AS update_snapshot;
SELECT pg_temp.try($$DELETE FROM wval.blobs$$) AS delete_blob;
SELECT pg_temp.try($$UPDATE wval.producers SET status = 'active'$$) AS update_producer;
SELECT wval_verify_chain('hub_w') AS chain_w, wval_verify_chain('hub_p') AS chain_p;
