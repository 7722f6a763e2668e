-- test/bus.sql: pgTAP tests of the event bus (src/bus.sql, docs/bus.md).
-- Runs in one transaction that is rolled back; what needs several sessions
-- (NOTIFY after commit, late commits, concurrent consumers) is in
-- test/sessions/bus_*.sh.
\set ON_ERROR_STOP on
\set QUIET on
SET client_min_messages = warning;
BEGIN;
SELECT plan(165);

------------------------------------------------------------------------------
-- objects
------------------------------------------------------------------------------
SELECT has_table('wval', 'events', 'outbox table exists');
SELECT has_table('wval', 'delivery_store', 'deliveries table exists');
SELECT has_view('wval', 'deliveries', 'deliveries view exists');
SELECT has_table('wval', 'consumer_groups', 'consumer groups table exists');
SELECT has_table('wval', 'internal_handlers', 'internal handler registry exists');
SELECT has_view('wval', 'dead_letters', 'dead letters view exists');
SELECT has_view('wval', 'bus_health', 'health view exists');
SELECT columns_are('wval', 'dead_letters',
    ARRAY['group_name', 'event_id', 'attempts', 'errors', 'dead_at', 'type', 'world_id', 'last_error', 'dead_count'],
    'dead_letters has the spec columns (group_name, event_id, attempts, errors, dead_at) and more');
SELECT ok(obj_description('wval.bus_health'::regclass) IS NOT NULL
          AND obj_description('public.wval_consume(text, integer)'::regprocedure) IS NOT NULL
          AND obj_description('public.wval_work(integer, integer)'::regprocedure) IS NOT NULL,
          'bus objects are commented');

------------------------------------------------------------------------------
-- argument errors
------------------------------------------------------------------------------
SELECT throws_ok($$SELECT * FROM wval_consume('no-such-group')$$, 'WV010',
                 'consumer group "no-such-group" does not exist', 'consume: unknown group is WV010');
SELECT throws_ok($$SELECT wval_ack('no-such-group', 1)$$, 'WV010', NULL, 'ack: unknown group is WV010');
SELECT throws_ok($$SELECT wval_nack('no-such-group', 1, 'x')$$, 'WV010', NULL, 'nack: unknown group is WV010');
SELECT throws_ok($$SELECT wval_redrive('no-such-group', 1)$$, 'WV010', NULL, 'redrive: unknown group is WV010');
SELECT throws_ok($$SELECT wval_subscribe('g', '{}')$$, '22023', 'invalid value for "types"', 'subscribe: empty types is 22023');
SELECT throws_ok($$SELECT wval_subscribe('g', ARRAY['a', ''])$$, '22023', 'invalid value for "types"', 'subscribe: blank type is 22023');
SELECT throws_ok($$SELECT wval_subscribe('', ARRAY['a'])$$, '22023', '"group_name" must not be empty', 'subscribe: empty group is 22023');
SELECT throws_ok($$SELECT wval_subscribe('g', ARRAY['a'], 0)$$, '22023', 'invalid value for "max_attempts"', 'subscribe: max_attempts 0 is 22023');
SELECT throws_ok($$SELECT wval_subscribe('g', ARRAY['a'], 3, 'soon')$$, '22023', 'invalid duration for "backoff"', 'subscribe: bad backoff is 22023');
SELECT throws_ok($$SELECT wval_subscribe('g', ARRAY['a'], 3, '1s', '0s')$$, '22023', 'invalid value for "visibility"', 'subscribe: zero visibility is 22023');
SELECT throws_ok($$SELECT wval_subscribe('g', ARRAY['a'], 3, '1s', '178000000 years')$$, '22023', 'invalid value for "visibility"',
                 'subscribe: a visibility beyond 1 day is 22023 (its deadline left the timestamp range in wval_consume)');
SELECT throws_ok($$SELECT wval_subscribe('g', ARRAY['a'], 3, '2 days')$$, '22023', 'invalid value for "backoff"',
                 'subscribe: a backoff beyond 1 day is 22023');
SELECT throws_ok($$SELECT wval._emit('', 'w', 's', 'k', '{}')$$, '22023', '"type" must not be empty', 'emit: empty type is 22023');
SELECT throws_ok($$SELECT wval._emit('t', 'w', 's', NULL, '{}')$$, '22023', '"idempotency_key" must not be empty', 'emit: missing key is 22023');
SELECT throws_ok($$SELECT wval_bus_prune('-1 day')$$, '22023', 'invalid value for "older_than"', 'prune: negative period is 22023');
SELECT is((wval_bus_prune('178000000 years') ->> 'events_deleted')::bigint, 0::bigint,
          'prune: a period beyond the timestamp range removes nothing (found by the fuzz harness: was 22008)');
SELECT throws_ok($$CALL wval_work(0, 100)$$, '22023', 'invalid value for "max_events"', 'work: max_events 0 is 22023');

------------------------------------------------------------------------------
-- subscribing
------------------------------------------------------------------------------
SELECT results_eq(
    $$SELECT types, max_attempts, backoff, visibility, internal
      FROM wval_subscribe('t-main', ARRAY['policy_version_published', 'validation_profile_changed', 'policy_version_published'])$$,
    $$VALUES (ARRAY['policy_version_published', 'validation_profile_changed'], 3, interval '500 ms', interval '30 s', false)$$,
    'subscribe: defaults 3 attempts, 500ms backoff, 30s visibility; types deduplicated');
