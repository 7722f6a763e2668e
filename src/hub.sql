-- hub.sql: the risk hub (docs/risk-hub.md), next to hub.c.
--
-- Producers are registered per world (wval.producers, append-only and
-- hash-chained: the latest row per world and actor is in force).  A
-- snapshot is checked in C (wval_snapshot_publish), stored in its canonical
-- form (wval.risk_snapshots.payload, hash recheckable in SQL), with large
-- parts moved to wval.blobs, and announced with risk_snapshot_updated.
-- Reads follow; the portfolio baseline (wval_portfolio_risk) is in
-- portfolio.sql.  docs/risk-hub.md is the guide.
--
-- requires: store

------------------------------------------------------------------------------
-- Producers
------------------------------------------------------------------------------

CREATE SEQUENCE wval.producers_id_seq;
CREATE TABLE wval.producers (
    registration_id bigint NOT NULL DEFAULT nextval('wval.producers_id_seq'),
    world_id        text NOT NULL,
    actor           text NOT NULL,
    status          text NOT NULL CHECK (status IN ('active', 'revoked')),
    hmac_key        bytea CHECK (hmac_key IS NULL OR (status = 'active' AND length(hmac_key) >= 16)),
    reason          text,
    registered_by   text NOT NULL,
    registered_at   timestamptz NOT NULL DEFAULT now(),
    chain_seq       bigint NOT NULL,
    prev_hash       text NOT NULL,
    row_hash        text NOT NULL,
    PRIMARY KEY (world_id, registration_id)
);
SELECT wval._secure('wval.producers');
ALTER SEQUENCE wval.producers_id_seq OWNED BY wval.producers.registration_id;
CREATE INDEX ON wval.producers (world_id, actor, registration_id DESC);
COMMENT ON TABLE wval.producers IS 'who may publish risk snapshots to a world: one row per registration or revocation; the latest row per (world_id, actor) is in force';
COMMENT ON COLUMN wval.producers.status IS 'active (may publish) | revoked';
COMMENT ON COLUMN wval.producers.hmac_key IS 'secret of the producer (>= 16 bytes); when set, every snapshot must carry signature = hex HMAC-SHA256 of its signed message (wval_snapshot_signed_message: world, actor, stage and canonical text). Not readable by wval_analyst';
COMMENT ON COLUMN wval.producers.reason IS 'why the registration was revoked';
COMMENT ON COLUMN wval.producers.registered_by IS 'the database user who registered or revoked';
COMMENT ON COLUMN wval.producers.registration_id IS 'number of the row (sequence wval.producers_id_seq); the latest per (world_id, actor) is in force';
COMMENT ON COLUMN wval.producers.world_id IS 'the world (wval.worlds.world_id) the producer may publish to';
COMMENT ON COLUMN wval.producers.actor IS 'the producer''s name, as given in every snapshot''s actor field';
COMMENT ON COLUMN wval.producers.registered_at IS 'when the registration or revocation was recorded';
COMMENT ON COLUMN wval.producers.chain_seq IS 'position of the row in its world''s hash chain, shared by every chained table of the world (1, 2, 3 ... without gaps; in a world with settings.chain_lanes > 1, lane k counts from k * 2^40 + 1); set by the chain trigger';
COMMENT ON COLUMN wval.producers.prev_hash IS 'row_hash of the previous link of the same world''s chain (in any table; in the same lane); ''sha256:'' and 64 zeros for a world''s first link';
COMMENT ON COLUMN wval.producers.row_hash IS '''sha256:'' || hex of sha256 over prev_hash, table name, chain_seq and the row''s canonical text, newline-separated (docs/store.md); recomputed by wval_verify_chain';
SELECT wval._protect('wval.producers', 'producers');

CREATE VIEW wval.current_producers AS
SELECT DISTINCT ON (p.world_id, p.actor)
       p.world_id, p.actor, p.status, p.hmac_key IS NOT NULL AS has_key, p.reason,
       p.registration_id, p.registered_by, p.registered_at
FROM wval.producers p
WHERE (SELECT wval._visible_worlds()) IS NULL OR p.world_id = ANY ((SELECT wval._visible_worlds())::text[])
ORDER BY p.world_id, p.actor, p.registration_id DESC;
COMMENT ON VIEW wval.current_producers IS 'the registration in force for each (world, actor) of the worlds the caller may see: status and whether signatures are required (never the key)';
COMMENT ON COLUMN wval.current_producers.world_id IS 'the world (wval.worlds.world_id) the producer may publish to';
COMMENT ON COLUMN wval.current_producers.actor IS 'the producer''s name, as given in every snapshot''s actor field';
COMMENT ON COLUMN wval.current_producers.status IS 'active (may publish) | revoked';
COMMENT ON COLUMN wval.current_producers.has_key IS 'true when the registration carries an HMAC key, so every snapshot of this producer must be signed; the key itself is never shown';
COMMENT ON COLUMN wval.current_producers.reason IS 'why the registration was revoked; null while active';
COMMENT ON COLUMN wval.current_producers.registration_id IS 'number of the row (sequence wval.producers_id_seq); the latest per (world_id, actor) is in force';
COMMENT ON COLUMN wval.current_producers.registered_by IS 'the database user who registered or revoked';
COMMENT ON COLUMN wval.current_producers.registered_at IS 'when the registration or revocation was recorded';

------------------------------------------------------------------------------
-- Blobs and snapshots
------------------------------------------------------------------------------

CREATE TABLE wval.blobs (
    world_id   text NOT NULL,
    blob_hash  text NOT NULL CHECK (blob_hash ~ '^sha256:[0-9a-f]{64}$'),
    kind       text NOT NULL CHECK (kind IN ('covariance', 'realized_returns', 'stress')),
    content    jsonb NOT NULL,
    size_bytes integer NOT NULL,
    created_by text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (world_id, blob_hash)
);
SELECT wval._secure('wval.blobs');
COMMENT ON TABLE wval.blobs IS 'large snapshot parts, content-addressed per world: blob_hash = ''sha256:'' || hex(sha256(content::text)); identical parts are stored once';
COMMENT ON COLUMN wval.blobs.blob_hash IS 'sha256:<hex> of the UTF-8 jsonb text of content; a snapshot refers to it as wval-blob:sha256:<hex>';
COMMENT ON COLUMN wval.blobs.kind IS 'covariance | realized_returns | stress';
COMMENT ON COLUMN wval.blobs.size_bytes IS 'length of the jsonb text of content';
COMMENT ON COLUMN wval.blobs.created_by IS 'actor of the snapshot that stored the blob first';
COMMENT ON COLUMN wval.blobs.world_id IS 'the world (wval.worlds.world_id) that stored the blob; blobs are not shared between worlds';
COMMENT ON COLUMN wval.blobs.content IS 'the offloaded snapshot part (covariance matrix, realized returns or stress results) as jsonb';
COMMENT ON COLUMN wval.blobs.created_at IS 'when the blob was first stored';
SELECT wval._protect('wval.blobs');

CREATE SEQUENCE wval.risk_snapshots_id_seq;
CREATE TABLE wval.risk_snapshots (
    snapshot_id bigint NOT NULL DEFAULT nextval('wval.risk_snapshots_id_seq'),
    world_id    text NOT NULL,
    version     text NOT NULL,
    hash        text NOT NULL,
    payload     jsonb NOT NULL,
    actor       text NOT NULL,
    stage       wval.stage NOT NULL,
    as_of       timestamptz NOT NULL,
    ttl_sec     integer NOT NULL CHECK (ttl_sec BETWEEN 1 AND 86400),
    received_at timestamptz NOT NULL,
    signed      boolean NOT NULL DEFAULT false,
    blob_refs   text[] NOT NULL DEFAULT '{}',
    chain_seq   bigint NOT NULL,
    prev_hash   text NOT NULL,
    row_hash    text NOT NULL,
    PRIMARY KEY (world_id, snapshot_id),
    UNIQUE (world_id, version)
);
SELECT wval._secure('wval.risk_snapshots');
ALTER SEQUENCE wval.risk_snapshots_id_seq OWNED BY wval.risk_snapshots.snapshot_id;
CREATE INDEX ON wval.risk_snapshots (world_id, as_of DESC);
CREATE INDEX ON wval.risk_snapshots (world_id, stage, as_of DESC);
COMMENT ON TABLE wval.risk_snapshots IS 'every accepted risk snapshot in its canonical form; append-only, hash-chained; (world_id, version) is its identity';
COMMENT ON COLUMN wval.risk_snapshots.hash IS '''sha256:'' || encode(sha256(convert_to(payload::text, ''UTF8'')), ''hex'')';
COMMENT ON COLUMN wval.risk_snapshots.payload IS 'the contract fields as published, without hash, large parts replaced by *_ref blob references (the canonical form)';
COMMENT ON COLUMN wval.risk_snapshots.actor IS 'the registered producer that published it';
COMMENT ON COLUMN wval.risk_snapshots.stage IS 'backtest | paper | shadow | live: the portfolio the snapshot describes';
COMMENT ON COLUMN wval.risk_snapshots.as_of IS 'the time the snapshot describes (payload.as_of)';
COMMENT ON COLUMN wval.risk_snapshots.ttl_sec IS 'seconds after as_of within which the snapshot had to arrive (payload.ttl_sec, default 10)';
COMMENT ON COLUMN wval.risk_snapshots.received_at IS 'when the hub accepted it (clock time at the start of the publish call)';
COMMENT ON COLUMN wval.risk_snapshots.signed IS 'true when an HMAC signature was verified against the producer''s key';
COMMENT ON COLUMN wval.risk_snapshots.blob_refs IS 'the wval-blob references of the payload (offloaded or referenced parts)';
COMMENT ON COLUMN wval.risk_snapshots.snapshot_id IS 'number of the snapshot (sequence wval.risk_snapshots_id_seq)';
COMMENT ON COLUMN wval.risk_snapshots.world_id IS 'the world (wval.worlds.world_id)';
COMMENT ON COLUMN wval.risk_snapshots.version IS 'the producer''s version label (non-empty, at most 200 bytes); (world_id, version) identifies the snapshot';
COMMENT ON COLUMN wval.risk_snapshots.chain_seq IS 'position of the row in its world''s hash chain, shared by every chained table of the world (1, 2, 3 ... without gaps; in a world with settings.chain_lanes > 1, lane k counts from k * 2^40 + 1); set by the chain trigger';
COMMENT ON COLUMN wval.risk_snapshots.prev_hash IS 'row_hash of the previous link of the same world''s chain (in any table; in the same lane); ''sha256:'' and 64 zeros for a world''s first link';
COMMENT ON COLUMN wval.risk_snapshots.row_hash IS '''sha256:'' || hex of sha256 over prev_hash, table name, chain_seq and the row''s canonical text, newline-separated (docs/store.md); recomputed by wval_verify_chain';
SELECT wval._protect('wval.risk_snapshots', 'risk_snapshots');

------------------------------------------------------------------------------
-- Counters (see hub.c for why rejections are counted with sequences)
------------------------------------------------------------------------------

CREATE TABLE wval.snapshot_counters (
    world_id   text NOT NULL,
    stage      wval.stage NOT NULL,
    shard      smallint NOT NULL,
    processed  bigint NOT NULL DEFAULT 0,
    dedupe     bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (world_id, stage, shard)
);
SELECT wval._secure('wval.snapshot_counters');
COMMENT ON TABLE wval.snapshot_counters IS 'accepted publishes and dedupe hits per world and stage, spread over 16 rows (shard = backend id % 16) so that concurrent publishers do not queue on one row; sum over shard, or read wval.snapshot_stats';
COMMENT ON COLUMN wval.snapshot_counters.processed IS 'snapshots accepted and stored';
COMMENT ON COLUMN wval.snapshot_counters.dedupe IS 'identical retries answered with the stored snapshot';
COMMENT ON COLUMN wval.snapshot_counters.world_id IS 'the world (wval.worlds.world_id)';
COMMENT ON COLUMN wval.snapshot_counters.stage IS 'backtest | paper | shadow | live';
COMMENT ON COLUMN wval.snapshot_counters.shard IS 'backend id % 16 of the publisher; sum over shards';
COMMENT ON COLUMN wval.snapshot_counters.updated_at IS 'when the row last counted a publish';

CREATE SEQUENCE wval.snapshot_rejects_unattributed;
COMMENT ON SEQUENCE wval.snapshot_rejects_unattributed IS 'rejected publishes that name no existing world (nextval survives the rollback of the rejected call)';

------------------------------------------------------------------------------
-- C entry points (hub.c)
------------------------------------------------------------------------------

CREATE FUNCTION wval._snapshot_counter_name(world_id text, stage text, outcome text) RETURNS text
    AS 'MODULE_PATHNAME', 'wval_snapshot_counter_name' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION wval._snapshot_counter_name(text, text, text) IS 'name of the sequence in schema wval that counts rejected publishes (outcome expired | failed) of a world and stage';

CREATE FUNCTION wval._snapshot_max_age() RETURNS interval
    AS 'MODULE_PATHNAME', 'wval_snapshot_max_age' LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION wval._snapshot_max_age() IS 'the setting wval.snapshot_max_age as an interval';

CREATE FUNCTION public.wval_snapshot_publish(world_id text, snapshot jsonb, actor text, stage text,
                                             signature text DEFAULT NULL)
RETURNS wval.risk_snapshots
    AS 'MODULE_PATHNAME', 'wval_snapshot_publish'
    LANGUAGE C VOLATILE SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp;
COMMENT ON FUNCTION public.wval_snapshot_publish(text, jsonb, text, text, text) IS 'checks a risk snapshot against the contract (WV004-WV007, WV009, WV010), stores it in canonical form and emits risk_snapshot_updated; an identical retry returns the stored row';

CREATE FUNCTION public.wval_snapshot_canonical(world_id text, snapshot jsonb) RETURNS text
    AS 'MODULE_PATHNAME', 'wval_snapshot_canonical'
    LANGUAGE C STABLE SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp;
COMMENT ON FUNCTION public.wval_snapshot_canonical(text, jsonb) IS 'the canonical text of a snapshot (what its hash covers; the HMAC signs wval_snapshot_signed_message), after offloading; checks the contract fields but stores nothing';

CREATE FUNCTION public.wval_snapshot_signed_message(world_id text, snapshot jsonb, actor text, stage text) RETURNS text
    AS 'MODULE_PATHNAME', 'wval_snapshot_signed_message'
    LANGUAGE C STABLE SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp;
COMMENT ON FUNCTION public.wval_snapshot_signed_message(text, jsonb, text, text) IS 'the message a keyed producer signs (hex HMAC-SHA256 of its UTF-8 bytes): ''wval-snapshot-signature-v1'', world_id, actor and stage, one line each, then the canonical text; checks the arguments and contract fields but stores nothing';

------------------------------------------------------------------------------
-- Per-world rejection counters: created with the world
------------------------------------------------------------------------------

-- wval._snapshot_counters_create(world_id): the world's sequences that count
-- rejected publishes per stage (expired, failed; an invalid stage argument
-- counts as failed under stage 'invalid').  Owned by a column of
-- wval.snapshot_counters, so DROP EXTENSION removes them.  Runs again for
-- every world restored by pg_restore (the trigger below fires on its COPY).
CREATE FUNCTION wval._snapshot_counters_create(p_world_id text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    st text;
    outcome text;
    seq text;
BEGIN
    FOREACH st IN ARRAY wval._stages() || 'invalid'::text LOOP
        FOREACH outcome IN ARRAY ARRAY['expired', 'failed'] LOOP
            CONTINUE WHEN st = 'invalid' AND outcome = 'expired';
            seq := wval._snapshot_counter_name(p_world_id, st, outcome);
            IF to_regclass('wval.' || quote_ident(seq)) IS NULL THEN
                EXECUTE format('CREATE SEQUENCE wval.%I', seq);
                EXECUTE format('COMMENT ON SEQUENCE wval.%I IS %L', seq,
                               format('risk snapshots of world %s, stage %s, rejected as %s', p_world_id, st, outcome));
            END IF;
            -- also after a restore: pg_dump recreates the sequence (with its
            -- value) but not its link to the extension's table
            EXECUTE format('ALTER SEQUENCE wval.%I OWNED BY wval.snapshot_counters.world_id', seq);
        END LOOP;
    END LOOP;
END
$$;
COMMENT ON FUNCTION wval._snapshot_counters_create(text) IS 'creates the sequences that count rejected snapshot publishes of a world';

CREATE FUNCTION wval._world_snapshot_counters() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
BEGIN
    PERFORM wval._snapshot_counters_create(NEW.world_id);
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION wval._world_snapshot_counters() IS 'trigger: gives every new world its snapshot rejection counters';

CREATE TRIGGER wval_snapshot_counters AFTER INSERT ON wval.worlds
    FOR EACH ROW EXECUTE FUNCTION wval._world_snapshot_counters();

SELECT wval._snapshot_counters_create(w.world_id) FROM wval.worlds w;

------------------------------------------------------------------------------
-- Producer registration
------------------------------------------------------------------------------

CREATE FUNCTION public.wval_producer_register(world_id text, actor text, hmac_key bytea DEFAULT NULL)
RETURNS wval.producers
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    p_world text := wval._ident('world_id', world_id);
    p_actor text := wval._ident('actor', actor);
    r wval.producers;
BEGIN
    PERFORM wval._world(p_world);
    IF hmac_key IS NOT NULL AND length(hmac_key) < 16 THEN
        RAISE EXCEPTION 'invalid value for "hmac_key"' USING ERRCODE = '22023',
            DETAIL = format('hmac_key has %s bytes.', length(hmac_key)),
            HINT = 'Use a random key of at least 16 bytes (32 recommended), e.g. gen_random_bytes(32); or null for unsigned snapshots.';
    END IF;
    INSERT INTO wval.producers (world_id, actor, status, hmac_key, registered_by)
    VALUES (p_world, p_actor, 'active', hmac_key, session_user)
    RETURNING * INTO r;
    PERFORM wval._audit(p_world, 'producer_registered', session_user::text,
                        jsonb_build_object('actor', p_actor, 'registration_id', r.registration_id,
                                           'has_key', hmac_key IS NOT NULL));
    RETURN r;
END
$$;
COMMENT ON FUNCTION public.wval_producer_register(text, text, bytea) IS 'allows actor to publish risk snapshots to a world; with hmac_key, its snapshots must be signed. Registering again replaces the key (rotation); audited';

CREATE FUNCTION public.wval_producer_revoke(world_id text, actor text, reason text DEFAULT NULL)
RETURNS wval.producers
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    p_world text := wval._ident('world_id', world_id);
    p_actor text := wval._ident('actor', actor);
    cur text;
    r wval.producers;
BEGIN
    PERFORM wval._world(p_world);
    SELECT p.status INTO cur FROM wval.producers p
    WHERE p.world_id = p_world AND p.actor = p_actor
    ORDER BY p.registration_id DESC LIMIT 1;
    IF cur IS DISTINCT FROM 'active' THEN
        RAISE EXCEPTION 'actor "%" is not an active producer of world "%"', p_actor, p_world
            USING ERRCODE = 'WV010',
                  DETAIL = format('Its current registration is %s.', coalesce(cur, 'missing')),
                  HINT = 'See wval.current_producers.';
    END IF;
    INSERT INTO wval.producers (world_id, actor, status, reason, registered_by)
    VALUES (p_world, p_actor, 'revoked', reason, session_user)
    RETURNING * INTO r;
    PERFORM wval._audit(p_world, 'producer_revoked', session_user::text,
                        jsonb_build_object('actor', p_actor, 'registration_id', r.registration_id,
                                           'reason', reason));
    RETURN r;
END
$$;
COMMENT ON FUNCTION public.wval_producer_revoke(text, text, text) IS 'stops actor from publishing risk snapshots to a world (WV009 from then on); audited';

------------------------------------------------------------------------------
-- Reads
------------------------------------------------------------------------------

-- wval._snapshot_expand(world_id, payload): the payload with every
-- wval-blob reference replaced by the blob's content under the part's own
-- field name (covariance_ref -> covariance ...); the blob's hash is
-- verified (WV006).  External references (s3://, file://) stay as they are.
CREATE FUNCTION wval._snapshot_expand(p_world_id text, p_payload jsonb) RETURNS jsonb
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    part text;
    ref text;
    b wval.blobs;
    result jsonb := p_payload;
BEGIN
    FOREACH part IN ARRAY ARRAY['covariance', 'realized_returns', 'stress'] LOOP
        ref := p_payload ->> (part || '_ref');
        CONTINUE WHEN ref IS NULL OR ref NOT LIKE 'wval-blob:sha256:%';
        SELECT * INTO b FROM wval.blobs x WHERE x.world_id = p_world_id AND x.blob_hash = substr(ref, 11);
        IF NOT FOUND THEN
            RAISE EXCEPTION 'blob % of world "%" does not exist', ref, p_world_id
                USING ERRCODE = 'WV010',
                      DETAIL = format('%s_ref is %s.', part, ref),
                      HINT = 'Blobs are never removed while a snapshot refers to them; check wval.blobs.';
        END IF;
        IF 'sha256:' || encode(sha256(convert_to(b.content::text, 'UTF8')), 'hex') <> b.blob_hash THEN
            RAISE EXCEPTION 'blob % of world "%" does not match its hash', ref, p_world_id
                USING ERRCODE = 'WV006',
                      DETAIL = format('The content hashes to sha256:%s.',
                                      encode(sha256(convert_to(b.content::text, 'UTF8')), 'hex')),
                      HINT = 'The stored blob was altered; restore it from a backup.';
        END IF;
        result := (result - (part || '_ref')) || jsonb_build_object(part, b.content);
    END LOOP;
    RETURN result;
END
$$;
COMMENT ON FUNCTION wval._snapshot_expand(text, jsonb) IS 'resolves the wval-blob references of a snapshot payload inline, verifying each blob''s hash';

-- wval._snapshot_doc(row, expand, at): the document the read functions
-- return; stale and age_sec are relative to "at".
CREATE FUNCTION wval._snapshot_doc(s wval.risk_snapshots, p_expand boolean, p_at timestamptz) RETURNS jsonb
LANGUAGE sql STABLE SET search_path = pg_catalog, wval, pg_temp AS $$
    SELECT jsonb_build_object(
        'world_id', s.world_id, 'version', s.version, 'hash', s.hash,
        'actor', s.actor, 'stage', s.stage, 'as_of', s.as_of, 'received_at', s.received_at,
        'ttl_sec', s.ttl_sec, 'signed', s.signed,
        'age_sec', CASE WHEN isfinite(p_at) THEN round(extract(epoch FROM p_at - s.as_of), 3) END,
        'stale', CASE WHEN isfinite(p_at) THEN (p_at - s.as_of) > wval._snapshot_max_age() END,
        'expanded', coalesce(p_expand, false),
        'snapshot', CASE WHEN p_expand THEN wval._snapshot_expand(s.world_id, s.payload) ELSE s.payload END);
$$;
COMMENT ON FUNCTION wval._snapshot_doc(wval.risk_snapshots, boolean, timestamptz) IS 'the jsonb document of a stored snapshot returned by the wval_snapshot* reads';

CREATE FUNCTION public.wval_snapshot_latest(world_id text, stage text DEFAULT NULL, actor text DEFAULT NULL,
                                            expand boolean DEFAULT false, include_stale boolean DEFAULT false)
RETURNS jsonb
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    s wval.risk_snapshots;
BEGIN
    PERFORM wval._world(world_id);
    SELECT * INTO s FROM wval.risk_snapshots r
    WHERE r.world_id = wval_snapshot_latest.world_id
      AND (wval_snapshot_latest.stage IS NULL OR r.stage = wval_snapshot_latest.stage)
      AND (wval_snapshot_latest.actor IS NULL OR r.actor = wval_snapshot_latest.actor)
    ORDER BY r.as_of DESC, r.snapshot_id DESC
    LIMIT 1;
    IF NOT FOUND OR (NOT coalesce(include_stale, false) AND now() - s.as_of > wval._snapshot_max_age()) THEN
        RETURN NULL;
    END IF;
    RETURN wval._snapshot_doc(s, expand, now());
END
$$;
COMMENT ON FUNCTION public.wval_snapshot_latest(text, text, text, boolean, boolean) IS 'the latest snapshot (by as_of) of a world, optionally of one stage / actor; null when it is older than wval.snapshot_max_age unless include_stale, in which case the document says "stale": true';

CREATE FUNCTION public.wval_snapshot_as_of(world_id text, ts timestamptz, stage text DEFAULT NULL,
                                           expand boolean DEFAULT false)
RETURNS jsonb
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    s wval.risk_snapshots;
BEGIN
    IF ts IS NULL OR NOT isfinite(ts) THEN
        RAISE EXCEPTION 'invalid value for "ts"' USING ERRCODE = '22023',
            DETAIL = format('ts is %s.', coalesce(ts::text, 'null')),
            HINT = 'Pass the finite point in time the hub''s state is asked for.';
    END IF;
    PERFORM wval._world(world_id);
    SELECT * INTO s FROM wval.risk_snapshots r
    WHERE r.world_id = wval_snapshot_as_of.world_id
      AND (wval_snapshot_as_of.stage IS NULL OR r.stage = wval_snapshot_as_of.stage)
      AND r.as_of <= ts AND r.received_at <= ts
    ORDER BY r.as_of DESC, r.snapshot_id DESC
    LIMIT 1;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    RETURN wval._snapshot_doc(s, expand, ts);
END
$$;
COMMENT ON FUNCTION public.wval_snapshot_as_of(text, timestamptz, text, boolean) IS 'the snapshot the hub held at ts: the latest with as_of <= ts that had arrived by ts; "stale" and age_sec relative to ts; null when none';

CREATE FUNCTION public.wval_snapshot(world_id text, version text, expand boolean DEFAULT false)
RETURNS jsonb
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    s wval.risk_snapshots;
BEGIN
    PERFORM wval._world(world_id);
    SELECT * INTO s FROM wval.risk_snapshots r
    WHERE r.world_id = wval_snapshot.world_id AND r.version = wval_snapshot.version;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'risk snapshot "%" of world "%" does not exist', version, world_id
            USING ERRCODE = 'WV010',
                  DETAIL = format('version is %L.', version),
                  HINT = 'See wval.risk_snapshots for the versions of the world.';
    END IF;
    RETURN wval._snapshot_doc(s, expand, now());
END
$$;
COMMENT ON FUNCTION public.wval_snapshot(text, text, boolean) IS 'one stored snapshot by (world_id, version), optionally with blob references expanded; WV010 when it does not exist';

------------------------------------------------------------------------------
-- Observability
------------------------------------------------------------------------------

CREATE FUNCTION public.wval_snapshot_stats(world_id text DEFAULT NULL)
RETURNS TABLE (world_id text, stage text, processed bigint, dedupe bigint, expired bigint, failed bigint)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
    WITH stages(stage) AS (SELECT unnest(wval._stages() || 'invalid'::text)),
    ws AS (
        SELECT w.world_id, st.stage FROM wval.worlds w CROSS JOIN stages st
        WHERE ($1 IS NULL OR w.world_id = $1) AND wval._can_read(w.world_id)
    ),
    c AS (
        SELECT c.world_id, c.stage, sum(c.processed)::bigint AS processed, sum(c.dedupe)::bigint AS dedupe
        FROM wval.snapshot_counters c GROUP BY c.world_id, c.stage
    ),
    r AS (
        SELECT ws.world_id, ws.stage, coalesce(c.processed, 0) AS processed, coalesce(c.dedupe, 0) AS dedupe,
               coalesce(pg_sequence_last_value(to_regclass(
                   'wval.' || wval._snapshot_counter_name(ws.world_id, ws.stage, 'expired'))), 0) AS expired,
               coalesce(pg_sequence_last_value(to_regclass(
                   'wval.' || wval._snapshot_counter_name(ws.world_id, ws.stage, 'failed'))), 0) AS failed
        FROM ws LEFT JOIN c ON c.world_id = ws.world_id AND c.stage = ws.stage
    )
    SELECT r.world_id, r.stage, r.processed, r.dedupe, r.expired, r.failed FROM r
    WHERE r.stage <> 'invalid' OR r.failed > 0
    UNION ALL
    SELECT NULL, NULL, 0, 0, 0, coalesce(pg_sequence_last_value('wval.snapshot_rejects_unattributed'), 0)
    WHERE $1 IS NULL AND (SELECT wval._visible_worlds()) IS NULL   -- not per world: for roles that see every world
    ORDER BY 1, 2;
$$;
COMMENT ON FUNCTION public.wval_snapshot_stats(text) IS 'risk-snapshot publishes per world and stage: processed (stored), dedupe (identical retries), expired (WV005) and failed (every other rejection; stage ''invalid'' when the stage argument was); the row with null world counts rejections naming no existing world (shown to roles that see every world); worlds the caller may not read are left out';

CREATE VIEW wval.snapshot_stats AS SELECT * FROM public.wval_snapshot_stats();
COMMENT ON VIEW wval.snapshot_stats IS 'wval_snapshot_stats() for every world';
COMMENT ON COLUMN wval.snapshot_stats.world_id IS 'the world (wval.worlds.world_id); null on the row that counts rejections naming no existing world';
COMMENT ON COLUMN wval.snapshot_stats.stage IS 'backtest | paper | shadow | live, or invalid for rejected publishes whose stage argument was invalid';
COMMENT ON COLUMN wval.snapshot_stats.processed IS 'snapshots accepted and stored (counter)';
COMMENT ON COLUMN wval.snapshot_stats.dedupe IS 'identical retries answered with the stored snapshot (counter)';
COMMENT ON COLUMN wval.snapshot_stats.expired IS 'publishes rejected because they arrived after as_of + ttl_sec (WV005) (counter)';
COMMENT ON COLUMN wval.snapshot_stats.failed IS 'publishes rejected for any other reason (counter)';

CREATE VIEW wval.snapshot_freshness AS
SELECT DISTINCT ON (s.world_id, s.stage)
       s.world_id, s.stage, s.version, s.actor, s.as_of,
       now() - s.as_of AS lag,
       now() - s.as_of <= wval._snapshot_max_age() AS fresh
FROM wval.risk_snapshots s
ORDER BY s.world_id, s.stage, s.as_of DESC, s.snapshot_id DESC;
COMMENT ON VIEW wval.snapshot_freshness IS 'latest snapshot per world and stage with its lag (now - as_of) and whether it is fresh (lag <= wval.snapshot_max_age)';
COMMENT ON COLUMN wval.snapshot_freshness.world_id IS 'the world (wval.worlds.world_id)';
COMMENT ON COLUMN wval.snapshot_freshness.stage IS 'backtest | paper | shadow | live';
COMMENT ON COLUMN wval.snapshot_freshness.version IS 'version of the latest snapshot (by as_of) of the world and stage';
COMMENT ON COLUMN wval.snapshot_freshness.actor IS 'the producer that published it';
COMMENT ON COLUMN wval.snapshot_freshness.as_of IS 'the time the snapshot describes';
COMMENT ON COLUMN wval.snapshot_freshness.lag IS 'now() - as_of';
COMMENT ON COLUMN wval.snapshot_freshness.fresh IS 'true when lag <= the setting wval.snapshot_max_age';

------------------------------------------------------------------------------
-- pg_dump
------------------------------------------------------------------------------

SELECT pg_catalog.pg_extension_config_dump('wval.producers', '');
SELECT pg_catalog.pg_extension_config_dump('wval.producers_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('wval.blobs', '');
SELECT pg_catalog.pg_extension_config_dump('wval.risk_snapshots', '');
SELECT pg_catalog.pg_extension_config_dump('wval.risk_snapshots_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('wval.snapshot_counters', '');
SELECT pg_catalog.pg_extension_config_dump('wval.snapshot_rejects_unattributed', '');

------------------------------------------------------------------------------
-- Privileges
------------------------------------------------------------------------------

GRANT SELECT ON wval.risk_snapshots, wval.blobs, wval.snapshot_counters, wval.current_producers,
      wval.snapshot_stats, wval.snapshot_freshness
   TO wval_analyst;
GRANT SELECT (registration_id, world_id, actor, status, reason, registered_by, registered_at,
              chain_seq, prev_hash, row_hash)
   ON wval.producers TO wval_analyst;
GRANT SELECT ON SEQUENCE wval.snapshot_rejects_unattributed TO wval_analyst;

GRANT EXECUTE ON FUNCTION public.wval_snapshot_latest(text, text, text, boolean, boolean),
      public.wval_snapshot_as_of(text, timestamptz, text, boolean),
      public.wval_snapshot(text, text, boolean),
      public.wval_snapshot_stats(text),
      wval._snapshot_expand(text, jsonb),
      wval._snapshot_doc(wval.risk_snapshots, boolean, timestamptz),
      wval._snapshot_max_age(),
      wval._world(text, boolean),
      wval._snapshot_counter_name(text, text, text)
   TO wval_analyst;
GRANT EXECUTE ON FUNCTION public.wval_snapshot_publish(text, jsonb, text, text, text),
      public.wval_snapshot_canonical(text, jsonb),
      public.wval_snapshot_signed_message(text, jsonb, text, text)
   TO wval_producer;
GRANT EXECUTE ON FUNCTION public.wval_producer_register(text, text, bytea),
      public.wval_producer_revoke(text, text, text)
   TO wval_admin;
