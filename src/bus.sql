-- bus.sql: the event bus (docs/bus.md): transactional outbox, LISTEN/NOTIFY
-- wake-ups, consumer groups with retry, backoff, visibility timeout and dead
-- letters, wval's internal consumers, health and pruning.  All of it is SQL
-- and set-based plpgsql; see docs/bus.md for the user's view.
--
-- Delivery design.  Consumers do not track an offset into wval.events:
-- event_ids come from a sequence, so a transaction holding a smaller
-- event_id can commit after one holding a larger id, and an offset that has
-- moved past the larger id would skip the smaller one for ever.  Instead
-- wval._emit() writes one row per subscribed group into wval.delivery_store
-- in the same transaction as the event (fan-out at publish time).  A
-- delivery row becomes visible exactly when its event commits, and it stays
-- outstanding (done_at IS NULL) until the group acknowledges it, lets it
-- expire or dead-letters it; a late commit is simply a late delivery row,
-- never a skipped one.
--
-- Per-world order.  A group's outstanding deliveries form one queue per
-- world (world_key; '' for events without a world), ordered by event_id.
-- wval_consume() hands out a world's events only from the head of that
-- queue, only while the head is visible (not in backoff), and not while
-- any event of the world is in a consumer's hands.  Only the latest
-- hand-out of a world can be in hands, and wval.delivery_leases keeps it:
-- its events, time and visibility.  A hand-out writes that row and no
-- delivery; each delivery is written when its part of the hand-out ends
-- (wval_ack, wval_nack, or the timeout, written by the next hand-out of the
-- world), and wval.deliveries, a view, adds the hand-out in progress to the
-- stored state.  Two consumers racing for the same world are serialised by
-- a transaction-level advisory lock on (group, world), taken with
-- pg_try_advisory_xact_lock() (the loser skips the world, SKIP LOCKED
-- style); the winner then re-reads the world's lease row in a new
-- statement, whose snapshot includes every hand-out committed before it got
-- the lock.  Hand-outs, expiry, acks and nacks, which change a world's
-- outstanding deliveries, first lock its lease row (the first two FOR NO
-- KEY UPDATE SKIP LOCKED, acks and nacks FOR SHARE), so a hand-out reads
-- the queue as the acks and nacks left it, and an ack counts the hand-out
-- it acknowledges.  (A redrive makes a finished delivery outstanding again
-- without it: the delivery is settled, so no hand-out holds it.)
--
-- Subscriptions and concurrent emitters.  _emit() holds a shared advisory
-- lock (BUS_LOCK, 0) until its transaction ends; wval_subscribe() takes it
-- exclusively, so it waits for every transaction that is emitting and
-- makes later emitters wait for the subscription to commit: a group receives
-- exactly the events that commit after its subscription.
--
-- requires: store

------------------------------------------------------------------------------
-- The outbox
------------------------------------------------------------------------------

CREATE SEQUENCE wval.events_id_seq;
CREATE TABLE wval.events (
    event_id        bigint NOT NULL DEFAULT nextval('wval.events_id_seq') PRIMARY KEY,
    type            text NOT NULL,
    world_id        text,
    subject         text,
    idempotency_key text NOT NULL UNIQUE,
    payload         jsonb NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz
);
SELECT wval._secure('wval.events');
ALTER SEQUENCE wval.events_id_seq OWNED BY wval.events.event_id;
CREATE INDEX ON wval.events (type, event_id);
CREATE INDEX ON wval.events (created_at);
COMMENT ON TABLE wval.events IS 'transactional outbox: one row per event, written in the same transaction as the change it announces; payload is a CloudEvents 1.0 envelope. Append-only; wval_bus_prune() removes events every group has finished';
COMMENT ON COLUMN wval.events.event_id IS 'from a sequence: increasing, but a smaller id may commit after a larger one (consumers never track offsets, see docs/bus.md)';
COMMENT ON COLUMN wval.events.type IS 'event type (catalogue in docs/bus.md), e.g. policy_version_published';
COMMENT ON COLUMN wval.events.world_id IS 'the world the event is about; null for events of no world (schedule_missed)';
COMMENT ON COLUMN wval.events.subject IS 'what in the world the event is about: a run_id, a policy version (v3), an event_id';
COMMENT ON COLUMN wval.events.idempotency_key IS '<type>:<world_id>:<subject>:<discriminator>; publishing an existing key is a counted no-op';
COMMENT ON COLUMN wval.events.payload IS 'CloudEvents 1.0 envelope: specversion, id, source, type, subject, time, datacontenttype, data';
COMMENT ON COLUMN wval.events.created_at IS 'start of the emitting transaction (enqueue time for latency)';
COMMENT ON COLUMN wval.events.expires_at IS 'events with a TTL (risk snapshots) are not handed out after this time; they are counted as expired and acknowledged';
SELECT wval._protect('wval.events');

CREATE TABLE wval.event_dedupe_hits (
    type        text NOT NULL,
    shard       smallint NOT NULL,
    hits        bigint NOT NULL DEFAULT 0,
    last_key    text,
    last_hit_at timestamptz,
    PRIMARY KEY (type, shard)
);
COMMENT ON TABLE wval.event_dedupe_hits IS 'per event type: publishes that were no-ops because their idempotency key existed; sharded by backend so that concurrent publishers do not queue on one row (sum hits over shards, or read wval.bus_health)';
COMMENT ON COLUMN wval.event_dedupe_hits.shard IS 'pg_backend_pid() % 16 of the publisher';
COMMENT ON COLUMN wval.event_dedupe_hits.last_key IS 'the idempotency key of the latest hit in this shard';
COMMENT ON COLUMN wval.event_dedupe_hits.type IS 'event type of the no-op publishes';
COMMENT ON COLUMN wval.event_dedupe_hits.hits IS 'publishes of this type in this shard that were no-ops because their idempotency key existed (counter)';
COMMENT ON COLUMN wval.event_dedupe_hits.last_hit_at IS 'time of the latest hit in this shard';

------------------------------------------------------------------------------
-- Consumer groups and deliveries
------------------------------------------------------------------------------