SELECT results_eq(
    $$SELECT backoff, visibility FROM wval_subscribe('t-short', ARRAY['t.x'], 2, '50ms', '2m')$$,
    $$VALUES (interval '0.05 s', interval '2 min')$$,
    'subscribe: short forms 50ms and 2m');
SELECT results_eq(
    $$SELECT backoff, visibility FROM wval_subscribe('t-short', ARRAY['t.x'], 2, interval '1 second', interval '1 hour')$$,
    $$VALUES (interval '1 s', interval '1 h')$$,
    'subscribe: interval values; a second subscribe changes the group');
SELECT is((SELECT count(*)::int FROM wval.audit_log WHERE action IN ('bus_subscribed', 'bus_subscription_changed')
           AND details->>'group_name' = 't-short'), 2, 'subscribe: creation and change are audited');

------------------------------------------------------------------------------
-- outbox row iff commit (savepoints), deliveries with it
------------------------------------------------------------------------------
SELECT lives_ok($$SELECT wval_world_upsert('bus-w1', actor => 'tester')$$, 'a world');
SAVEPOINT before_publish;
SELECT is(wval_policy_publish('bus-w1', '{"validation_profiles": {}}', 'alice'), 1, 'publish version 1');
SELECT results_eq(
    $$SELECT e.type, e.world_id, e.subject, e.idempotency_key, d.group_name, d.attempts, d.done_at IS NULL
      FROM wval.events e JOIN wval.deliveries d USING (event_id) WHERE e.world_id = 'bus-w1'$$,
    $$VALUES ('policy_version_published', 'bus-w1', 'v1', 'policy_version_published:bus-w1:v1', 't-main', 0, true)$$,
    'publish writes its event and one delivery per subscribed group in the same transaction');
SELECT is((SELECT array_agg(k ORDER BY k) FROM wval.events e, jsonb_object_keys(e.payload) k WHERE e.world_id = 'bus-w1'),
          ARRAY['data', 'datacontenttype', 'id', 'source', 'specversion', 'subject', 'time', 'type'],
          'payload is a CloudEvents 1.0 envelope');
ROLLBACK TO SAVEPOINT before_publish;
SELECT is((SELECT count(*)::int FROM wval.events WHERE world_id = 'bus-w1'), 0, 'rolled back publish leaves no event');
SELECT is((SELECT count(*)::int FROM wval.deliveries WHERE world_key = 'bus-w1'), 0, 'rolled back publish leaves no delivery');
SELECT is(wval_policy_publish('bus-w1', '{"validation_profiles": {}}', 'alice'), 1, 'publish again');
SELECT is((SELECT count(*)::int FROM wval.events WHERE world_id = 'bus-w1' AND type = 'policy_version_published'), 1,
          'the kept publish has its event');
SELECT throws_ok($$DELETE FROM wval.events WHERE world_id = 'bus-w1'$$, 'WV003', NULL, 'the outbox is append-only');
SELECT throws_ok($$UPDATE wval.events SET subject = 'x' WHERE world_id = 'bus-w1'$$, 'WV003', NULL, 'outbox rows cannot be updated');

------------------------------------------------------------------------------
-- dedupe
------------------------------------------------------------------------------
SELECT wval_subscribe('t-dedupe', ARRAY['t.dedupe']);
SELECT isnt(wval._emit('t.dedupe', 'w', 's', 't.dedupe:w:s:1', '{"n": 1}'), NULL, 'first publish of a key returns its event_id');
SELECT is(wval._emit('t.dedupe', 'w', 's', 't.dedupe:w:s:1', '{"n": 2}'), NULL, 'a repeated key is a no-op (null)');
SELECT is(wval._emit('t.dedupe', 'w', 's', 't.dedupe:w:s:1', '{"n": 3}'), NULL, 'and again');
SELECT results_eq($$SELECT count(*)::int, min(payload->'data'->>'n') FROM wval.events WHERE idempotency_key = 't.dedupe:w:s:1'$$,
                  $$VALUES (1, '1')$$, 'one event with the first data');
SELECT is((SELECT count(*)::int FROM wval.deliveries WHERE group_name = 't-dedupe'), 1, 'one delivery');
SELECT is((SELECT dedupe_hits FROM wval.bus_health WHERE group_name = 't-dedupe' AND type = 't.dedupe'), 2::bigint,
          'dedupe hits are counted');

------------------------------------------------------------------------------
-- consume / ack, per-world order
------------------------------------------------------------------------------
SELECT wval_subscribe('t-order', ARRAY['t.order'], 3, '1s', '30s');
SELECT wval_subscribe('t-other', ARRAY['t.other']);
CREATE TEMP TABLE ids AS
SELECT i, wval._emit(CASE WHEN i = 4 THEN 't.other' ELSE 't.order' END, 'ow' || (CASE WHEN i IN (1, 3, 5) THEN 1 ELSE 2 END),
                     's' || i, 't.order:' || i, jsonb_build_object('i', i)) AS id
