-- sql/bus.sql: deterministic outputs of the event bus (messages, payload
-- shape, dead letters, health counters, pruning).  Event ids depend on what
-- ran before, so they are shown relative to this file's first event.
\set VERBOSITY default
\set SHOW_CONTEXT never

-- a consumer group; short-form durations
SELECT group_name, types, max_attempts, backoff, visibility, internal
FROM wval_subscribe('reg', ARRAY['reg.b', 'reg.a'], 2, '10ms', '1h');

-- argument errors name the field, show the value and the fix
SELECT * FROM wval_consume('nope');
SELECT wval_subscribe('reg', ARRAY[]::text[]);
SELECT wval_subscribe('reg', ARRAY['reg.a'], 101);
SELECT wval_subscribe('reg', ARRAY['reg.a'], 3, '1s', 'never');
SELECT * FROM wval_consume('reg', 5000);

-- events: a CloudEvents envelope, a delivery per subscribed group
CREATE TEMP TABLE ev AS
SELECT i, wval._emit('reg.a', 'rw' || (i % 2), 's' || i, 'reg.a:rw:s' || i, jsonb_build_object('i', i)) AS id
FROM generate_series(1, 4) i;
SELECT payload - 'id' - 'time' - 'source' AS envelope,
       payload->>'id' = event_id::text AS id_matches,
       payload->>'source' LIKE '/wval/%/worlds/rw1' AS source_ok
FROM wval.events WHERE idempotency_key = 'reg.a:rw:s1';
SELECT wval._emit('reg.a', 'rw1', 's1', 'reg.a:rw:s1', '{"i": 99}') AS duplicate;

-- per-world order: oldest first, one world per consumer at a time
SELECT ev.i, c.world_id FROM wval_consume('reg', 1) c JOIN ev ON ev.id = c.event_id;
SELECT ev.i, c.world_id FROM wval_consume('reg', 10) c JOIN ev ON ev.id = c.event_id ORDER BY c.event_id;
SELECT ev.i, c.world_id FROM wval_consume('reg', 10) c JOIN ev ON ev.id = c.event_id ORDER BY c.event_id;
SELECT wval_ack('reg', (SELECT id FROM ev WHERE i = 1)) AS acked, wval_ack('reg', (SELECT id FROM ev WHERE i = 1)) AS again;
SELECT ev.i, c.world_id FROM wval_consume('reg', 10) c JOIN ev ON ev.id = c.event_id ORDER BY c.event_id;
SELECT wval_ack('reg', ARRAY(SELECT id FROM ev WHERE i IN (2, 3))) AS acked;

-- nack -> retry after the backoff -> dead letter (max_attempts 2)
SELECT wval_nack('reg', (SELECT id FROM ev WHERE i = 4), 'downstream timeout');
SELECT pg_sleep(0.05);
SELECT ev.i FROM wval_consume('reg') c JOIN ev ON ev.id = c.event_id;
SELECT wval_nack('reg', (SELECT id FROM ev WHERE i = 4), 'downstream refused');
SELECT d.event_id - ev.id AS rel_event, d.attempts, d.last_error, d.type, d.world_id, d.dead_count,
       jsonb_path_query_array(d.errors, '$[*].error') AS errors
FROM wval.dead_letters d JOIN ev ON ev.id = d.event_id WHERE d.group_name = 'reg';
SELECT e.subject::bigint - ev.id AS rel_subject, (e.payload->'data') - 'event_id' AS data
FROM wval.events e JOIN ev ON ev.i = 4 WHERE e.type = 'event_dead_lettered' AND e.subject = ev.id::text;
SELECT wval_ack('reg', (SELECT id FROM ev WHERE i = 4)) AS ack_of_dead_letter;
SELECT wval_redrive('reg', (SELECT id FROM ev WHERE i = 4)) AS redriven, wval_redrive('reg') AS none_left;
SELECT ev.i FROM wval_consume('reg') c JOIN ev ON ev.id = c.event_id;
SELECT wval_nack('reg', (SELECT id FROM ev WHERE i = 4), 'still refused');
SELECT pg_sleep(0.05);
SELECT ev.i FROM wval_consume('reg') c JOIN ev ON ev.id = c.event_id;
SELECT wval_nack('reg', (SELECT id FROM ev WHERE i = 4), 'gave up again');
SELECT attempts, dead_count, last_error FROM wval.dead_letters WHERE group_name = 'reg';

-- health counters (timings left out)
SELECT group_name, type, backlog, in_flight, processed, retried, dead_lettered, dead_letters, dedupe_hits, expired,
       latency_avg_ms IS NOT NULL AS has_latency
FROM wval.bus_health WHERE group_name = 'reg' ORDER BY type;

-- pruning: finished events go, dead letters stay unless asked
SELECT wval_bus_prune('0') ? 'events_deleted' AS report;
SELECT ev.i, e.event_id IS NOT NULL AS kept
FROM ev LEFT JOIN wval.events e ON e.event_id = ev.id ORDER BY ev.i;
SELECT count(*) AS deliveries_left FROM wval.deliveries WHERE group_name = 'reg';
SELECT (wval_bus_prune('0', include_dead_letters => true))->'include_dead_letters' AS with_dead_letters;
SELECT count(*) AS events_left FROM wval.events e JOIN ev ON ev.id = e.event_id;
SELECT group_name, type, backlog, processed, retried, dead_lettered, dead_letters
FROM wval.bus_health WHERE group_name = 'reg' ORDER BY type;
SELECT action, details->>'include_dead_letters' AS include_dead_letters
FROM wval.audit_log WHERE action = 'bus_pruned' ORDER BY id;

-- the pg_cron job needs pg_cron in this database (terse: the DETAIL quotes
-- the server's pg_cron settings, which differ between installations)
\set VERBOSITY terse
SELECT wval_schedule_bus_worker();
\set VERBOSITY default

SELECT wval_unsubscribe('reg') AS dropped_outstanding;
