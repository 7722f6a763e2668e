-- pgTAP: the risk hub — contract SQLSTATEs, roles, dedupe without a second
-- event, counters that survive the rollback of a rejected publish, chain.
BEGIN;
SELECT plan(51);
SET client_min_messages = warning;

SELECT wval_world_upsert('tap_hub');
SELECT wval_producer_register('tap_hub', 'gw');
SELECT wval_producer_register('tap_hub', 'signed_gw', decode(repeat('5a', 32), 'hex'));
-- the same key registered for a second actor and in a second world (replay tests)
SELECT wval_producer_register('tap_hub', 'signed_gw2', decode(repeat('5a', 32), 'hex'));
SELECT wval_world_upsert('tap_hub2');
SELECT wval_producer_register('tap_hub2', 'signed_gw', decode(repeat('5a', 32), 'hex'));

-- tap_hub_snap(version, extra): a valid snapshot as of the clock
CREATE FUNCTION public.tap_hub_snap(v text, extra jsonb DEFAULT '{}') RETURNS jsonb LANGUAGE sql AS $$
    SELECT jsonb_build_object(
        'as_of', to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        'version', v,
        'weights', jsonb_build_object('a', 0.5, 'b', 0.5),
        'covariance', jsonb_build_object('a,a', 0.01, 'b,b', 0.04)) || extra;