FROM generate_series(1, 6) i;
-- ow1: 1 3 5; ow2: 2 6 (4 is another type)
SELECT is((SELECT count(*)::int FROM wval.deliveries WHERE group_name = 't-order'), 5, 'a group gets only its types');
SELECT results_eq($$SELECT event_id FROM wval_consume('t-order', 1)$$, $$SELECT id FROM ids WHERE i = 1$$,
                  'consume hands out the oldest event first');
SELECT results_eq($$SELECT event_id FROM wval_consume('t-order', 1)$$, $$SELECT id FROM ids WHERE i = 2$$,
                  'a world with an event in flight is skipped: next comes the other world');
SELECT is_empty($$SELECT event_id FROM wval_consume('t-order', 10)$$, 'both worlds busy: nothing to hand out');
SELECT ok(wval_ack('t-order', (SELECT id FROM ids WHERE i = 1)), 'ack returns true');
SELECT ok(NOT wval_ack('t-order', (SELECT id FROM ids WHERE i = 1)), 'a second ack returns false');
SELECT results_eq($$SELECT event_id FROM wval_consume('t-order', 10)$$, $$SELECT id FROM ids WHERE i IN (3, 5) ORDER BY i$$,
                  'after the ack the rest of that world comes, in order');
SELECT is(wval_ack('t-order', ARRAY(SELECT id FROM ids WHERE i IN (2, 3, 5))), 3, 'batch ack');
SELECT results_eq($$SELECT event_id FROM wval_consume('t-order', 10)$$, $$SELECT id FROM ids WHERE i = 6$$,
                  'then the last event');
SELECT results_eq($$SELECT first_event_id, last_event_id, visible_at - leased_at FROM wval.delivery_leases
                    WHERE group_name = 't-order' AND world_key = 'ow1'$$,
                  $$SELECT (SELECT id FROM ids WHERE i = 3), (SELECT id FROM ids WHERE i = 5), interval '30 seconds'$$,
                  'the latest hand-out of a world is recorded (its range and visibility)');
-- the oldest outstanding events all belong to a busy world: reading on in
-- event_id order finds the next world
SELECT wval_subscribe('t-walk', ARRAY['t.walk']);
CREATE TEMP TABLE wids AS
SELECT i, wval._emit('t.walk', CASE WHEN i < 5 THEN 'wa' ELSE 'wb' END, 's' || i, 't.walk:' || i, '{}') AS id
FROM generate_series(1, 5) i;
SELECT results_eq($$SELECT event_id FROM wval_consume('t-walk', 1)$$, $$SELECT id FROM wids WHERE i = 1$$,
                  'walk: the oldest world first');
SELECT results_eq($$SELECT event_id FROM wval_consume('t-walk', 1)$$, $$SELECT id FROM wids WHERE i = 5$$,
                  'walk: the oldest events all belong to a busy world, the read goes on to the other world');
-- more outstanding events of a busy world than one call reads in event_id
-- order (1024) lie before the next world: the walk over the worlds finds it
SELECT wval_subscribe('t-cap', ARRAY['t.cap']);
CREATE TEMP TABLE cids AS
SELECT i, wval._emit('t.cap', CASE WHEN i <= 1100 THEN 'ca' ELSE 'cb' END, 's' || i, 't.cap:' || i, '{}') AS id
FROM generate_series(1, 1102) i;
SELECT results_eq($$SELECT event_id FROM wval_consume('t-cap', 1)$$, $$SELECT id FROM cids WHERE i = 1$$,
                  'cap: the oldest world first');
SELECT results_eq($$SELECT event_id FROM wval_consume('t-cap', 5)$$, $$SELECT id FROM cids WHERE i > 1100 ORDER BY i$$,
                  'cap: 1,099 events of the busy world lie before the next world, which is handed out');
-- the slices of the queue that wval_consume reads (wval._queue_scan)
SELECT results_eq($$SELECT world_key, event_id FROM wval._queue_scan('t-cap', (SELECT id FROM cids WHERE i = 1099), 3)$$,
                  $$SELECT CASE WHEN i <= 1100 THEN 'ca' ELSE 'cb' END, id FROM cids WHERE i BETWEEN 1100 AND 1102 ORDER BY i$$,
                  'queue scan: the next outstanding deliveries after an event_id, in order, n of them');
SELECT is(wval_ack('t-cap', (SELECT id FROM cids WHERE i = 1)), true, 'cap: the first event acked');
SELECT is((SELECT min(event_id) FROM wval._queue_scan('t-cap', 0, 1)), (SELECT id FROM cids WHERE i = 2),
          'queue scan: a finished delivery is not outstanding');