CREATE TABLE wval.consumer_groups (
    group_name   text PRIMARY KEY,
    types        text[] NOT NULL,
    max_attempts integer NOT NULL CHECK (max_attempts BETWEEN 1 AND 100),
    backoff      interval NOT NULL CHECK (backoff >= interval '0'),
    visibility   interval NOT NULL CHECK (visibility > interval '0'),
    internal     boolean NOT NULL DEFAULT false,
    owner        name,
    created_by   text NOT NULL DEFAULT session_user,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE wval.consumer_groups IS 'consumer groups (wval_subscribe): the event types each receives and its retry settings';
COMMENT ON COLUMN wval.consumer_groups.types IS 'event types delivered to the group (those emitted after the subscription committed)';
COMMENT ON COLUMN wval.consumer_groups.owner IS 'the role that subscribed the group: it and its members consume, ack and nack; the group receives only events of worlds the owner may read (wval.world_grants); null for wval''s internal groups (every world, admins only)';
COMMENT ON COLUMN wval.consumer_groups.max_attempts IS 'hand-outs before an event is dead-lettered (a nack or an expired visibility timeout each count as a failed attempt)';
COMMENT ON COLUMN wval.consumer_groups.backoff IS 'a nacked event is handed out again after backoff x attempt (linear)';
COMMENT ON COLUMN wval.consumer_groups.visibility IS 'an event handed out and neither acked nor nacked within this time is handed out again';
COMMENT ON COLUMN wval.consumer_groups.internal IS 'true for wval''s own consumers, drained by wval_work() through wval.internal_handlers';
COMMENT ON COLUMN wval.consumer_groups.group_name IS 'name of the consumer group, given to wval_subscribe and passed to wval_consume, wval_ack and wval_nack';
COMMENT ON COLUMN wval.consumer_groups.created_by IS 'database login (session_user) that created the group';
COMMENT ON COLUMN wval.consumer_groups.created_at IS 'when the group was created; it receives the events emitted after this subscription committed';
COMMENT ON COLUMN wval.consumer_groups.updated_at IS 'when the group''s types or retry settings last changed';

CREATE TABLE wval.delivery_store (
    group_name  text NOT NULL,
    event_id    bigint NOT NULL,
    type        text NOT NULL,
    world_key   text NOT NULL,
    enqueued_at timestamptz NOT NULL,
    expires_at  timestamptz,
    visible_at  timestamptz NOT NULL,
    attempts    integer NOT NULL DEFAULT 0,
    handouts    integer NOT NULL DEFAULT 0,
    leased      boolean NOT NULL DEFAULT false,
    leased_at   timestamptz,
    done_at     timestamptz,
    outcome     text CHECK (outcome IN ('acked', 'expired', 'dead')),
    dead_count  integer NOT NULL DEFAULT 0,
    errors      jsonb NOT NULL DEFAULT '[]',
    CHECK ((done_at IS NULL) = (outcome IS NULL))
) WITH (fillfactor = 80);
-- Indexes.  An ack changes done_at, the predicate of the queue indexes, so
-- it is never a HOT update: its new row version gets an entry in every
-- index whose predicate it meets.  So no B-tree here covers finished
-- deliveries (but dead letters, few and waiting for an operator), and the
-- table has no primary key: an ack writes the row version and no index
-- entry.  One row per (group, event) is kept by the writers (wval._emit
-- inserts one per group for a new event_id; nothing else inserts) and, for
-- the outstanding ones, by the unique order index; a finished delivery is
-- found by key through the block-range index on event_id (deliveries are
-- written in event_id order), which an ack leaves as it is unless its row
-- version lands in another range.
CREATE INDEX deliveries_queue_idx ON wval.delivery_store (group_name, world_key, event_id) WHERE done_at IS NULL;
-- the group's outstanding events in order: wval_consume meets each world at
-- its head, oldest head first, without visiting every world
CREATE UNIQUE INDEX deliveries_order_idx ON wval.delivery_store (group_name, event_id) WHERE done_at IS NULL;
CREATE INDEX deliveries_expiry_idx ON wval.delivery_store (group_name, expires_at) WHERE done_at IS NULL AND expires_at IS NOT NULL;
CREATE INDEX deliveries_dead_idx ON wval.delivery_store (group_name, event_id) WHERE outcome = 'dead';
CREATE INDEX deliveries_event_brin ON wval.delivery_store USING brin (event_id) WITH (pages_per_range = 32, autosummarize = on);
COMMENT ON TABLE wval.delivery_store IS 'one row per (consumer group, event), written with the event: the group''s queue and its delivery state as of the last ack, nack or timeout (a hand-out in progress is kept in wval.delivery_leases; read wval.deliveries for the state with it). Operational state (not history): changed only by the wval_* bus functions';
COMMENT ON COLUMN wval.delivery_store.world_key IS 'world_id of the event, '''' for events of no world: the unit of per-world order';
COMMENT ON COLUMN wval.delivery_store.enqueued_at IS 'when the event was emitted (events.created_at)';
COMMENT ON COLUMN wval.delivery_store.visible_at IS 'as of the last ack, nack or timeout: the event may be handed out from this time on (end of a lease that timed out, or of the backoff after a nack); wval.deliveries adds the hand-out in progress';
COMMENT ON COLUMN wval.delivery_store.attempts IS 'hand-outs since the event was emitted or redriven that ended (ack, nack or timeout); wval.deliveries adds the hand-out in progress';
COMMENT ON COLUMN wval.delivery_store.handouts IS 'hand-outs in all that ended (not reset by a redrive); wval.deliveries adds the hand-out in progress';
COMMENT ON COLUMN wval.delivery_store.leased IS 'true after a hand-out timed out until the event is handed out again and acked or nacked; wval.deliveries is true as well while a hand-out is in progress';
COMMENT ON COLUMN wval.delivery_store.leased_at IS 'time of the latest hand-out that ended: equal to wval.delivery_leases.leased_at once the event''s part of that hand-out ended';
COMMENT ON COLUMN wval.delivery_store.done_at IS 'when the group finished the event (ack, expiry or dead letter); null while outstanding';
COMMENT ON COLUMN wval.delivery_store.outcome IS 'acked | expired | dead; null while outstanding';
COMMENT ON COLUMN wval.delivery_store.dead_count IS 'how often the event was dead-lettered in this group (a redriven event can die again)';
COMMENT ON COLUMN wval.delivery_store.errors IS 'array of {attempt, at, error} from nacks and visibility timeouts, and {redriven_at, by} marks';
COMMENT ON COLUMN wval.delivery_store.group_name IS 'the consumer group (wval.consumer_groups.group_name)';
COMMENT ON COLUMN wval.delivery_store.event_id IS 'the event delivered (wval.events.event_id)';
COMMENT ON COLUMN wval.delivery_store.type IS 'event type (copy of wval.events.type)';
COMMENT ON COLUMN wval.delivery_store.expires_at IS 'copy of wval.events.expires_at: not handed out after this time (outcome expired); null for events without a TTL';

CREATE TABLE wval.delivery_leases (
    group_name     text NOT NULL,
    world_key      text NOT NULL,
    first_event_id bigint NOT NULL,
    last_event_id  bigint NOT NULL,
    leased_at      timestamptz NOT NULL,
    visible_at     timestamptz NOT NULL,
    event_ids      bigint[] NOT NULL DEFAULT '{}',
    PRIMARY KEY (group_name, world_key)
);
COMMENT ON TABLE wval.delivery_leases IS 'per consumer group and world: the latest hand-out of the world''s queue (wval_consume). A hand-out writes this row only; each of its events is written (wval.delivery_store) when its part of the hand-out ends: ack, nack, or the timeout noticed by the next wval_consume of the world. Operational state, written only by wval_consume';
COMMENT ON COLUMN wval.delivery_leases.event_ids IS 'the events handed out, in order; those whose wval.delivery_store.leased_at differs from leased_at and that are not finished are still in the hand-out';
COMMENT ON COLUMN wval.delivery_leases.group_name IS 'the consumer group (wval.consumer_groups.group_name)';
COMMENT ON COLUMN wval.delivery_leases.world_key IS 'world_id of the events, '''' for events of no world (wval.deliveries.world_key)';
COMMENT ON COLUMN wval.delivery_leases.first_event_id IS 'smallest event_id leased by the latest hand-out of this world';
COMMENT ON COLUMN wval.delivery_leases.last_event_id IS 'largest event_id leased by the latest hand-out of this world';
COMMENT ON COLUMN wval.delivery_leases.leased_at IS 'time of the latest hand-out of this world';
COMMENT ON COLUMN wval.delivery_leases.visible_at IS 'end of the visibility timeout of that hand-out: after it, none of its events is in a consumer''s hands';

-- wval._in_handout(event_id, leased_at, handout_ids, handout_at): is an
-- outstanding delivery (its event_id and stored leased_at) still part of a
-- hand-out (the event_ids and leased_at of its wval.delivery_leases row)?
-- It is listed, and its part has not ended: an ack, nack or timeout sets
-- its leased_at to the hand-out's ("settled").  Null without a hand-out.
-- A plain SQL expression, inlined where it is used (no SET clause).
CREATE FUNCTION wval._in_handout(event_id bigint, leased_at timestamptz, handout_ids bigint[], handout_at timestamptz)
RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT event_id = ANY (handout_ids) AND leased_at IS DISTINCT FROM handout_at
$$;
COMMENT ON FUNCTION wval._in_handout(bigint, timestamptz, bigint[], timestamptz) IS 'true when an outstanding delivery is listed in its world''s hand-out and its part of it has not ended (its leased_at is not the hand-out''s)';
GRANT EXECUTE ON FUNCTION wval._in_handout(bigint, timestamptz, bigint[], timestamptz) TO wval_analyst;

-- wval.deliveries: the delivery state as the documented columns give it,
-- the stored state with the hand-out in progress added (an event in its
-- world's latest hand-out, not finished and not yet acked, nacked or
-- timed out: one hand-out more, leased, its lease time and visibility).
-- A hand-out writes one wval.delivery_leases row instead of a row version
-- per event (issue 13: the drain at queue speed).  With the caller's
-- rights (finish.sql), so the row-level security of both tables applies.
CREATE VIEW wval.deliveries AS
SELECT d.group_name, d.event_id, d.type, d.world_key, d.enqueued_at, d.expires_at,
       CASE WHEN h.held THEN h.visible_at ELSE d.visible_at END AS visible_at,
       d.attempts + (h.held IS NOT NULL)::integer AS attempts,
       d.handouts + (h.held IS NOT NULL)::integer AS handouts,
       d.leased OR h.held IS NOT NULL AS leased,
       CASE WHEN h.held THEN h.leased_at ELSE d.leased_at END AS leased_at,
       d.done_at, d.outcome, d.dead_count, d.errors
FROM wval.delivery_store d
LEFT JOIN LATERAL (
    SELECT true AS held, l.leased_at, l.visible_at
    FROM wval.delivery_leases l
    WHERE d.done_at IS NULL AND l.group_name = d.group_name AND l.world_key = d.world_key
      AND wval._in_handout(d.event_id, d.leased_at, l.event_ids, l.leased_at)) h ON true;
COMMENT ON VIEW wval.deliveries IS 'one row per (consumer group, event): the group''s queue, its delivery state and the raw numbers of wval.bus_health (wval.delivery_store with the hand-outs in progress of wval.delivery_leases). Operational state (not history): changed only by the wval_* bus functions';
COMMENT ON COLUMN wval.deliveries.world_key IS 'world_id of the event, '''' for events of no world: the unit of per-world order';
COMMENT ON COLUMN wval.deliveries.enqueued_at IS 'when the event was emitted (events.created_at)';
COMMENT ON COLUMN wval.deliveries.visible_at IS 'the event may be handed out from this time on (lease end, or end of the backoff after a nack)';
COMMENT ON COLUMN wval.deliveries.attempts IS 'how often the event was handed out since it was emitted or redriven';
COMMENT ON COLUMN wval.deliveries.handouts IS 'how often the event was handed out in all (not reset by a redrive): the retried counter of wval.bus_health';
COMMENT ON COLUMN wval.deliveries.leased IS 'true while the latest hand-out is neither acked nor nacked';
COMMENT ON COLUMN wval.deliveries.leased_at IS 'time of the latest hand-out';
COMMENT ON COLUMN wval.deliveries.done_at IS 'when the group finished the event (ack, expiry or dead letter); null while outstanding';
COMMENT ON COLUMN wval.deliveries.outcome IS 'acked | expired | dead; null while outstanding';
COMMENT ON COLUMN wval.deliveries.dead_count IS 'how often the event was dead-lettered in this group (a redriven event can die again)';
COMMENT ON COLUMN wval.deliveries.errors IS 'array of {attempt, at, error} from nacks and visibility timeouts, and {redriven_at, by} marks';
COMMENT ON COLUMN wval.deliveries.group_name IS 'the consumer group (wval.consumer_groups.group_name)';
COMMENT ON COLUMN wval.deliveries.event_id IS 'the event delivered (wval.events.event_id)';
COMMENT ON COLUMN wval.deliveries.type IS 'event type (copy of wval.events.type)';
COMMENT ON COLUMN wval.deliveries.expires_at IS 'copy of wval.events.expires_at: not handed out after this time (outcome expired); null for events without a TTL';

CREATE TABLE wval.bus_counters (
    group_name    text NOT NULL,
    type          text NOT NULL,
    processed     bigint NOT NULL DEFAULT 0,
    retried       bigint NOT NULL DEFAULT 0,
    dead_lettered bigint NOT NULL DEFAULT 0,
    expired       bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (group_name, type)
);
COMMENT ON TABLE wval.bus_counters IS 'totals of deliveries removed by wval_bus_prune(), so that the counters of wval.bus_health never go down';
COMMENT ON COLUMN wval.bus_counters.group_name IS 'the consumer group (wval.consumer_groups.group_name) whose pruned deliveries are counted';
COMMENT ON COLUMN wval.bus_counters.type IS 'event type of the pruned deliveries';
COMMENT ON COLUMN wval.bus_counters.processed IS 'acknowledged deliveries removed by wval_bus_prune() (added to wval.bus_health.processed)';
COMMENT ON COLUMN wval.bus_counters.retried IS 'hand-outs beyond the first of the removed deliveries (added to wval.bus_health.retried)';
COMMENT ON COLUMN wval.bus_counters.dead_lettered IS 'dead-letterings of the removed deliveries (added to wval.bus_health.dead_lettered)';
COMMENT ON COLUMN wval.bus_counters.expired IS 'removed deliveries that had expired unprocessed (added to wval.bus_health.expired)';

CREATE TABLE wval.internal_handlers (
    group_name    text NOT NULL,
    type          text NOT NULL,
    handler       text NOT NULL,
    registered_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (group_name, type)
);
COMMENT ON TABLE wval.internal_handlers IS 'wval''s own consumers: for an internal group and event type, the function wval_work() calls with the event (registered with wval._register_handler)';
COMMENT ON COLUMN wval.internal_handlers.handler IS 'signature of a function taking one wval.events argument, e.g. wval._recheck(wval.events); an error it raises nacks the event';
COMMENT ON COLUMN wval.internal_handlers.group_name IS 'the internal consumer group (wval.consumer_groups with internal = true)';
COMMENT ON COLUMN wval.internal_handlers.type IS 'the event type the handler receives';
COMMENT ON COLUMN wval.internal_handlers.registered_at IS 'when the handler was registered';

------------------------------------------------------------------------------
-- Helpers
------------------------------------------------------------------------------

-- wval._group(group_name): the consumer group, WV010 when it does not exist.
-- wval._group_access(owner): may the calling role use a group of this owner?
-- Members of the owner, wval_admin and superusers; internal groups (owner
-- null) only the latter two.
CREATE FUNCTION wval._group_access(p_owner name) RETURNS boolean
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
BEGIN
    -- plpgsql rather than sql: its plan is kept for the session instead of
    -- planned on every call (it runs on every consume and ack)
    RETURN (SELECT r.rolsuper
                OR pg_catalog.pg_has_role(r.oid, 'wval_admin', 'MEMBER')
                OR (p_owner IS NOT NULL AND EXISTS (SELECT 1 FROM pg_catalog.pg_roles o WHERE o.rolname = p_owner)
                    AND pg_catalog.pg_has_role(r.oid, p_owner, 'MEMBER'))
            FROM pg_catalog.pg_roles r WHERE r.rolname = wval._invoker());
END
$$;
COMMENT ON FUNCTION wval._group_access(name) IS 'true when the calling role may use a consumer group of this owner: a member of the owner, a wval_admin or a superuser (internal groups, owner null: the latter two)';

-- Row-level security: deliveries of worlds the caller may not read are not
-- shown; the pruned totals (not per world) only to roles that see every world.
ALTER TABLE wval.delivery_store ENABLE ROW LEVEL SECURITY;
CREATE POLICY wval_world_read ON wval.delivery_store FOR ALL USING (
    (SELECT wval._visible_worlds()) IS NULL OR world_key = '' OR world_key = ANY ((SELECT wval._visible_worlds())::text[]));
ALTER TABLE wval.bus_counters ENABLE ROW LEVEL SECURITY;
CREATE POLICY wval_world_read ON wval.bus_counters FOR ALL USING ((SELECT wval._visible_worlds()) IS NULL);
ALTER TABLE wval.delivery_leases ENABLE ROW LEVEL SECURITY;
CREATE POLICY wval_world_read ON wval.delivery_leases FOR ALL USING (
    (SELECT wval._visible_worlds()) IS NULL OR world_key = '' OR world_key = ANY ((SELECT wval._visible_worlds())::text[]));

CREATE FUNCTION wval._group(p_group text) RETURNS wval.consumer_groups
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    g wval.consumer_groups;
BEGIN
    SELECT * INTO g FROM wval.consumer_groups c WHERE c.group_name = p_group;
    -- a group the caller may not use does not exist for it
    IF NOT FOUND OR NOT wval._group_access(g.owner) THEN
        RAISE EXCEPTION 'consumer group "%" does not exist', p_group
            USING ERRCODE = 'WV010',
                  DETAIL = format('group_name is %s.', coalesce(quote_literal(p_group), 'null')),
                  HINT = 'Register it first with wval_subscribe(group_name, types); see wval.consumer_groups.';
    END IF;
    RETURN g;
END
$$;
COMMENT ON FUNCTION wval._group(text) IS 'returns a consumer group; WV010 when it does not exist or the caller may not use it (wval._group_access)';

-- wval._delivery_missing(group, event_id): raises WV010 for an event the
-- group does not hold (used after an UPDATE found no row).
CREATE FUNCTION wval._delivery_missing(p_group text, p_event_id bigint) RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, wval, pg_temp AS $$
BEGIN
    RAISE EXCEPTION 'event % is not delivered to consumer group "%"', p_event_id, p_group
        USING ERRCODE = 'WV010',
              DETAIL = format('event_id is %s, group_name is %L.', coalesce(p_event_id::text, 'null'), p_group),
              HINT = 'Pass an event_id returned by wval_consume() for this group; a group receives only the types it subscribed to, emitted after it subscribed.';
END
$$;
COMMENT ON FUNCTION wval._delivery_missing(text, bigint) IS 'raises WV010: the event is not delivered to the group';

-- wval._dead_lettered(group, event_id): emits event_dead_lettered for a
-- delivery that has just been dead-lettered (not for event_dead_lettered
-- events themselves, so that a failing dead-letter consumer cannot loop).
CREATE FUNCTION wval._dead_lettered(p_group text, p_event_id bigint) RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    d wval.deliveries;
    e wval.events;
BEGIN
    -- the delivery was dead-lettered just now (the dead-letter index)
    SELECT * INTO d FROM wval.delivery_store x WHERE x.group_name = p_group AND x.event_id = p_event_id AND x.outcome = 'dead';
    SELECT * INTO e FROM wval.events x WHERE x.event_id = p_event_id;
    IF d.type = 'event_dead_lettered' THEN
        RETURN NULL;
    END IF;
    RETURN wval._emit('event_dead_lettered', e.world_id, p_event_id::text,
                      format('event_dead_lettered:%s:%s:%s:%s', coalesce(e.world_id, '-'), p_event_id,
                             p_group, d.dead_count),
                      jsonb_build_object('group', p_group, 'event_id', p_event_id, 'type', d.type,
                                         'world_id', e.world_id, 'attempts', d.attempts,
                                         'last_error', d.errors -> -1 ->> 'error'));
END
$$;
COMMENT ON FUNCTION wval._dead_lettered(text, bigint) IS 'emits event_dead_lettered for a delivery that was just dead-lettered';

------------------------------------------------------------------------------
-- Publishing
------------------------------------------------------------------------------

-- wval._emit(type, world, subject, key, data, ttl): writes one event and its
-- deliveries and wakes listeners after commit; returns the event_id,
-- or null when the idempotency key exists (counted as a dedupe hit). C (bus.c):
-- the one emitter, which the run writer (run.c) calls directly.
CREATE FUNCTION wval._emit(p_type text, p_world_id text, p_subject text, p_idempotency_key text,
                           p_data jsonb, p_ttl interval DEFAULT NULL)
RETURNS bigint
    AS 'MODULE_PATHNAME', 'wval_emit' LANGUAGE C VOLATILE SET search_path = pg_catalog, wval, pg_temp;
COMMENT ON FUNCTION wval._emit(text, text, text, text, jsonb, interval) IS 'internal API of the bus: writes one event and one delivery per subscribed group in the caller''s transaction; listeners of wval_events get an empty NOTIFY after commit (wval._wake); null (and a dedupe hit) when the idempotency key exists';

------------------------------------------------------------------------------
-- Consumer groups
------------------------------------------------------------------------------

CREATE FUNCTION public.wval_subscribe(group_name text, types text[], max_attempts integer DEFAULT 3,
                                      backoff text DEFAULT '500ms', visibility text DEFAULT '30s')
RETURNS wval.consumer_groups
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
#variable_conflict use_column
DECLARE
    p_group text := wval._ident('group_name', wval_subscribe.group_name);
    p_types text[];
    p_backoff interval := wval._duration('backoff', wval_subscribe.backoff);
    p_visibility interval := wval._duration('visibility', wval_subscribe.visibility);
    old wval.consumer_groups;
    g wval.consumer_groups;
    lock_timeout text;
BEGIN
    IF wval_subscribe.types IS NULL OR cardinality(wval_subscribe.types) = 0
       OR EXISTS (SELECT 1 FROM unnest(wval_subscribe.types) t WHERE t IS NULL OR btrim(t) = '') THEN
        RAISE EXCEPTION 'invalid value for "types"' USING ERRCODE = '22023',
            DETAIL = format('types is %s.', coalesce(quote_literal(wval_subscribe.types::text), 'null')),
            HINT = 'Pass a non-empty array of event types, e.g. ARRAY[''evaluation_run_created''] (catalogue in docs/bus.md).';
    END IF;
    SELECT array_agg(DISTINCT t ORDER BY t) INTO p_types FROM unnest(wval_subscribe.types) t;
    IF wval_subscribe.max_attempts IS NULL OR wval_subscribe.max_attempts NOT BETWEEN 1 AND 100 THEN
        RAISE EXCEPTION 'invalid value for "max_attempts"' USING ERRCODE = '22023',
            DETAIL = format('max_attempts is %s.', coalesce(wval_subscribe.max_attempts::text, 'null')),
            HINT = 'Pass a number of attempts between 1 and 100.';
    END IF;
    -- bounded, so that backoff x attempts and the visibility deadline stay
    -- within the timestamp range
    IF p_backoff IS NULL OR p_backoff < interval '0' OR p_backoff > interval '1 day' THEN
        RAISE EXCEPTION 'invalid value for "backoff"' USING ERRCODE = '22023',
            DETAIL = format('backoff is %s.', coalesce(quote_literal(wval_subscribe.backoff), 'null')),
            HINT = 'Pass a duration from zero to 1 day, e.g. 500ms or 2s.';
    END IF;
    IF p_visibility IS NULL OR p_visibility <= interval '0' OR p_visibility > interval '1 day' THEN
        RAISE EXCEPTION 'invalid value for "visibility"' USING ERRCODE = '22023',
            DETAIL = format('visibility is %s.', coalesce(quote_literal(wval_subscribe.visibility), 'null')),
            HINT = 'Pass a positive duration of at most 1 day, e.g. 30s.';
    END IF;

    SELECT * INTO old FROM wval.consumer_groups WHERE group_name = p_group FOR UPDATE;
    IF old.group_name IS NOT NULL AND NOT old.internal AND NOT wval._group_access(old.owner) THEN
        RAISE EXCEPTION 'consumer group "%" belongs to another role', p_group USING ERRCODE = '42501',
            DETAIL = format('group_name is %L.', p_group),
            HINT = 'Choose another group name; a group is used by the role that subscribed it and its members.';
    END IF;
    IF old.internal THEN
        RAISE EXCEPTION 'consumer group "%" is internal to wval', p_group USING ERRCODE = '42501',
            DETAIL = format('group_name is %L.', p_group),
            HINT = 'Internal groups are managed by wval (wval.internal_handlers); subscribe under another name.';
    END IF;
    -- wait for transactions that are emitting, hold off new ones (file header);
    -- give up rather than stall every emitter behind a long transaction
    lock_timeout := current_setting('lock_timeout');
    BEGIN
        PERFORM set_config('lock_timeout', '5s', true);
        PERFORM pg_advisory_xact_lock(2004312428, 0);
    EXCEPTION WHEN lock_not_available THEN
        RAISE EXCEPTION 'cannot subscribe consumer group "%" while a long transaction is emitting events', p_group
            USING ERRCODE = '55P03',
                  DETAIL = 'A subscription waits for the transactions that are emitting events, and holds new emitters meanwhile; it waited 5 s.',
                  HINT = 'Retry, or end the long transaction first (pg_stat_activity shows it).';
    END;
    PERFORM set_config('lock_timeout', lock_timeout, true);
    INSERT INTO wval.consumer_groups AS c (group_name, types, max_attempts, backoff, visibility, owner)
    VALUES (p_group, p_types, wval_subscribe.max_attempts, p_backoff, p_visibility, wval._invoker())
    ON CONFLICT (group_name) DO UPDATE
        SET types = excluded.types, max_attempts = excluded.max_attempts, backoff = excluded.backoff,
            visibility = excluded.visibility, updated_at = now()
    RETURNING * INTO g;
    IF old.group_name IS NULL OR (to_jsonb(old) - 'updated_at') IS DISTINCT FROM (to_jsonb(g) - 'updated_at') THEN
        PERFORM wval._audit(NULL, CASE WHEN old.group_name IS NULL THEN 'bus_subscribed' ELSE 'bus_subscription_changed' END,
                            session_user,
                            jsonb_build_object('group_name', p_group, 'types', to_jsonb(p_types),
                                               'max_attempts', g.max_attempts, 'backoff', g.backoff::text,
                                               'visibility', g.visibility::text));
    END IF;
    RETURN g;
END
$$;
COMMENT ON FUNCTION public.wval_subscribe(text, text[], integer, text, text) IS 'registers (or changes) a consumer group: the event types it receives from now on, max_attempts before dead letter, linear backoff, visibility timeout (durations: intervals or 500ms, 30s, 5m, 1h)';

CREATE FUNCTION public.wval_subscribe(group_name text, types text[], max_attempts integer, backoff interval,
                                      visibility interval DEFAULT '30 seconds')
RETURNS wval.consumer_groups
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
    SELECT public.wval_subscribe(group_name, types, max_attempts, backoff::text, visibility::text);
$$;
COMMENT ON FUNCTION public.wval_subscribe(text, text[], integer, interval, interval) IS 'wval_subscribe with interval values for backoff and visibility';

CREATE FUNCTION public.wval_unsubscribe(group_name text) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
#variable_conflict use_column
DECLARE
    g wval.consumer_groups := wval._group(wval_unsubscribe.group_name);
    outstanding bigint;
BEGIN
    IF g.internal THEN
        RAISE EXCEPTION 'consumer group "%" is internal to wval', g.group_name USING ERRCODE = '42501',
            DETAIL = format('group_name is %L.', g.group_name),
            HINT = 'Internal groups are managed by wval and cannot be dropped.';
    END IF;
    PERFORM 1 FROM wval.consumer_groups WHERE group_name = g.group_name FOR UPDATE;
    SELECT count(*) INTO outstanding FROM wval.delivery_store WHERE group_name = g.group_name AND done_at IS NULL;
    DELETE FROM wval.delivery_store WHERE group_name = g.group_name;
    DELETE FROM wval.delivery_leases WHERE group_name = g.group_name;
    DELETE FROM wval.bus_counters WHERE group_name = g.group_name;
    DELETE FROM wval.consumer_groups WHERE group_name = g.group_name;
    PERFORM wval._audit(NULL, 'bus_unsubscribed', session_user,
                        jsonb_build_object('group_name', g.group_name, 'outstanding_dropped', outstanding));
    RETURN outstanding;
END
$$;
COMMENT ON FUNCTION public.wval_unsubscribe(text) IS 'drops a consumer group with its deliveries (audited); returns how many outstanding events it drops';

------------------------------------------------------------------------------
-- Consuming
------------------------------------------------------------------------------

-- wval._queue_scan(group, after, n): the group's next n outstanding
-- deliveries after event_id after, in event_id order, from the order index:
-- the slices wval_consume reads (bus.c reads them without this function;
-- it is here for tests and inspection).
CREATE FUNCTION wval._queue_scan(p_group text, p_after bigint, p_n integer,
                                 OUT world_key text, OUT event_id bigint, OUT visible_at timestamptz)
RETURNS SETOF record
    AS 'MODULE_PATHNAME', 'wval_queue_scan' LANGUAGE C STABLE STRICT SET search_path = pg_catalog, wval, pg_temp;
COMMENT ON FUNCTION wval._queue_scan(text, bigint, integer) IS 'the next outstanding deliveries of a consumer group after an event_id, in event_id order (wval_consume''s walk of the queue)';

-- wval._expire_due(group, t): the first step of a wval_consume() call that
-- found expired events (its probe, bus.c): those nobody holds are counted
-- as expired and acknowledged, world by world.  Generic plans: left to
-- choose, the plan cache made a custom plan of these statements on every
-- call.
CREATE FUNCTION wval._expire_due(p_group text, t timestamptz) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, wval, pg_temp SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    w record;
    l_ids bigint[];
    l_at timestamptz;
    l_vis timestamptz;
BEGIN
    FOR w IN SELECT DISTINCT x.world_key FROM wval.delivery_store x
             WHERE x.group_name = p_group AND x.done_at IS NULL
               AND x.expires_at IS NOT NULL AND x.expires_at <= t LOOP
        -- a world being handed out, acked or nacked right now is left for
        -- a later call: the world lock (the one of the hand-out, bus.c) and
        -- its lease row (locked from here to the end of the call, as a
        -- hand-out locks it)
        CONTINUE WHEN NOT pg_try_advisory_xact_lock(2004312429, hashtext(p_group || '/' || w.world_key));
        SELECT l.event_ids, l.leased_at, l.visible_at INTO l_ids, l_at, l_vis
        FROM wval.delivery_leases l
        WHERE l.group_name = p_group AND l.world_key = w.world_key
        FOR NO KEY UPDATE SKIP LOCKED;
        CONTINUE WHEN NOT FOUND AND EXISTS (SELECT 1 FROM wval.delivery_leases l
                                            WHERE l.group_name = p_group AND l.world_key = w.world_key);
        -- not in a consumer's hands: not in the world's hand-out (and not
        -- in backoff), or in it after its visibility passed (that hand-out
        -- counts); the rows where the read found them
        UPDATE wval.delivery_store d
        SET done_at = t, outcome = 'expired', leased = false,
            attempts = d.attempts + p.held::integer, handouts = d.handouts + p.held::integer,
            leased_at = CASE WHEN p.held THEN l_at ELSE d.leased_at END,
            visible_at = CASE WHEN p.held THEN l_vis ELSE d.visible_at END
        FROM (SELECT x.ctid AS tid, x.event_id,
                     coalesce(wval._in_handout(x.event_id, x.leased_at, l_ids, l_at), false) AS held
              FROM wval.delivery_store x
              WHERE x.group_name = p_group AND x.world_key = w.world_key AND x.done_at IS NULL
                AND x.expires_at IS NOT NULL AND x.expires_at <= t) p
        WHERE d.ctid = p.tid AND d.group_name = p_group AND d.event_id = p.event_id AND d.done_at IS NULL
          AND CASE WHEN p.held THEN l_vis <= t ELSE d.visible_at <= t END;
    END LOOP;
END
$$;
COMMENT ON FUNCTION wval._expire_due(text, timestamptz) IS 'wval_consume() when events of the group have expired: finishes those nobody holds as expired, world by world, skipping worlds being handed out, acked or nacked right now';

-- wval_consume(group, max): C (bus.c, "The hand-out"), since a call's
-- PL/pgSQL steps cost a third of its time.  A hand-out writes one row, the
-- world's wval.delivery_leases row (its events, time and visibility), and
-- no delivery: each event's row is written when its part of the hand-out
-- ends (wval_ack, wval_nack, or the timeout written by the next hand-out
-- of the world), and wval.deliveries shows the hand-out in progress
-- meanwhile.  A delivery row whose leased_at equals the hand-out's has had
-- its part end ("is settled").  Acks, nacks, the expiry and the hand-out
-- lock the world's lease row before they change its outstanding
-- deliveries, so a hand-out reads the queue as those left it.
CREATE FUNCTION public.wval_consume(group_name text, max integer DEFAULT 100)
RETURNS SETOF wval.events
    AS 'MODULE_PATHNAME', 'wval_consume' LANGUAGE C VOLATILE SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp;
COMMENT ON FUNCTION public.wval_consume(text, integer) IS 'hands out up to max events the group has not finished, oldest first, per-world order kept (a world''s events go to one consumer at a time); concurrent callers never get the same event';

-- wval._ack(group, ids): acknowledges the group's outstanding deliveries
-- of ids; acked: how many, unsent: one of them that was never handed out
-- (then the caller raises an error, which undoes the acks).  An event still
-- in its world's hand-out gets that hand-out written with the ack (one
-- more, its time and visibility).  C (bus.c, "The ack"): it reads the
-- worlds of the events, then their lease rows locked once per world
-- (FOR SHARE: a hand-out of the world being written now is waited for, and
-- its latest version read), then updates the deliveries.
CREATE FUNCTION wval._ack(p_group text, p_ids bigint[], OUT acked integer, OUT unsent bigint)
    AS 'MODULE_PATHNAME', 'wval_ack' LANGUAGE C VOLATILE SET search_path = pg_catalog, wval, pg_temp;
COMMENT ON FUNCTION wval._ack(text, bigint[]) IS 'acknowledges the outstanding deliveries of these events in a consumer group, writing the hand-out in progress with them; returns how many and one never handed out (an error for the caller)';

CREATE FUNCTION public.wval_ack(group_name text, event_id bigint) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
#variable_conflict use_column
DECLARE
    r record;
BEGIN
    -- a group the caller may not use does not exist for it (WV010)
    PERFORM wval._group(wval_ack.group_name);
    r := wval._ack(wval_ack.group_name, ARRAY[wval_ack.event_id]);
    IF r.acked = 1 AND r.unsent IS NULL THEN
        RETURN true;
    END IF;
    IF r.acked = 0 THEN
        PERFORM 1 FROM wval.delivery_store WHERE group_name = wval_ack.group_name AND event_id = wval_ack.event_id;
        IF NOT FOUND THEN
            PERFORM wval._delivery_missing(wval_ack.group_name, wval_ack.event_id);
        END IF;
    ELSE
        -- outstanding and never handed out (the error undoes the ack)
        RAISE EXCEPTION 'event % has not been handed out to consumer group "%"', wval_ack.event_id, wval_ack.group_name
            USING ERRCODE = '22023',
                  DETAIL = format('event_id is %s, attempts is 0.', wval_ack.event_id),
                  HINT = 'Acknowledge only events that wval_consume() returned.';
    END IF;
    RETURN false;	-- already finished (acked, expired or dead-lettered)
END
$$;
COMMENT ON FUNCTION public.wval_ack(text, bigint) IS 'acknowledges an event handed out to the group: true, or false when the group had already finished it';

CREATE FUNCTION public.wval_ack(group_name text, event_ids bigint[]) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
#variable_conflict use_column
DECLARE
    n integer;
    missing bigint;
BEGIN
    PERFORM wval._group(wval_ack.group_name);
    SELECT a.acked, a.unsent INTO n, missing FROM wval._ack(wval_ack.group_name, wval_ack.event_ids) a;
    IF missing IS NOT NULL THEN
        -- never handed out (an error, which undoes the whole call)
        PERFORM wval._delivery_missing(wval_ack.group_name, missing);
    ELSIF n < cardinality(wval_ack.event_ids) THEN
        -- some were not acknowledged now: finished before (fine), or
        -- unknown (an error)
        SELECT i INTO missing FROM unnest(wval_ack.event_ids) i
        WHERE i IS NULL OR NOT EXISTS (SELECT 1 FROM wval.delivery_store d
                                       WHERE d.group_name = wval_ack.group_name AND d.event_id = i)
        LIMIT 1;
        IF FOUND THEN
            PERFORM wval._delivery_missing(wval_ack.group_name, missing);
        END IF;
    END IF;
    RETURN n;
END
$$;
COMMENT ON FUNCTION public.wval_ack(text, bigint[]) IS 'acknowledges several handed-out events at once; returns how many were not finished before';

CREATE FUNCTION public.wval_nack(group_name text, event_id bigint, error text) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
#variable_conflict use_column
DECLARE
    g wval.consumer_groups := wval._group(wval_nack.group_name);
    d wval.delivery_store;
    t timestamptz := clock_timestamp();
    entry jsonb;
    w text;
    l_ids bigint[];
    l_at timestamptz;
BEGIN
    PERFORM wval._require_text('error', wval_nack.error, '22023', 'Say why the event could not be processed; it is kept with the dead letter.');
    -- the hand-out of the event's world, read locked as wval._ack does
    SELECT x.world_key INTO w FROM wval.delivery_store x
    WHERE x.group_name = g.group_name AND x.event_id = wval_nack.event_id AND x.done_at IS NULL;
    IF FOUND THEN
        SELECT l.event_ids, l.leased_at INTO l_ids, l_at FROM wval.delivery_leases l
        WHERE l.group_name = g.group_name AND l.world_key = w FOR SHARE;
    END IF;
    -- the outstanding delivery (the order index); when there is none, a
    -- finished one (acked by a redelivery, expired, dead) is ignored
    SELECT * INTO d FROM wval.delivery_store
    WHERE group_name = g.group_name AND event_id = wval_nack.event_id AND done_at IS NULL FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM 1 FROM wval.delivery_store WHERE group_name = g.group_name AND event_id = wval_nack.event_id;
        IF NOT FOUND THEN
            PERFORM wval._delivery_missing(g.group_name, wval_nack.event_id);
        END IF;
        RETURN 'ignored';
    END IF;
    -- still in the hand-out: it is written now
    IF wval._in_handout(d.event_id, d.leased_at, l_ids, l_at) THEN
        d.attempts := d.attempts + 1;
        d.handouts := d.handouts + 1;
        d.leased_at := l_at;
    END IF;
    IF d.attempts = 0 THEN
        RAISE EXCEPTION 'event % has not been handed out to consumer group "%"', d.event_id, d.group_name
            USING ERRCODE = '22023',
                  DETAIL = format('event_id is %s, attempts is 0.', d.event_id),
                  HINT = 'Nack only events that wval_consume() returned.';
    END IF;
    entry := jsonb_build_object('attempt', d.attempts, 'at', t, 'error', left(wval_nack.error, 2000));
    IF d.attempts >= g.max_attempts THEN
        UPDATE wval.delivery_store SET done_at = t, outcome = 'dead', leased = false,
               attempts = d.attempts, handouts = d.handouts, leased_at = d.leased_at,
               dead_count = dead_count + 1, errors = errors || jsonb_build_array(entry)
        WHERE group_name = g.group_name AND event_id = d.event_id AND done_at IS NULL;
        PERFORM wval._dead_lettered(g.group_name, d.event_id);
        RETURN 'dead_lettered';
    END IF;
    UPDATE wval.delivery_store SET visible_at = t + g.backoff * d.attempts, leased = false,
           attempts = d.attempts, handouts = d.handouts, leased_at = d.leased_at,
           errors = errors || jsonb_build_array(entry)
    WHERE group_name = g.group_name AND event_id = d.event_id AND done_at IS NULL;
    RETURN 'retry';
END
$$;
COMMENT ON FUNCTION public.wval_nack(text, bigint, text) IS 'reports a failed event: retried after backoff x attempt (returns retry), or dead-lettered after max_attempts (returns dead_lettered, emits event_dead_lettered); ignored when the group already finished it';

CREATE VIEW wval.dead_letters AS
SELECT d.group_name, d.event_id, d.attempts, d.errors, d.done_at AS dead_at,
       d.type, nullif(d.world_key, '') AS world_id, d.errors -> -1 ->> 'error' AS last_error, d.dead_count
FROM wval.delivery_store d
WHERE d.outcome = 'dead';
COMMENT ON VIEW wval.dead_letters IS 'events a group gave up on after max_attempts; wval_redrive(group_name, event_id) hands them out again';
COMMENT ON COLUMN wval.dead_letters.errors IS 'every failed attempt: {attempt, at, error}';
COMMENT ON COLUMN wval.dead_letters.dead_count IS 'how often this event died in this group (more than 1 after a redrive)';
COMMENT ON COLUMN wval.dead_letters.group_name IS 'the consumer group that gave up on the event';
COMMENT ON COLUMN wval.dead_letters.event_id IS 'the dead event (wval.events.event_id); pass it to wval_redrive';
COMMENT ON COLUMN wval.dead_letters.attempts IS 'hand-outs since the event was emitted or last redriven (reached max_attempts)';
COMMENT ON COLUMN wval.dead_letters.dead_at IS 'when the event was dead-lettered';
COMMENT ON COLUMN wval.dead_letters.type IS 'event type';
COMMENT ON COLUMN wval.dead_letters.world_id IS 'world of the event; null for events of no world';
COMMENT ON COLUMN wval.dead_letters.last_error IS 'error text of the last failed attempt (nack message or visibility timeout)';

CREATE FUNCTION public.wval_redrive(group_name text, event_id bigint DEFAULT NULL) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
#variable_conflict use_column
DECLARE
    g wval.consumer_groups := wval._group(wval_redrive.group_name);
    d wval.deliveries;
    t timestamptz := clock_timestamp();
    ids bigint[];
BEGIN
    IF wval_redrive.event_id IS NOT NULL THEN
        SELECT * INTO d FROM wval.delivery_store
        WHERE group_name = g.group_name AND event_id = wval_redrive.event_id AND outcome = 'dead' FOR UPDATE;
        IF NOT FOUND THEN
            SELECT * INTO d FROM wval.delivery_store
            WHERE group_name = g.group_name AND event_id = wval_redrive.event_id;
            IF NOT FOUND THEN
                PERFORM wval._delivery_missing(g.group_name, wval_redrive.event_id);
            END IF;
            RAISE EXCEPTION 'event % is not a dead letter of consumer group "%"', d.event_id, g.group_name
                USING ERRCODE = '22023',
                      DETAIL = format('event_id is %s, state is %s.', d.event_id, coalesce(d.outcome, 'outstanding')),
                      HINT = 'Redrive events listed in wval.dead_letters.';
        END IF;
    END IF;
    WITH r AS (
        UPDATE wval.delivery_store SET done_at = NULL, outcome = NULL, attempts = 0, leased = false, visible_at = t,
               errors = errors || jsonb_build_array(jsonb_build_object('redriven_at', t, 'by', session_user))
        WHERE group_name = g.group_name AND outcome = 'dead'
          AND (wval_redrive.event_id IS NULL OR event_id = wval_redrive.event_id)
        RETURNING event_id)
    SELECT coalesce(array_agg(r.event_id ORDER BY r.event_id), '{}') INTO ids FROM r;
    IF cardinality(ids) > 0 THEN
        PERFORM wval._audit(NULL, 'bus_redriven', session_user,
                            jsonb_build_object('group_name', g.group_name, 'event_ids', to_jsonb(ids)));
    END IF;
    RETURN cardinality(ids);
END
$$;
COMMENT ON FUNCTION public.wval_redrive(text, bigint) IS 'puts a dead-lettered event (or, with event_id null, all of the group''s dead letters) back into the group''s queue with fresh attempts; audited; returns how many';

------------------------------------------------------------------------------
-- Internal consumers (wval_work) and the pg_cron job
------------------------------------------------------------------------------

-- wval._register_handler(group, type, handler): lets a later part of wval
-- consume its own events: creates (or extends) the internal group and maps
-- the type to a function taking one wval.events.  Called by install scripts.
CREATE FUNCTION wval._register_handler(p_group text, p_type text, p_handler regprocedure,
                                       p_max_attempts integer DEFAULT 3, p_backoff interval DEFAULT '5 seconds',
                                       p_visibility interval DEFAULT '5 minutes')
RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, wval, pg_temp AS $$
BEGIN
    PERFORM wval._ident('group_name', p_group);
    PERFORM wval._require_text('type', p_type);
    IF (SELECT p.pronargs <> 1 OR p.proargtypes[0] <> 'wval.events'::regtype FROM pg_proc p WHERE p.oid = p_handler) THEN
        RAISE EXCEPTION 'invalid value for "handler"' USING ERRCODE = '22023',
            DETAIL = format('handler is %s.', p_handler),
            HINT = 'A handler takes exactly one argument of type wval.events.';
    END IF;
    IF EXISTS (SELECT 1 FROM wval.consumer_groups g WHERE g.group_name = p_group AND NOT g.internal) THEN
        RAISE EXCEPTION 'consumer group "%" is not internal', p_group USING ERRCODE = '22023',
            DETAIL = format('group_name is %L.', p_group),
            HINT = 'Register internal handlers under a group name no client uses.';
    END IF;
    PERFORM pg_advisory_xact_lock(2004312428, 0);
    INSERT INTO wval.consumer_groups AS g (group_name, types, max_attempts, backoff, visibility, internal)
    VALUES (p_group, ARRAY[p_type], p_max_attempts, p_backoff, p_visibility, true)
    ON CONFLICT (group_name) DO UPDATE
        SET types = ARRAY(SELECT DISTINCT u FROM unnest(g.types || excluded.types) u ORDER BY u),
            updated_at = now();
    INSERT INTO wval.internal_handlers AS h (group_name, type, handler)
    VALUES (p_group, p_type, p_handler::text)
    ON CONFLICT (group_name, type) DO UPDATE SET handler = excluded.handler, registered_at = now();
END
$$;
COMMENT ON FUNCTION wval._register_handler(text, text, regprocedure, integer, interval, interval) IS 'registers an internal consumer: wval_work() calls handler(event) for events of this type in this internal group';

-- wval._work(max_events, max_ms): the body of wval_work, returning what it did.
CREATE FUNCTION wval._work(p_max_events integer, p_max_ms integer) RETURNS jsonb
LANGUAGE plpgsql SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    deadline timestamptz;
    left_events integer := p_max_events;
    grp text;
    e wval.events;
    h text;
    got integer;
    ok integer := 0;
    failed integer := 0;
BEGIN
    IF p_max_events IS NULL OR p_max_events < 1 THEN
        RAISE EXCEPTION 'invalid value for "max_events"' USING ERRCODE = '22023',
            DETAIL = format('max_events is %s.', coalesce(p_max_events::text, 'null')),
            HINT = 'Pass a positive number of events.';
    END IF;
    IF p_max_ms IS NULL OR p_max_ms < 1 THEN
        RAISE EXCEPTION 'invalid value for "max_ms"' USING ERRCODE = '22023',
            DETAIL = format('max_ms is %s.', coalesce(p_max_ms::text, 'null')),
            HINT = 'Pass a positive number of milliseconds.';
    END IF;
    deadline := clock_timestamp() + p_max_ms * interval '1 millisecond';
    <<groups>>
    FOR grp IN SELECT g.group_name FROM wval.consumer_groups g WHERE g.internal ORDER BY g.group_name LOOP
        LOOP
            EXIT groups WHEN left_events <= 0 OR clock_timestamp() >= deadline;
            got := 0;
            FOR e IN SELECT * FROM public.wval_consume(grp, least(left_events, 20)) LOOP
                got := got + 1;
                left_events := left_events - 1;
                SELECT ih.handler INTO h FROM wval.internal_handlers ih
                WHERE ih.group_name = grp AND ih.type = e.type;
                BEGIN
                    IF h IS NULL THEN
                        RAISE EXCEPTION 'no internal handler for event type "%" in group "%"', e.type, grp
                            USING ERRCODE = 'WV010';
                    END IF;
                    EXECUTE format('SELECT %s($1)', h::regprocedure::oid::regproc) USING e;
                    PERFORM public.wval_ack(grp, e.event_id);
                    ok := ok + 1;
                EXCEPTION WHEN OTHERS THEN
                    PERFORM public.wval_nack(grp, e.event_id, SQLSTATE || ': ' || SQLERRM);
                    failed := failed + 1;
                END;
            END LOOP;
            EXIT WHEN got = 0;
        END LOOP;
    END LOOP;
    RETURN jsonb_build_object('processed', ok, 'failed', failed);
END
$$;
COMMENT ON FUNCTION wval._work(integer, integer) IS 'drains wval''s internal consumer groups through their handlers (at most max_events events, stops starting batches after max_ms); returns {processed, failed}';

CREATE PROCEDURE public.wval_work(max_events integer DEFAULT 1000, max_ms integer DEFAULT 10000)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    report jsonb := wval._work(max_events, max_ms);
BEGIN
    RAISE DEBUG 'wval_work: %', report;
END
$$;
COMMENT ON PROCEDURE public.wval_work(integer, integer) IS 'drains wval''s internal consumer groups (hub re-checks, policy-change re-checks) in the caller''s transaction: at most max_events events, no new batch after max_ms; run every minute by the pg_cron job wval:bus-worker';

CREATE FUNCTION public.wval_schedule_bus_worker(schedule text DEFAULT '* * * * *', max_events integer DEFAULT 1000,
                                                max_ms integer DEFAULT 10000)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    job bigint;
BEGIN
    PERFORM wval._require_text('schedule', schedule);
    IF max_events IS NULL OR max_events < 1 OR max_ms IS NULL OR max_ms < 1 THEN
        RAISE EXCEPTION 'invalid value for "%"', CASE WHEN max_events IS NULL OR max_events < 1 THEN 'max_events' ELSE 'max_ms' END
            USING ERRCODE = '22023',
                  DETAIL = format('max_events is %s, max_ms is %s.', coalesce(max_events::text, 'null'), coalesce(max_ms::text, 'null')),
                  HINT = 'Pass positive numbers.';
    END IF;
    RETURN wval._cron_schedule('bus-worker', schedule, format('CALL public.wval_work(%s, %s)', max_events, max_ms));
END
$$;
COMMENT ON FUNCTION public.wval_schedule_bus_worker(text, integer, integer) IS 'schedules (or reschedules) the pg_cron job wval:bus-worker that runs CALL wval_work(max_events, max_ms); WV010 with set-up instructions when pg_cron is missing';

CREATE FUNCTION public.wval_unschedule_bus_worker() RETURNS boolean
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
    SELECT public.wval_unschedule('wval:bus-worker');
$$;
COMMENT ON FUNCTION public.wval_unschedule_bus_worker() IS 'removes the pg_cron job wval:bus-worker; false when it was not scheduled';

------------------------------------------------------------------------------
-- Health
------------------------------------------------------------------------------

CREATE VIEW wval.bus_health AS
WITH d AS (
    SELECT x.group_name, x.type,
           count(*) FILTER (WHERE x.done_at IS NULL) AS backlog,
           count(*) FILTER (WHERE x.done_at IS NULL AND x.leased AND x.visible_at > now()) AS in_flight,
           min(x.enqueued_at) FILTER (WHERE x.done_at IS NULL) AS oldest_unacked,
           count(*) FILTER (WHERE x.outcome = 'acked') AS processed,
           sum(greatest(x.handouts - 1, 0)) AS retried,
           sum(x.dead_count) AS dead_lettered,
           count(*) FILTER (WHERE x.outcome = 'dead') AS dead_letters,
           count(*) FILTER (WHERE x.outcome = 'expired') AS expired,
           avg(extract(epoch FROM x.done_at - x.enqueued_at) * 1000)
               FILTER (WHERE x.outcome = 'acked' AND x.done_at > now() - interval '1 hour') AS latency_avg_ms,
           percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM x.done_at - x.enqueued_at) * 1000)
               FILTER (WHERE x.outcome = 'acked' AND x.done_at > now() - interval '1 hour') AS latency_p95_ms,
           max(x.done_at) FILTER (WHERE x.outcome = 'acked') AS last_ack_at
    FROM wval.deliveries x
    GROUP BY x.group_name, x.type),
keys AS (
    SELECT g.group_name, t.type FROM wval.consumer_groups g, unnest(g.types) t(type)
    UNION SELECT d.group_name, d.type FROM d
    UNION SELECT c.group_name, c.type FROM wval.bus_counters c),
dedupe AS (
    SELECT h.type, sum(h.hits) AS hits FROM wval.event_dedupe_hits h GROUP BY h.type)
SELECT k.group_name, k.type,
       coalesce(d.backlog, 0) AS backlog,
       coalesce(d.in_flight, 0) AS in_flight,
       now() - d.oldest_unacked AS oldest_unacked_age,
       (coalesce(d.processed, 0) + coalesce(c.processed, 0))::bigint AS processed,
       (coalesce(d.retried, 0) + coalesce(c.retried, 0))::bigint AS retried,
       (coalesce(d.dead_lettered, 0) + coalesce(c.dead_lettered, 0))::bigint AS dead_lettered,
       coalesce(d.dead_letters, 0) AS dead_letters,
       coalesce(dd.hits, 0)::bigint AS dedupe_hits,
       (coalesce(d.expired, 0) + coalesce(c.expired, 0))::bigint AS expired,
       round(d.latency_avg_ms::numeric, 3) AS latency_avg_ms,
       round(d.latency_p95_ms::numeric, 3) AS latency_p95_ms,
       d.last_ack_at
FROM keys k
LEFT JOIN d ON d.group_name = k.group_name AND d.type = k.type
LEFT JOIN wval.bus_counters c ON c.group_name = k.group_name AND c.type = k.type
LEFT JOIN dedupe dd ON dd.type = k.type;
COMMENT ON VIEW wval.bus_health IS 'per consumer group and event type: backlog, in flight, age of the oldest unacked event, processed, retried, dead-lettered, open dead letters, dedupe hits, expired, processing latency (enqueue -> ack) over the last hour';
COMMENT ON COLUMN wval.bus_health.backlog IS 'events the group has not finished (waiting, in flight or in backoff)';
COMMENT ON COLUMN wval.bus_health.in_flight IS 'events handed out whose visibility timeout has not passed';
COMMENT ON COLUMN wval.bus_health.oldest_unacked_age IS 'now() minus the enqueue time of the oldest unfinished event; null when the backlog is empty';
COMMENT ON COLUMN wval.bus_health.processed IS 'events acknowledged (counter)';
COMMENT ON COLUMN wval.bus_health.retried IS 'hand-outs beyond the first (after a nack or a visibility timeout) (counter)';
COMMENT ON COLUMN wval.bus_health.dead_lettered IS 'times an event was dead-lettered (counter)';
COMMENT ON COLUMN wval.bus_health.dead_letters IS 'dead letters currently waiting for an operator (wval.dead_letters)';
COMMENT ON COLUMN wval.bus_health.dedupe_hits IS 'publishes of this type that were no-ops because the idempotency key existed (per type, all groups) (counter)';
COMMENT ON COLUMN wval.bus_health.expired IS 'events not handed out because their TTL had passed (counter)';
COMMENT ON COLUMN wval.bus_health.latency_avg_ms IS 'average enqueue -> ack time of the events acknowledged in the last hour, in milliseconds';
COMMENT ON COLUMN wval.bus_health.latency_p95_ms IS '95th percentile of enqueue -> ack time over the last hour, in milliseconds';
COMMENT ON COLUMN wval.bus_health.group_name IS 'the consumer group (wval.consumer_groups.group_name)';
COMMENT ON COLUMN wval.bus_health.type IS 'event type subscribed or delivered to the group';
COMMENT ON COLUMN wval.bus_health.last_ack_at IS 'when the group last acknowledged an event of this type; null when it never did (or those deliveries were pruned)';

------------------------------------------------------------------------------
-- Pruning
------------------------------------------------------------------------------

CREATE FUNCTION public.wval_bus_prune(older_than interval DEFAULT '7 days', include_dead_letters boolean DEFAULT false)
RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    cutoff timestamptz;
    hi bigint;
    tids tid[];
    ppr integer;
    n_deliveries bigint;
    n_events bigint;
    report jsonb;
BEGIN
    IF older_than IS NULL OR older_than < interval '0' THEN
        RAISE EXCEPTION 'invalid value for "older_than"' USING ERRCODE = '22023',
            DETAIL = format('older_than is %s.', coalesce(older_than::text, 'null')),
            HINT = 'Pass a period of zero or more, e.g. ''7 days''.';
    END IF;
    BEGIN
        cutoff := now() - older_than;
    EXCEPTION WHEN datetime_field_overflow THEN
        -- a period longer than the timestamp range: nothing is that old
        cutoff := '-infinity';
    END;
    -- The deliveries of the events old enough, read once: they are those
    -- up to the newest such event_id (deliveries carry their event's time,
    -- enqueued_at; wval.delivery_store has no B-tree over finished rows, and the
    -- block-range index on event_id reads just the old part of the table).
    -- Per event: does some group still owe it (outstanding, finished within
    -- the period, or a dead letter unless asked)?  Those no group owes go,
    -- each delivery where the read found it.
    hi := (SELECT max(e.event_id) FROM wval.events e WHERE e.created_at < cutoff);
    WITH x AS (
        SELECT d.ctid AS tid, d.event_id,
               d.done_at IS NULL OR d.done_at >= cutoff OR d.enqueued_at >= cutoff
               OR (d.outcome = 'dead' AND NOT coalesce(include_dead_letters, false)) AS owed
        FROM wval.delivery_store d
        WHERE d.event_id <= hi AND d.group_name IN (SELECT cg.group_name FROM wval.consumer_groups cg)),
    v AS (
        SELECT x.event_id, bool_or(x.owed) AS owed, array_agg(x.tid) AS tids FROM x GROUP BY x.event_id)
    SELECT coalesce(array_agg(t.tid), '{}') INTO tids
    FROM v CROSS JOIN LATERAL unnest(v.tids) t(tid)
    WHERE NOT v.owed;
    -- fold the counters first; DELETE re-checks each row it locks, so a
    -- delivery redriven meanwhile stays (and so does its event, below)
    WITH gone AS (
        DELETE FROM wval.delivery_store d
        WHERE d.ctid = ANY (tids) AND d.event_id <= hi AND d.done_at IS NOT NULL AND d.done_at < cutoff
          AND (d.outcome <> 'dead' OR coalesce(include_dead_letters, false))
        RETURNING d.*),
    folded AS (
        INSERT INTO wval.bus_counters AS c (group_name, type, processed, retried, dead_lettered, expired)
        SELECT g.group_name, g.type, count(*) FILTER (WHERE g.outcome = 'acked'),
               sum(greatest(g.handouts - 1, 0)), sum(g.dead_count), count(*) FILTER (WHERE g.outcome = 'expired')
        FROM gone g GROUP BY g.group_name, g.type
        ON CONFLICT (group_name, type) DO UPDATE
            SET processed = c.processed + excluded.processed, retried = c.retried + excluded.retried,
                dead_lettered = c.dead_lettered + excluded.dead_lettered, expired = c.expired + excluded.expired
        RETURNING 1)
    SELECT count(*) INTO n_deliveries FROM gone;
    -- The block ranges the prune emptied (in part) lose their summary, and
    -- the next vacuum summarizes them afresh from what is left.  Otherwise
    -- the rows later written into the freed space (new events) would widen
    -- the old summaries until a lookup by event_id read every range.
    IF n_deliveries > 0 THEN
        ppr := coalesce((SELECT o.option_value::integer
                         FROM pg_catalog.pg_class c, pg_catalog.pg_options_to_table(c.reloptions) o
                         WHERE c.oid = 'wval.deliveries_event_brin'::regclass AND o.option_name = 'pages_per_range'), 128);
        PERFORM pg_catalog.brin_desummarize_range('wval.deliveries_event_brin'::regclass, r.blk * ppr)
        FROM (SELECT DISTINCT ((t.tid::text::point)[0])::bigint / ppr AS blk FROM unnest(tids) t(tid)) r;
    END IF;

    -- the events old enough that have no delivery left (a second read of
    -- the old part of the deliveries)
    PERFORM wval._purge_guard(true);
    DELETE FROM wval.events e
    WHERE e.event_id = ANY (ARRAY(
        SELECT o.event_id FROM wval.events o WHERE o.created_at < cutoff
        EXCEPT
        SELECT d.event_id FROM wval.delivery_store d
        WHERE d.event_id <= hi AND d.group_name IN (SELECT cg.group_name FROM wval.consumer_groups cg)));
    GET DIAGNOSTICS n_events = ROW_COUNT;
    PERFORM wval._purge_guard(false);

    report := jsonb_build_object('older_than', older_than::text, 'cutoff', cutoff,
                                 'events_deleted', n_events, 'deliveries_deleted', n_deliveries,
                                 'include_dead_letters', coalesce(include_dead_letters, false),
                                 'oldest_kept', (SELECT min(e.created_at) FROM wval.events e));
    PERFORM wval._audit(NULL, 'bus_pruned', current_user, report);
    RETURN report;
END
$$;
COMMENT ON FUNCTION public.wval_bus_prune(interval, boolean) IS 'removes events older than older_than that every subscribed group has finished (acked or expired; dead letters only with include_dead_letters), with their deliveries; folds their counts into wval.bus_counters; audited; returns a report';

------------------------------------------------------------------------------
-- pg_dump, privileges
------------------------------------------------------------------------------

SELECT pg_catalog.pg_extension_config_dump('wval.events', '');
SELECT pg_catalog.pg_extension_config_dump('wval.events_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('wval.event_dedupe_hits', '');
SELECT pg_catalog.pg_extension_config_dump('wval.consumer_groups', 'WHERE NOT internal');
SELECT pg_catalog.pg_extension_config_dump('wval.delivery_store', '');
SELECT pg_catalog.pg_extension_config_dump('wval.delivery_leases', '');
SELECT pg_catalog.pg_extension_config_dump('wval.bus_counters', '');

GRANT SELECT ON wval.events, wval.event_dedupe_hits, wval.consumer_groups, wval.deliveries, wval.delivery_store, wval.delivery_leases,
      wval.bus_counters, wval.internal_handlers, wval.dead_letters, wval.bus_health
   TO wval_analyst;
GRANT EXECUTE ON FUNCTION public.wval_subscribe(text, text[], integer, text, text),
      public.wval_subscribe(text, text[], integer, interval, interval),
      public.wval_consume(text, integer),
      public.wval_ack(text, bigint), public.wval_ack(text, bigint[]),
      public.wval_nack(text, bigint, text)
   TO wval_producer;
GRANT EXECUTE ON FUNCTION public.wval_unsubscribe(text), public.wval_redrive(text, bigint),
      public.wval_bus_prune(interval, boolean),
      public.wval_schedule_bus_worker(text, integer, integer), public.wval_unschedule_bus_worker()
   TO wval_admin;
GRANT EXECUTE ON PROCEDURE public.wval_work(integer, integer) TO wval_admin;