$$;
CREATE FUNCTION public.tap_hub_old() RETURNS text LANGUAGE sql AS $$
    SELECT to_char((clock_timestamp() - interval '1 minute') AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"');
$$;

-- objects
SELECT has_table('wval', 'risk_snapshots', 'risk_snapshots exists');
SELECT has_table('wval', 'blobs', 'blobs exists');
SELECT has_table('wval', 'producers', 'producers exists');
SELECT has_view('wval', 'snapshot_stats', 'snapshot_stats exists');
SELECT function_returns('public', 'wval_snapshot_publish', ARRAY['text', 'jsonb', 'text', 'text', 'text'],
                        'wval.risk_snapshots', 'publish returns a risk_snapshots row');
SELECT is((SELECT prosecdef FROM pg_proc WHERE proname = 'wval_snapshot_publish'), true, 'publish is SECURITY DEFINER');
SELECT ok((SELECT proconfig @> ARRAY['search_path=pg_catalog, wval, pg_temp'] FROM pg_proc WHERE proname = 'wval_snapshot_publish'),
          'publish pins search_path');

-- contract SQLSTATEs
SELECT throws_ok($$SELECT wval_snapshot_publish('tap_hub', tap_hub_snap('x', '{"extra": 1}'), 'gw', 'paper')$$,
                 'WV004', NULL, 'unknown top-level field: WV004');
SELECT throws_ok($$SELECT wval_snapshot_publish('tap_hub', tap_hub_snap('x', '{"weights": {"a": "0.5", "b": 0.5}}'), 'gw', 'paper')$$,
                 'WV004', 'weight of "a" in "weights" must be a finite number', 'string weight: WV004 naming the field');
SELECT throws_ok($$SELECT wval_snapshot_publish('tap_hub', tap_hub_snap('x', '{"weights": {"a": false, "b": 1}}'), 'gw', 'paper')$$,
                 'WV004', NULL, 'boolean weight: WV004');
SELECT throws_ok($$SELECT wval_snapshot_publish('tap_hub', tap_hub_snap('x', '{"weights": {"a": "NaN", "b": 1}}'), 'gw', 'paper')$$,
                 'WV004', NULL, '"NaN" weight: WV004');
SELECT throws_ok($$SELECT wval_snapshot_publish('tap_hub', tap_hub_snap('x', '{"weights": {"a": 0.5, "b": 0.502}}'), 'gw', 'paper')$$,
                 'WV004', '"weights" must sum to 1 within 1e-3', 'sum 1.002: WV004');
SELECT lives_ok($$SELECT wval_snapshot_publish('tap_hub', tap_hub_snap('sum1001', '{"weights": {"a": 0.5, "b": 0.501}}'), 'gw', 'paper')$$,
                'sum 1.001 is inside the inclusive tolerance');
SELECT throws_ok($$SELECT wval_snapshot_publish('tap_hub', tap_hub_snap('x', jsonb_build_object('as_of', tap_hub_old())), 'gw', 'paper')$$,
                 'WV005', NULL, 'as_of older than the default ttl_sec of 10: WV005');
SELECT lives_ok($$SELECT wval_snapshot_publish('tap_hub', tap_hub_snap('ttl120', jsonb_build_object('as_of', tap_hub_old(), 'ttl_sec', 120)), 'gw', 'paper')$$,
                'the same age within ttl_sec 120 is accepted');
SELECT throws_ok($$SELECT wval_snapshot_publish('tap_hub', tap_hub_snap('x', '{"hash": "sha256:00"}'), 'gw', 'paper')$$,
                 'WV006', NULL, 'wrong hash: WV006');
SELECT throws_ok($$SELECT wval_snapshot_publish('tap_hub', tap_hub_snap('x'), 'nobody', 'paper')$$,
                 'WV009', NULL, 'unregistered actor: WV009');
SELECT throws_ok($$SELECT wval_snapshot_publish('tap_world_missing', tap_hub_snap('x'), 'gw', 'paper')$$,
                 'WV010', NULL, 'unknown world: WV010');
SELECT throws_ok($$SELECT wval_snapshot_publish('tap_hub', tap_hub_snap('x'), 'gw', 'staging')$$,
                 'WV004', 'invalid value for "stage"', 'unknown stage: WV004');
-- order: an expired snapshot with a bad hash from an unknown actor reports the expiry
SELECT throws_ok($$SELECT wval_snapshot_publish('tap_hub', tap_hub_snap('x', jsonb_build_object('as_of', tap_hub_old(), 'hash', 'sha256:00')), 'nobody', 'paper')$$,
                 'WV005', NULL, 'ttl is checked before hash and actor');
SELECT throws_ok($$SELECT wval_snapshot_publish('tap_hub', tap_hub_snap('x', '{"ttl_sec": 0, "stress": {"s": 1}}'), 'gw', 'paper')$$,
                 'WV004', '"stress" scenario "s" must be an object', 'stress is checked before ttl_sec');

-- HMAC
SELECT throws_ok($$SELECT wval_snapshot_publish('tap_hub', tap_hub_snap('s1'), 'signed_gw', 'live')$$,
                 'WV009', NULL, 'keyed producer without signature: WV009');
SELECT throws_ok($$SELECT wval_snapshot_publish('tap_hub', tap_hub_snap('s1'), 'signed_gw', 'live', repeat('f', 64))$$,
                 'WV009', NULL, 'wrong signature: WV009');
SELECT throws_ok($$SELECT wval_snapshot_publish('tap_hub', x.s, 'signed_gw', 'live',
                       encode(hmac(convert_to(wval_snapshot_canonical('tap_hub', x.s), 'UTF8'), decode(repeat('5a', 32), 'hex'), 'sha256'), 'hex'))
                   FROM (SELECT tap_hub_snap('s1') AS s) x$$,
                 'WV009', NULL, 'an HMAC of the canonical text alone (without world, actor, stage) is refused');
SELECT is((SELECT signed FROM (SELECT tap_hub_snap('s1') AS s) x,
           wval_snapshot_publish('tap_hub', x.s, 'signed_gw', 'live',
               encode(hmac(convert_to(wval_snapshot_signed_message('tap_hub', x.s, 'signed_gw', 'live'), 'UTF8'),
                           decode(repeat('5a', 32), 'hex'), 'sha256'), 'hex'))),
          true, 'pgcrypto HMAC of the signed message is accepted and recorded as signed');
-- replay: a signature made for (tap_hub, signed_gw, paper) is refused in another stage, world or for another actor
CREATE TEMP TABLE tap_replay AS
SELECT x.s, encode(hmac(convert_to(wval_snapshot_signed_message('tap_hub', x.s, 'signed_gw', 'paper'), 'UTF8'),
                        decode(repeat('5a', 32), 'hex'), 'sha256'), 'hex') AS sig
FROM (SELECT tap_hub_snap('r1') AS s) x;
SELECT throws_ok($$SELECT wval_snapshot_publish('tap_hub', s, 'signed_gw', 'live', sig) FROM tap_replay$$,
                 'WV009', NULL, 'replay of a paper signature at stage live: WV009');
SELECT throws_ok($$SELECT wval_snapshot_publish('tap_hub2', s, 'signed_gw', 'paper', sig) FROM tap_replay$$,
                 'WV009', NULL, 'replay in another world (same actor and key there): WV009');
SELECT throws_ok($$SELECT wval_snapshot_publish('tap_hub', s, 'signed_gw2', 'paper', sig) FROM tap_replay$$,
                 'WV009', NULL, 'replay as another actor with the same key: WV009');
SELECT is((SELECT signed FROM tap_replay, wval_snapshot_publish('tap_hub', s, 'signed_gw', 'paper', sig)), true,
          'the signature is accepted where it was made for');

-- dedupe and collision
CREATE TEMP TABLE tap_sent AS SELECT tap_hub_snap('d1') AS s;
SELECT is((SELECT version FROM wval_snapshot_publish('tap_hub', (SELECT s FROM tap_sent), 'gw', 'paper')), 'd1', 'first publish stores d1');
SELECT is((SELECT count(*)::int FROM wval.events WHERE world_id = 'tap_hub' AND subject = 'd1'), 1, 'one event for d1');
SELECT is((SELECT snapshot_id FROM wval_snapshot_publish('tap_hub', (SELECT s FROM tap_sent), 'gw', 'paper')),
          (SELECT snapshot_id FROM wval.risk_snapshots WHERE world_id = 'tap_hub' AND version = 'd1'),
          'identical retry returns the stored row');
SELECT is((SELECT count(*)::int FROM wval.events WHERE world_id = 'tap_hub' AND subject = 'd1'), 1, 'the retry emits no second event');
SELECT is((SELECT dedupe FROM wval_snapshot_stats('tap_hub') WHERE stage = 'paper'), 1::bigint, 'the retry is counted as a dedupe hit');
SELECT throws_ok($$SELECT wval_snapshot_publish('tap_hub', (SELECT s || '{"ttl_sec": 11}' FROM tap_sent), 'gw', 'paper')$$,
                 'WV007', NULL, 'same version, different content: WV007');
SELECT ok((SELECT bool_and(hash = 'sha256:' || encode(sha256(convert_to(payload::text, 'UTF8')), 'hex'))
           FROM wval.risk_snapshots WHERE world_id = 'tap_hub'), 'every stored hash rechecks in SQL');

-- counters: rejections survive the rollback of their (sub)transaction
SELECT is((SELECT expired FROM wval_snapshot_stats('tap_hub') WHERE stage = 'paper'), 2::bigint,
          'both expired publishes are counted although they rolled back');
SELECT is((SELECT failed FROM wval_snapshot_stats('tap_hub') WHERE stage = 'live'), 4::bigint,
          'the four refused signatures (missing, wrong, canonical text only, replayed from paper) are counted as failed for live');
SELECT is((SELECT failed FROM wval_snapshot_stats('tap_hub') WHERE stage = 'invalid'), 1::bigint,
          'the invalid stage is counted under stage invalid');
SELECT is((SELECT processed FROM wval_snapshot_stats('tap_hub') WHERE stage = 'paper'), 4::bigint,
          'processed counts stored snapshots only');

-- roles
SET ROLE wval_analyst;
SELECT throws_ok($$SELECT wval_snapshot_publish('tap_hub', tap_hub_snap('r1'), 'gw', 'paper')$$,
                 '42501', NULL, 'an analyst cannot publish');
SELECT throws_ok($$SELECT hmac_key FROM wval.producers$$, '42501', NULL, 'an analyst cannot read producer keys');
SELECT is((SELECT has_key FROM wval.current_producers WHERE world_id = 'tap_hub' AND actor = 'signed_gw'), true,
          'an analyst sees whether a producer has a key');
SELECT is(wval_snapshot_latest('tap_hub', 'live')->>'version', 's1', 'an analyst reads the latest snapshot');
SELECT ok((wval_portfolio_risk('tap_hub', 'live')->>'sigma')::float8 > 0, 'an analyst reads the portfolio baseline');
RESET ROLE;
SET ROLE wval_producer;
SELECT lives_ok($$SELECT wval_snapshot_publish('tap_hub', tap_hub_snap('r2'), 'gw', 'paper')$$, 'a producer publishes');
SELECT throws_ok($$SELECT wval_producer_register('tap_hub', 'me')$$, '42501', NULL, 'a producer cannot register producers');
SELECT throws_ok($$INSERT INTO wval.risk_snapshots (world_id) VALUES ('tap_hub')$$, '42501', NULL,
                 'a producer cannot write the table directly');
RESET ROLE;
SET ROLE wval_admin;
SELECT lives_ok($$SELECT wval_producer_register('tap_hub', 'new_gw')$$, 'an admin registers producers');
RESET ROLE;

-- history
SELECT throws_ok($$DELETE FROM wval.risk_snapshots WHERE world_id = 'tap_hub'$$, 'WV003', NULL, 'snapshots are append-only');
SELECT ok(wval_verify_chain('tap_hub'), 'the world''s hash chain verifies');

SELECT * FROM finish();
ROLLBACK;