SELECT is((SELECT count(*) FROM wval._queue_scan('t-cap', 0, 0)), 0::bigint, 'queue scan: n = 0 reads nothing');
SELECT is((SELECT count(*) FROM wval._queue_scan('t-nothing', 0, 10)), 0::bigint, 'queue scan: a group without deliveries');
-- the head of a world can be visible while later events of the same
-- hand-out are still in hands (a nack without backoff): the world waits
SELECT wval_subscribe('t-lease', ARRAY['t.lease'], 3, interval '0', interval '30 seconds');
CREATE TEMP TABLE lids AS
SELECT i, wval._emit('t.lease', 'lw', 's' || i, 't.lease:' || i, '{}') AS id FROM generate_series(1, 3) i;
SELECT results_eq($$SELECT event_id FROM wval_consume('t-lease', 10)$$, $$SELECT id FROM lids ORDER BY i$$,
                  'lease: one hand-out of three events');
SELECT is(wval_nack('t-lease', (SELECT id FROM lids WHERE i = 1), 'x'), 'retry', 'lease: the head is nacked, visible at once');
SELECT is_empty($$SELECT event_id FROM wval_consume('t-lease', 10)$$,
                'lease: the world waits while the rest of its hand-out is in hands');
SELECT is(wval_ack('t-lease', ARRAY(SELECT id FROM lids WHERE i > 1)), 2, 'lease: the rest is acked');
SELECT results_eq($$SELECT event_id FROM wval_consume('t-lease', 10)$$, $$SELECT id FROM lids WHERE i = 1$$,
                  'lease: then the head is handed out again');
SELECT throws_ok(format('SELECT wval_ack(%L, %s)', 't-order', (SELECT id FROM ids WHERE i = 4)), 'WV010',
                 NULL, 'ack of an event of another type is WV010');
SELECT is(wval._emit('t.order', 'ow3', 's7', 't.order:7', '{}') IS NOT NULL, true, 'a fresh event');
SELECT throws_ok(format('SELECT wval_ack(%L, %s)', 't-order', (SELECT max(event_id) FROM wval.events WHERE idempotency_key = 't.order:7')),
                 '22023', NULL, 'ack of an event not handed out yet is 22023');
SELECT throws_ok($$SELECT * FROM wval_consume('t-order', 0)$$, '22023', 'invalid value for "max"', 'consume: max 0 is 22023');

------------------------------------------------------------------------------
-- nack -> retry after backoff -> dead letter after 3 attempts -> redrive
------------------------------------------------------------------------------
SELECT wval_subscribe('t-dlq', ARRAY['t.dlq'], 3, '250ms', '1h');
SELECT wval_subscribe('t-dlq-watch', ARRAY['event_dead_lettered']);
CREATE TEMP TABLE dl AS SELECT wval._emit('t.dlq', 'dw', 's', 't.dlq:1', '{}') AS id;
SELECT results_eq($$SELECT event_id FROM wval_consume('t-dlq')$$, $$SELECT id FROM dl$$, 'attempt 1 handed out');
SELECT throws_ok($$SELECT wval_nack('t-dlq', (SELECT id FROM dl), ' ')$$, '22023', '"error" must not be empty', 'nack needs an error');
SELECT is(wval_nack('t-dlq', (SELECT id FROM dl), 'boom 1'), 'retry', 'nack 1 schedules a retry');
SELECT is_empty($$SELECT * FROM wval_consume('t-dlq')$$, 'not handed out during the backoff (250ms x 1)');
SELECT is((SELECT visible_at - (errors->-1->>'at')::timestamptz FROM wval.deliveries WHERE group_name = 't-dlq'),
          interval '250 ms', 'retry is due backoff x 1 after the nack');
SELECT pg_sleep(0.26);
SELECT results_eq($$SELECT event_id FROM wval_consume('t-dlq')$$, $$SELECT id FROM dl$$, 'attempt 2 after the backoff');
SELECT is(wval_nack('t-dlq', (SELECT id FROM dl), 'boom 2'), 'retry', 'nack 2 schedules a retry');
SELECT is((SELECT visible_at - (errors->-1->>'at')::timestamptz FROM wval.deliveries WHERE group_name = 't-dlq'),
          interval '500 ms', 'linear backoff: due backoff x 2 after the second nack');
SELECT is_empty($$SELECT * FROM wval_consume('t-dlq')$$, 'not handed out during the second backoff');
SELECT pg_sleep(0.51);
SELECT results_eq($$SELECT event_id FROM wval_consume('t-dlq')$$, $$SELECT id FROM dl$$, 'attempt 3');
SELECT is(wval_nack('t-dlq', (SELECT id FROM dl), 'boom 3'), 'dead_lettered', 'nack 3 dead-letters');
SELECT results_eq($$SELECT attempts, jsonb_array_length(errors), last_error, dead_count FROM wval.dead_letters WHERE group_name = 't-dlq'$$,
                  $$VALUES (3, 3, 'boom 3', 1)$$, 'the dead letter keeps attempts and every error');
SELECT is_empty($$SELECT * FROM wval_consume('t-dlq')$$, 'a dead letter is not handed out');
SELECT results_eq(
    $$SELECT e.payload->'data' FROM wval.events e WHERE e.type = 'event_dead_lettered' AND e.subject = (SELECT id::text FROM dl)$$,
    $$SELECT jsonb_build_object('group', 't-dlq', 'event_id', id, 'type', 't.dlq', 'world_id', 'dw', 'attempts', 3, 'last_error', 'boom 3') FROM dl$$,
    'event_dead_lettered is emitted with group, event_id, attempts and last error');
SELECT is((SELECT count(*)::int FROM wval.deliveries d JOIN wval.events e USING (event_id)
           WHERE d.group_name = 't-dlq-watch' AND e.subject = (SELECT id::text FROM dl)), 1,
          'and delivered to groups that subscribed to it');
SELECT results_eq($$SELECT backlog, retried, dead_lettered, dead_letters, processed FROM wval.bus_health WHERE group_name = 't-dlq'$$,
                  $$VALUES (0::bigint, 2::bigint, 1::bigint, 1::bigint, 0::bigint)$$, 'health counts retries and dead letters');
SELECT is(wval_nack('t-dlq', (SELECT id FROM dl), 'late'), 'ignored', 'a nack after the end is ignored');
SELECT is(wval_redrive('t-dlq', (SELECT id FROM dl)), 1, 'redrive');
SELECT throws_ok($$SELECT wval_redrive('t-dlq', (SELECT id FROM dl))$$, '22023', NULL, 'redrive of a live event is 22023');
SELECT results_eq($$SELECT event_id FROM wval_consume('t-dlq')$$, $$SELECT id FROM dl$$, 'a redriven event is handed out again');
SELECT results_eq($$SELECT attempts, dead_count, done_at IS NULL FROM wval.deliveries WHERE group_name = 't-dlq'$$,
                  $$VALUES (1, 1, true)$$, 'with fresh attempts');
SELECT ok(wval_ack('t-dlq', (SELECT id FROM dl)), 'and acked');
SELECT is_empty($$SELECT * FROM wval.dead_letters WHERE group_name = 't-dlq'$$, 'no dead letter left');

------------------------------------------------------------------------------
-- wval.delivery_store keeps no B-tree over finished deliveries (but dead
-- letters): an ack, never a HOT update, writes no index entry
------------------------------------------------------------------------------
SELECT is(
    (SELECT string_agg(format('%s %s%s %s', c.relname, a.amname, CASE WHEN i.indisunique THEN ' unique' ELSE '' END,
                              coalesce(pg_get_expr(i.indpred, i.indrelid), 'all rows')), '; ' ORDER BY c.relname)
     FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am a ON a.oid = c.relam
     WHERE i.indrelid = 'wval.delivery_store'::regclass),
    'deliveries_dead_idx btree (outcome = ''dead''::text); deliveries_event_brin brin all rows; '
    'deliveries_expiry_idx btree ((done_at IS NULL) AND (expires_at IS NOT NULL)); '
    'deliveries_order_idx btree unique (done_at IS NULL); deliveries_queue_idx btree (done_at IS NULL)',
    'deliveries: every B-tree is partial on outstanding rows or dead letters, finished rows are found by the block-range index');
SELECT throws_ok(format($$INSERT INTO wval.delivery_store (group_name, event_id, type, world_key, enqueued_at, visible_at)
                         VALUES ('t-order', %s, 't.order', 'ow2', now(), now())$$, (SELECT id FROM ids WHERE i = 6)),
                 '23505', NULL, 'a second outstanding delivery of an event to a group is refused (unique order index)');
SELECT throws_ok(format('SELECT wval_nack(%L, %s, %L)', 't-dlq', (SELECT id FROM ids WHERE i = 1), 'x'), 'WV010', NULL,
                 'nack of an event the group never received is WV010');
SELECT is(wval_nack('t-order', (SELECT id FROM ids WHERE i = 1), 'late'), 'ignored', 'nack of an acked event is ignored');
SELECT throws_ok(format('SELECT wval_redrive(%L, %s)', 't-order', (SELECT id FROM ids WHERE i = 1)), '22023',
                 'event ' || (SELECT id FROM ids WHERE i = 1) || ' is not a dead letter of consumer group "t-order"',
                 'redrive of an acked event is 22023');
SELECT throws_ok(format('SELECT wval_redrive(%L, %s)', 't-order', (SELECT id FROM ids WHERE i = 4)), 'WV010', NULL,
                 'redrive of an event the group never received is WV010');
SELECT is(wval_ack('t-cap', ARRAY(SELECT id FROM cids WHERE i IN (1, 1101))), 1,
          'batch ack of an acked and a handed-out event: counts the one acked now');
SELECT throws_ok(format('SELECT wval_ack(%L, %L::bigint[])', 't-cap', ARRAY[(SELECT id FROM cids WHERE i = 1102), (SELECT id FROM ids WHERE i = 1)]),
                 'WV010', NULL, 'batch ack with an event the group never received is WV010');
SELECT is((SELECT outcome FROM wval.deliveries WHERE group_name = 't-cap' AND event_id = (SELECT id FROM cids WHERE i = 1102)),
          NULL, 'and acks none of the batch');

------------------------------------------------------------------------------
-- a hand-out writes its world's lease row and no delivery; each delivery is
-- written when its part of the hand-out ends (ack, nack, timeout), and
-- wval.deliveries shows the hand-out in progress meanwhile
------------------------------------------------------------------------------
SELECT wval_subscribe('t-ho', ARRAY['t.ho'], 3, '0s', '1h');
CREATE TEMP TABLE hids AS
SELECT i, wval._emit('t.ho', 'hw', 's' || i, 't.ho:' || i, '{}') AS id FROM generate_series(1, 3) i;
SELECT results_eq($$SELECT event_id FROM wval_consume('t-ho', 10)$$, $$SELECT id FROM hids ORDER BY i$$,
                  'hand-out: three events');
SELECT results_eq($$SELECT attempts, handouts, leased, leased_at IS NULL FROM wval.delivery_store
                    WHERE group_name = 't-ho' ORDER BY event_id$$,
                  $$VALUES (0, 0, false, true), (0, 0, false, true), (0, 0, false, true)$$,
                  'hand-out: the stored deliveries are not written');
SELECT results_eq($$SELECT event_ids = ARRAY(SELECT id FROM hids ORDER BY i), visible_at - leased_at
                    FROM wval.delivery_leases WHERE group_name = 't-ho'$$,
                  $$VALUES (true, interval '1 hour')$$, 'hand-out: the lease row lists its events, with its visibility');
SELECT results_eq($$SELECT d.attempts, d.handouts, d.leased, d.leased_at = l.leased_at, d.visible_at = l.visible_at
                    FROM wval.deliveries d JOIN wval.delivery_leases l USING (group_name, world_key)
                    WHERE d.group_name = 't-ho' ORDER BY d.event_id$$,
                  $$VALUES (1, 1, true, true, true), (1, 1, true, true, true), (1, 1, true, true, true)$$,
                  'hand-out: wval.deliveries shows it on each of its events');
SELECT is((SELECT in_flight FROM wval.bus_health WHERE group_name = 't-ho'), 3::bigint, 'hand-out: three in flight');
SELECT is(wval_ack('t-ho', (SELECT id FROM hids WHERE i = 1)), true, 'hand-out: the first is acked');
SELECT is(wval_nack('t-ho', (SELECT id FROM hids WHERE i = 2), 'x'), 'retry', 'hand-out: the second is nacked');
SELECT results_eq($$SELECT d.attempts, d.handouts, d.leased, d.leased_at IS NOT DISTINCT FROM l.leased_at, d.outcome
                    FROM wval.delivery_store d JOIN wval.delivery_leases l USING (group_name, world_key)
                    WHERE d.group_name = 't-ho' ORDER BY d.event_id$$,
                  $$VALUES (1, 1, false, true, 'acked'), (1, 1, false, true, NULL::text), (0, 0, false, false, NULL)$$,
                  'hand-out: the ack and the nack write it with their delivery, the third is still in it');
SELECT results_eq($$SELECT attempts, leased FROM wval.deliveries WHERE group_name = 't-ho' ORDER BY event_id$$,
                  $$VALUES (1, false), (1, false), (1, true)$$, 'hand-out: wval.deliveries after the ack and the nack');
SELECT is((SELECT in_flight FROM wval.bus_health WHERE group_name = 't-ho'), 1::bigint, 'hand-out: one in flight');
SELECT is_empty($$SELECT * FROM wval_consume('t-ho', 10)$$, 'hand-out: the world waits for the third');
SELECT is(wval_ack('t-ho', ARRAY[(SELECT id FROM hids WHERE i = 3)]), 1, 'hand-out: the third is acked');
SELECT results_eq($$SELECT event_id FROM wval_consume('t-ho', 10)$$, $$SELECT id FROM hids WHERE i = 2$$,
                  'hand-out: then the nacked one is handed out again');
SELECT results_eq($$SELECT s.attempts, d.attempts, d.handouts, d.leased FROM wval.delivery_store s JOIN wval.deliveries d USING (group_name, event_id)
                    WHERE s.group_name = 't-ho' AND s.event_id = (SELECT id FROM hids WHERE i = 2)$$,
                  $$VALUES (1, 2, 2, true)$$, 'hand-out: the second hand-out is shown on top of the first, which is stored');
SELECT is(wval_ack('t-ho', ARRAY[(SELECT id FROM hids WHERE i = 2)]), 1, 'hand-out: acked');
SELECT results_eq($$SELECT attempts, handouts, jsonb_array_length(errors) FROM wval.delivery_store
                    WHERE group_name = 't-ho' AND event_id = (SELECT id FROM hids WHERE i = 2)$$,
                  $$VALUES (2, 2, 1)$$, 'hand-out: both hand-outs and the nack are stored');
SELECT results_eq($$SELECT processed, retried, in_flight, backlog FROM wval.bus_health WHERE group_name = 't-ho'$$,
                  $$VALUES (3::bigint, 1::bigint, 0::bigint, 0::bigint)$$, 'hand-out: health counts three processed, one retried');

-- one ack over two worlds' hand-outs, one of its events settled by a nack
-- (its hand-out is stored already: counted once)
SELECT wval_subscribe('t-ack2', ARRAY['t.ack2'], 3, '1h', '1h');
CREATE TEMP TABLE a2ids AS
SELECT i, wval._emit('t.ack2', CASE WHEN i < 3 THEN 'aw' ELSE 'bw' END, 's' || i, 't.ack2:' || i, '{}') AS id
FROM generate_series(1, 3) i;
SELECT results_eq($$SELECT event_id FROM wval_consume('t-ack2', 10)$$, $$SELECT id FROM a2ids ORDER BY i$$,
                  'ack over worlds: both worlds handed out in one call');
SELECT is(wval_nack('t-ack2', (SELECT id FROM a2ids WHERE i = 2), 'x'), 'retry', 'ack over worlds: the second is nacked');
SELECT is(wval_ack('t-ack2', ARRAY(SELECT id FROM a2ids ORDER BY i DESC)), 3, 'ack over worlds: all three acked in one call');
SELECT results_eq($$SELECT d.attempts, d.handouts, d.outcome, d.leased_at = l.leased_at,
                           d.visible_at = l.visible_at, jsonb_array_length(d.errors)
                    FROM wval.delivery_store d JOIN wval.delivery_leases l USING (group_name, world_key)
                    WHERE d.group_name = 't-ack2' ORDER BY d.event_id$$,
                  $$VALUES (1, 1, 'acked', true, true, 0), (1, 1, 'acked', true, false, 1), (1, 1, 'acked', true, true, 0)$$,
                  'ack over worlds: each hand-out written once, with its world''s time; the nacked one keeps its backoff');
SELECT results_eq($$SELECT world_key, cardinality(event_ids) FROM wval.delivery_leases WHERE group_name = 't-ack2' ORDER BY 1$$,
                  $$VALUES ('aw', 2), ('bw', 1)$$, 'ack over worlds: one hand-out per world');

------------------------------------------------------------------------------
-- visibility timeout
------------------------------------------------------------------------------
SELECT wval_subscribe('t-vis', ARRAY['t.vis'], 2, '0s', '250ms');
CREATE TEMP TABLE vis AS SELECT wval._emit('t.vis', 'vw', 's', 't.vis:1', '{}') AS id;
SELECT results_eq($$SELECT event_id FROM wval_consume('t-vis')$$, $$SELECT id FROM vis$$, 'handed out');
SELECT is_empty($$SELECT * FROM wval_consume('t-vis')$$, 'not again within the visibility timeout');
SELECT pg_sleep(0.26);
SELECT results_eq($$SELECT event_id FROM wval_consume('t-vis')$$, $$SELECT id FROM vis$$,
                  'neither acked nor nacked within visibility: handed out again');
SELECT results_eq($$SELECT attempts, errors->0->>'error' FROM wval.deliveries WHERE group_name = 't-vis'$$,
                  $$VALUES (2, 'visibility timeout expired')$$, 'the timeout counts as a failed attempt');
SELECT results_eq($$SELECT attempts, handouts, leased, jsonb_array_length(errors) FROM wval.delivery_store WHERE group_name = 't-vis'$$,
                  $$VALUES (1, 1, true, 1)$$, 'the hand-out that timed out is stored by the next one, once');
SELECT pg_sleep(0.26);
SELECT is_empty($$SELECT * FROM wval_consume('t-vis')$$, 'after max_attempts timeouts the event is not handed out');
SELECT results_eq($$SELECT attempts, last_error FROM wval.dead_letters WHERE group_name = 't-vis'$$,
                  $$VALUES (2, 'visibility timeout expired')$$, 'but dead-lettered');

------------------------------------------------------------------------------
-- expiry
------------------------------------------------------------------------------
SELECT wval_subscribe('t-ttl', ARRAY['t.ttl']);
CREATE TEMP TABLE ttl AS
SELECT wval._emit('t.ttl', 'tw1', 's', 't.ttl:1', '{}', interval '1 millisecond') AS short_id,
       wval._emit('t.ttl', 'tw2', 's', 't.ttl:2', '{}', interval '1 hour') AS long_id;
SELECT ok((SELECT expires_at = created_at + interval '1 ms' FROM wval.events WHERE event_id = (SELECT short_id FROM ttl)),
          'expires_at = created_at + ttl');
SELECT pg_sleep(0.01);
SELECT results_eq($$SELECT event_id FROM wval_consume('t-ttl')$$, $$SELECT long_id FROM ttl$$,
                  'an expired event is not handed out; the fresh one is');
SELECT results_eq($$SELECT outcome, attempts FROM wval.deliveries WHERE group_name = 't-ttl' AND event_id = (SELECT short_id FROM ttl)$$,
                  $$VALUES ('expired', 0)$$, 'it is finished as expired');
SELECT results_eq($$SELECT expired, backlog FROM wval.bus_health WHERE group_name = 't-ttl'$$,
                  $$VALUES (1::bigint, 1::bigint)$$, 'health counts it as expired, not as backlog');

------------------------------------------------------------------------------
-- health: latency and oldest age
------------------------------------------------------------------------------
SELECT ok((SELECT latency_avg_ms > 0 AND latency_p95_ms > 0 AND processed = 4
           FROM wval.bus_health WHERE group_name = 't-order' AND type = 't.order'),
          'health reports processed and a latency for acked events');
SELECT ok((SELECT oldest_unacked_age >= interval '0' AND backlog = 2 AND in_flight = 1
           FROM wval.bus_health WHERE group_name = 't-order'),
          'health reports the backlog, what is in flight and the age of the oldest unacked event');
SELECT ok((SELECT oldest_unacked_age IS NULL AND backlog = 0 FROM wval.bus_health WHERE group_name = 't-dlq'),
          'no age when nothing is unacked');

------------------------------------------------------------------------------
-- internal consumers: wval_work
------------------------------------------------------------------------------
CREATE TABLE public.bus_work_seen (event_id bigint, n int);
CREATE FUNCTION public.bus_work_handler(e wval.events) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF (e.payload->'data'->>'fail')::boolean THEN
        RAISE EXCEPTION 'handler failed on %', e.event_id;
    END IF;
    INSERT INTO public.bus_work_seen VALUES (e.event_id, (e.payload->'data'->>'n')::int);
END
$$;
SELECT throws_ok($$SELECT wval._register_handler('t-internal', 't.work', 'now()'::regprocedure)$$, '22023',
                 'invalid value for "handler"', 'a handler must take one wval.events');
SELECT lives_ok($$SELECT wval._register_handler('t-internal', 't.work', 'public.bus_work_handler(wval.events)')$$,
                'register an internal handler');
SELECT results_eq($$SELECT internal, types FROM wval.consumer_groups WHERE group_name = 't-internal'$$,
                  $$VALUES (true, ARRAY['t.work'])$$, 'it creates an internal group');
SELECT throws_ok($$SELECT wval_subscribe('t-internal', ARRAY['x'])$$, '42501', NULL, 'clients cannot take over an internal group');
SELECT wval._emit('t.work', 'ww', 's' || i, 't.work:' || i, jsonb_build_object('n', i, 'fail', i = 2)) FROM generate_series(1, 3) i;
CALL wval_work(100, 5000);
SELECT results_eq($$SELECT n FROM public.bus_work_seen ORDER BY n$$, $$VALUES (1), (3)$$, 'wval_work dispatches events to the handler');
SELECT results_eq($$SELECT d.outcome, d.attempts, d.errors->0->>'error' LIKE 'P0001: handler failed on %'
                    FROM wval.deliveries d JOIN wval.events e USING (event_id)
                    WHERE d.group_name = 't-internal' ORDER BY e.payload->'data'->>'n'$$,
                  $$VALUES ('acked'::text, 1, NULL::boolean), (NULL, 1, true), ('acked', 1, NULL)$$,
                  'handled events are acked, a failing handler nacks (its work is rolled back)');
SELECT is(wval._work(100, 5000), '{"failed": 0, "processed": 0}'::jsonb, 'nothing due during the backoff');

------------------------------------------------------------------------------
-- pg_cron job
------------------------------------------------------------------------------
SELECT ok(wval_schedule_bus_worker() > 0, 'schedule the bus worker');
SELECT results_eq($$SELECT schedule, command FROM cron.job WHERE jobname = 'wval:bus-worker'$$,
                  $$VALUES ('* * * * *'::text, 'CALL public.wval_work(1000, 10000)'::text)$$, 'every minute, CALL wval_work');
SELECT lives_ok($$SELECT wval_schedule_bus_worker('*/5 * * * *', 50, 2000)$$, 'rescheduling');
SELECT results_eq($$SELECT count(*)::int, min(schedule) FROM cron.job WHERE jobname = 'wval:bus-worker'$$,
                  $$VALUES (1, '*/5 * * * *'::text)$$, 'replaces the job');
SELECT ok(wval_unschedule_bus_worker(), 'unschedule');
SELECT ok(NOT wval_unschedule_bus_worker(), 'unschedule again: nothing to do');

------------------------------------------------------------------------------
-- roles
------------------------------------------------------------------------------
SET LOCAL ROLE wval_analyst;
SELECT lives_ok($$SELECT * FROM wval.bus_health$$, 'analysts read bus_health');
SELECT lives_ok($$SELECT * FROM wval.dead_letters$$, 'analysts read dead_letters');
SELECT throws_ok($$SELECT * FROM wval_consume('t-order')$$, '42501', NULL, 'analysts cannot consume');
RESET ROLE;
SELECT id AS t_order_6 FROM ids WHERE i = 6 \gset
SET LOCAL ROLE wval_producer;
SELECT lives_ok($$SELECT wval_subscribe('t-producer', ARRAY['t.p'])$$, 'producers subscribe');
SELECT is_empty($$SELECT * FROM wval_consume('t-producer')$$, 'and consume');
SELECT throws_ok($$SELECT wval_redrive('t-dlq')$$, '42501', NULL, 'producers cannot redrive');
SELECT throws_ok($$SELECT wval._emit('t.p', 'w', 's', 'k-producer', '{}')$$, '42501', NULL, 'producers cannot emit directly');
SELECT throws_ok(format('SELECT wval_ack(%L, %s)', 't-order', :t_order_6), 'WV010', NULL,
                 'a role that may not use a group cannot ack its events (the group does not exist for it)');
RESET ROLE;
SELECT is((SELECT outcome FROM wval.deliveries WHERE group_name = 't-order' AND event_id = (SELECT id FROM ids WHERE i = 6)),
          NULL, 'that event is still outstanding');
SET LOCAL ROLE wval_admin;
SELECT is(wval_redrive('t-vis'), 1, 'admins redrive (all dead letters of a group)');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;
