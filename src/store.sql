-- store.sql: the append-only evaluation store (docs/store.md), next to store.c.
--
-- History tables refuse UPDATE/DELETE/TRUNCATE for every role (trigger
-- wval._append_only, SQLSTATE WV003); rows leave only through the retention
-- path, which raises a transaction-local guard first.  Chained tables also
-- carry the per-world hash chain (chain_seq, prev_hash, row_hash).
--
-- requires: wval

------------------------------------------------------------------------------
-- Trigger functions (C, store.c)
------------------------------------------------------------------------------

CREATE FUNCTION wval._append_only() RETURNS trigger
    AS 'MODULE_PATHNAME', 'wval_append_only' LANGUAGE C;
COMMENT ON FUNCTION wval._append_only() IS 'trigger: refuses UPDATE, DELETE and TRUNCATE on history tables (WV003) outside the retention path';

CREATE FUNCTION wval._chain() RETURNS trigger
    AS 'MODULE_PATHNAME', 'wval_chain' LANGUAGE C;
COMMENT ON FUNCTION wval._chain() IS 'trigger: appends the row to its world''s hash chain (chain_seq, prev_hash, row_hash)';

CREATE FUNCTION wval._purge_guard(raise boolean) RETURNS boolean
    AS 'MODULE_PATHNAME', 'wval_purge_guard' LANGUAGE C STRICT VOLATILE;
COMMENT ON FUNCTION wval._purge_guard(boolean) IS 'raises (true) or lowers the retention guard for the current transaction; executable only by the extension owner';

CREATE FUNCTION wval._chain_link(prev_hash text, table_name text, chain_seq bigint, canonical text) RETURNS text
    AS 'MODULE_PATHNAME', 'wval_chain_link' LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION wval._chain_link(text, text, bigint, text) IS 'the hash of a chain link: sha256 over prev_hash, table, chain_seq and the row''s canonical text';

CREATE FUNCTION wval._row_hash(table_name text, chain_seq bigint, prev_hash text, row_value record)
RETURNS text
    AS 'MODULE_PATHNAME', 'wval_row_hash' LANGUAGE C STRICT STABLE PARALLEL SAFE;
COMMENT ON FUNCTION wval._row_hash(text, bigint, text, record) IS 'recomputes the chain hash of a stored history row';

CREATE FUNCTION wval._canonical(row_value record) RETURNS text
    AS 'MODULE_PATHNAME', 'wval_canonical' LANGUAGE C STRICT STABLE PARALLEL SAFE;
COMMENT ON FUNCTION wval._canonical(record) IS 'the canonical text of a history row that its chain hash covers (see docs/store.md)';

-- wval._ident(field, value): raises 22023 unless value is a valid identifier
-- (non-blank, at most 200 bytes, no control, bidi-control or zero-width
-- characters: docs/store.md, "Identifiers"); returns value.
CREATE FUNCTION wval._ident(field text, value text) RETURNS text
    AS 'MODULE_PATHNAME', 'wval_ident'
    LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION wval._ident(text, text) IS 'checks a wval identifier (non-blank, <= 200 bytes, no control, bidi-control or zero-width characters) and returns it';

CREATE FUNCTION wval._invoker() RETURNS text
    AS 'MODULE_PATHNAME', 'wval_invoker' LANGUAGE C STABLE;
COMMENT ON FUNCTION wval._invoker() IS 'the role that called into wval (current_user outside SECURITY DEFINER functions; honours SET ROLE)';

------------------------------------------------------------------------------
-- Row-level security by world (src/security.sql has the grants it reads):
-- every table with a world_id calls wval._secure right after its CREATE TABLE.
------------------------------------------------------------------------------

-- wval._visible_worlds(): the worlds the current role may read; null = all.
CREATE FUNCTION wval._visible_worlds() RETURNS text[]
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
    -- the caller: current_user outside this SECURITY DEFINER function
    WITH me AS (SELECT oid, rolsuper FROM pg_roles WHERE rolname = wval._invoker())
    SELECT CASE WHEN (SELECT rolsuper FROM me)
                  OR EXISTS (SELECT 1 FROM wval.current_world_grants g
                             JOIN pg_catalog.pg_roles gr ON gr.rolname = g.role_name   -- skips dropped roles
                             WHERE g.world_id = '*' AND g.privilege <> 'none'
                               AND pg_has_role((SELECT oid FROM me), gr.oid, 'MEMBER'))
                THEN NULL
                ELSE coalesce((SELECT array_agg(DISTINCT g.world_id) FROM wval.current_world_grants g
                               JOIN pg_catalog.pg_roles gr ON gr.rolname = g.role_name
                               WHERE g.privilege <> 'none' AND pg_has_role((SELECT oid FROM me), gr.oid, 'MEMBER')), '{}') END
$$;
COMMENT ON FUNCTION wval._visible_worlds() IS 'the worlds the current role may read (null: every world); used by the row-level security policies';

-- wval._secure(table): row-level security by world on one table (also for
-- partitions created later by wval_maintain: a partition queried directly
-- does not inherit its parent's policies).
CREATE FUNCTION wval._secure(tbl regclass) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, wval, pg_temp AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_policy WHERE polrelid = tbl AND polname = 'wval_world_read') THEN
        EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', tbl);
        -- FOR ALL: a role that a DBA granted table privileges by mistake still
        -- reaches the rows of its worlds, where the append-only trigger says WV003
        EXECUTE format('CREATE POLICY wval_world_read ON %s FOR ALL USING ('
                       '(SELECT wval._visible_worlds()) IS NULL OR world_id = ANY ((SELECT wval._visible_worlds())::text[]))', tbl);
    END IF;
END
$$;
COMMENT ON FUNCTION wval._secure(regclass) IS 'enables row-level security by world on a table (policy wval_world_read)';

-- wval._protect(table, chained): installs the append-only triggers (and the
-- chain trigger) on one history table.  Used by this script and by
-- wval_maintain() for new partitions (TRUNCATE triggers are per table).
CREATE FUNCTION wval._protect(tbl regclass, chain_name text DEFAULT NULL) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    kind "char";
BEGIN
    SELECT relkind INTO kind FROM pg_class WHERE oid = tbl;
    IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = tbl AND tgname = 'wval_append_only_truncate') THEN
        EXECUTE format('CREATE TRIGGER wval_append_only_truncate BEFORE TRUNCATE ON %s
                        FOR EACH STATEMENT EXECUTE FUNCTION wval._append_only()', tbl);
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = tbl AND tgname = 'wval_append_only') THEN
        EXECUTE format('CREATE TRIGGER wval_append_only BEFORE UPDATE OR DELETE ON %s
                        FOR EACH ROW EXECUTE FUNCTION wval._append_only()', tbl);
    END IF;
    IF chain_name IS NOT NULL AND NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = tbl AND tgname = 'wval_chain') THEN
        EXECUTE format('CREATE TRIGGER wval_chain BEFORE INSERT ON %s
                        FOR EACH ROW EXECUTE FUNCTION wval._chain(%L)', tbl, chain_name);
    END IF;
    -- the triggers fire also under session_replication_role = replica: only
    -- ALTER TABLE ... DISABLE TRIGGER (DDL, audited by wval._ddl_audit) stops them
    EXECUTE format('ALTER TABLE %s ENABLE ALWAYS TRIGGER wval_append_only_truncate', tbl);
    EXECUTE format('ALTER TABLE %s ENABLE ALWAYS TRIGGER wval_append_only', tbl);
    IF EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = tbl AND tgname = 'wval_chain') THEN
        EXECUTE format('ALTER TABLE %s ENABLE ALWAYS TRIGGER wval_chain', tbl);
    END IF;
END
$$;
COMMENT ON FUNCTION wval._protect(regclass, text) IS 'installs the append-only (and chain) triggers on a history table; they fire ALWAYS (also under session_replication_role = replica)';

CREATE FUNCTION wval._writer_only() RETURNS trigger
    AS 'MODULE_PATHNAME', 'wval_writer_only' LANGUAGE C;
COMMENT ON FUNCTION wval._writer_only() IS 'trigger: refuses (WV003) a change that does not come from one of wval''s writers (a SECURITY DEFINER function of the extension owner)';

-- wval._protect_in_place(table): a table that wval's writers maintain in place
-- (UPDATE / DELETE only from them, never TRUNCATE; a restore INSERTs)
CREATE FUNCTION wval._protect_in_place(tbl regclass) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, wval, pg_temp AS $$
BEGIN
    EXECUTE format('CREATE TRIGGER wval_writer_only BEFORE UPDATE OR DELETE ON %s '
                   'FOR EACH ROW EXECUTE FUNCTION wval._writer_only()', tbl);
    EXECUTE format('ALTER TABLE %s ENABLE ALWAYS TRIGGER wval_writer_only', tbl);
    EXECUTE format('CREATE TRIGGER wval_append_only_truncate BEFORE TRUNCATE ON %s '
                   'FOR EACH STATEMENT EXECUTE FUNCTION wval._append_only()', tbl);
    EXECUTE format('ALTER TABLE %s ENABLE ALWAYS TRIGGER wval_append_only_truncate', tbl);
END
$$;
COMMENT ON FUNCTION wval._protect_in_place(regclass) IS 'installs the wval_writer_only (UPDATE/DELETE only from wval''s writers, WV003) and TRUNCATE triggers on a table maintained in place; both fire ALWAYS';

------------------------------------------------------------------------------
-- Chain bookkeeping
------------------------------------------------------------------------------

CREATE TABLE wval.chain_heads (
    world_id   text NOT NULL,
    seq        bigint NOT NULL,
    prev_hash  text NOT NULL,
    head_hash  text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    lane       integer NOT NULL DEFAULT 0 CHECK (lane BETWEEN 0 AND 63),
    PRIMARY KEY (world_id, lane)
);
SELECT wval._secure('wval.chain_heads');
-- the heads move only with the chain (the chain trigger, the import); a
-- restore brings them back with INSERT
SELECT wval._protect_in_place('wval.chain_heads');
COMMENT ON TABLE wval.chain_heads IS 'head (last chain_seq and row_hash) of each lane of each world''s hash chain (one lane, 0, unless the world''s settings.chain_lanes allows more); the empty world_id is the chain of global audit rows. Publish head_hash outside the database to anchor the chain.';
COMMENT ON COLUMN wval.chain_heads.lane IS 'the lane of the world''s chain (0 .. settings.chain_lanes - 1); lane k numbers its links from k * 2^40 + 1';
COMMENT ON COLUMN wval.chain_heads.world_id IS 'the world (wval.worlds.world_id) whose chain this is; '''' (empty) for the chain of audit rows that concern no single world';
COMMENT ON COLUMN wval.chain_heads.seq IS 'chain_seq of the lane''s last link (lane * 2^40 + the number of links ever appended to the lane, purged ones included)';
COMMENT ON COLUMN wval.chain_heads.prev_hash IS 'prev_hash of the lane''s last link';
COMMENT ON COLUMN wval.chain_heads.head_hash IS 'row_hash of the lane''s last link: publish it outside the database to anchor the chain; wval_verify_chain compares it with the stored rows';
COMMENT ON COLUMN wval.chain_heads.updated_at IS 'when the head last moved (start of the appending transaction)';

CREATE TABLE wval.chain_tombstones (
    world_id   text NOT NULL,
    chain_seq  bigint NOT NULL,
    table_name text NOT NULL,
    prev_hash  text NOT NULL,
    row_hash   text NOT NULL,
    purged_at  timestamptz NOT NULL DEFAULT now(),
    last_seq   bigint CHECK (last_seq > chain_seq),
    PRIMARY KEY (world_id, chain_seq)
);
SELECT wval._secure('wval.chain_tombstones');
COMMENT ON TABLE wval.chain_tombstones IS 'links of rows removed by wval_purge() and the storage prune: the chain of what remains still verifies; consecutive links are compacted into one range (chain_seq .. last_seq)';
COMMENT ON COLUMN wval.chain_tombstones.last_seq IS 'for a range of consecutive removed links (compacted by the storage prune): chain_seq of the last; then prev_hash is that of the first link and row_hash that of the last. Null for a single link';
COMMENT ON COLUMN wval.chain_tombstones.world_id IS 'the world (wval.worlds.world_id) whose chain held the removed row ('''' for global audit rows)';
COMMENT ON COLUMN wval.chain_tombstones.chain_seq IS 'chain_seq of the row wval_purge() removed';
COMMENT ON COLUMN wval.chain_tombstones.table_name IS 'the table the removed row was in, e.g. evaluation_runs';
COMMENT ON COLUMN wval.chain_tombstones.prev_hash IS 'prev_hash of the removed row';
COMMENT ON COLUMN wval.chain_tombstones.row_hash IS 'row_hash of the removed row: the next link''s prev_hash still points to it, so the remaining chain verifies';
COMMENT ON COLUMN wval.chain_tombstones.purged_at IS 'when the row was removed (start of the purging transaction)';
SELECT wval._protect('wval.chain_tombstones');

------------------------------------------------------------------------------
-- Worlds (mutable configuration; every change is audited)
------------------------------------------------------------------------------

CREATE TABLE wval.worlds (
    world_id                text PRIMARY KEY,
    risk_tier               text NOT NULL DEFAULT 'medium' CHECK (risk_tier IN ('high', 'medium', 'low')),
    client_critical         boolean NOT NULL DEFAULT false,
    max_capital_at_risk_pct float8 CHECK (max_capital_at_risk_pct >= 0 AND max_capital_at_risk_pct <= 100),
    legal_hold              boolean NOT NULL DEFAULT false,
    settings                jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(settings) = 'object'),
    created_by              text NOT NULL,
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_by              text NOT NULL,
    updated_at              timestamptz NOT NULL DEFAULT now()
);
SELECT wval._secure('wval.worlds');
-- changed only by wval_world_upsert (which audits the old and new values)
SELECT wval._protect_in_place('wval.worlds');
COMMENT ON TABLE wval.worlds IS 'worlds (portfolios / trading environments); mutable configuration written by wval_world_upsert, every change audited';
COMMENT ON COLUMN wval.worlds.risk_tier IS 'high | medium | low; high + client_critical forces fail-closed validation';
COMMENT ON COLUMN wval.worlds.client_critical IS 'true for worlds that trade client money; with risk_tier high: always fail-closed, 30-day override reviews';
COMMENT ON COLUMN wval.worlds.legal_hold IS 'a world under legal hold is never purged';
COMMENT ON COLUMN wval.worlds.settings IS 'per-world settings (jsonb object), e.g. store_returns (true: keep the returns of each run in wval.run_returns; new worlds start with true), fail_impact_ratio, offload_threshold, chain_lanes (1 .. 64 lanes of the world''s hash chain that concurrent writers may use; default 1)';
COMMENT ON COLUMN wval.worlds.world_id IS 'identifier of the world (a portfolio or trading environment); every world-scoped row of wval names it';
COMMENT ON COLUMN wval.worlds.max_capital_at_risk_pct IS 'the world''s cap on capital at risk, in percent (0 to 100) of its capital; null when not set';
COMMENT ON COLUMN wval.worlds.created_by IS 'who created the world (the actor given to wval_world_upsert)';
COMMENT ON COLUMN wval.worlds.created_at IS 'when the world was created';
COMMENT ON COLUMN wval.worlds.updated_by IS 'who last changed it';
COMMENT ON COLUMN wval.worlds.updated_at IS 'when it was last changed';

------------------------------------------------------------------------------
-- Policy versions and activations
------------------------------------------------------------------------------

CREATE TABLE wval.policy_versions (
    world_id       text NOT NULL,
    version        integer NOT NULL CHECK (version > 0),
    policy         jsonb NOT NULL,
    author         text NOT NULL,
    published_by   name DEFAULT session_user,
    note           text,
    ruleset_hashes jsonb NOT NULL DEFAULT '{}',
    created_at     timestamptz NOT NULL DEFAULT now(),
    chain_seq      bigint NOT NULL,
    prev_hash      text NOT NULL,
    row_hash       text NOT NULL,
    PRIMARY KEY (world_id, version)
);
SELECT wval._secure('wval.policy_versions');
COMMENT ON TABLE wval.policy_versions IS 'immutable, numbered policy documents per world (1, 2, 3 ... without gaps); publishing does not activate';
COMMENT ON COLUMN wval.policy_versions.author IS 'the person named by the publisher (a label)';
COMMENT ON COLUMN wval.policy_versions.published_by IS 'the database login that published the version (session_user): the two-person rule compares logins; null for versions published before 0.2.0 (then only the actor labels are compared)';
COMMENT ON COLUMN wval.policy_versions.ruleset_hashes IS 'per profile: sha256 of the materialised ruleset';
COMMENT ON COLUMN wval.policy_versions.world_id IS 'the world (wval.worlds.world_id)';
COMMENT ON COLUMN wval.policy_versions.version IS '1, 2, 3 ... per world without gaps';
COMMENT ON COLUMN wval.policy_versions.policy IS 'the policy document as published (the DSL of docs/policy.md)';
COMMENT ON COLUMN wval.policy_versions.note IS 'the publisher''s note; null when none';
COMMENT ON COLUMN wval.policy_versions.created_at IS 'when the version was published';
COMMENT ON COLUMN wval.policy_versions.chain_seq IS 'position of the row in its world''s hash chain, shared by every chained table of the world (1, 2, 3 ... without gaps; in a world with settings.chain_lanes > 1, lane k counts from k * 2^40 + 1); set by the chain trigger';
COMMENT ON COLUMN wval.policy_versions.prev_hash IS 'row_hash of the previous link of the same world''s chain (in any table; in the same lane); ''sha256:'' and 64 zeros for a world''s first link';
COMMENT ON COLUMN wval.policy_versions.row_hash IS '''sha256:'' || hex of sha256 over prev_hash, table name, chain_seq and the row''s canonical text, newline-separated (docs/store.md); recomputed by wval_verify_chain';
SELECT wval._protect('wval.policy_versions', 'policy_versions');

CREATE SEQUENCE wval.policy_activations_id_seq;
CREATE TABLE wval.policy_activations (
    activation_id    bigint NOT NULL DEFAULT nextval('wval.policy_activations_id_seq'),
    world_id         text NOT NULL,
    version          integer NOT NULL,
    previous_version integer,
    activated_by     text NOT NULL,
    approved_by      text,
    reason           text NOT NULL,
    forced           boolean NOT NULL DEFAULT false,
    details          jsonb NOT NULL DEFAULT '{}',
    activated_at     timestamptz NOT NULL DEFAULT now(),
    chain_seq        bigint NOT NULL,
    prev_hash        text NOT NULL,
    row_hash         text NOT NULL,
    stages           text[],         -- last: where 0.2.0's upgrade adds it
    PRIMARY KEY (world_id, activation_id),
    CONSTRAINT policy_activations_stages_check CHECK (stages IS NULL OR (cardinality(stages) > 0
        AND stages <@ wval._stages() AND array_position(stages, NULL) IS NULL))
);
SELECT wval._secure('wval.policy_activations');
ALTER SEQUENCE wval.policy_activations_id_seq OWNED BY wval.policy_activations.activation_id;
CREATE INDEX ON wval.policy_activations (world_id, activated_at DESC);
COMMENT ON TABLE wval.policy_activations IS 'which policy version became active at which stages, who activated and approved it, why; the version active at a stage is that of the latest activation naming the stage (or naming none)';
COMMENT ON COLUMN wval.policy_activations.stages IS 'the stages the activation applies to (a staged rollout: backtest, paper, shadow, live); null for every stage';
COMMENT ON COLUMN wval.policy_activations.activated_by IS 'the person named by the activating validator (a label)';
COMMENT ON COLUMN wval.policy_activations.approved_by IS 'the database login that activated (session_user), the second person of the two-person rule; it differs from policy_versions.published_by unless details.governance_exceptions says why';
COMMENT ON COLUMN wval.policy_activations.activation_id IS 'number of the activation (sequence wval.policy_activations_id_seq); the latest per world is in force';
COMMENT ON COLUMN wval.policy_activations.world_id IS 'the world (wval.worlds.world_id)';
COMMENT ON COLUMN wval.policy_activations.version IS 'the policy version activated (wval.policy_versions.version)';
COMMENT ON COLUMN wval.policy_activations.previous_version IS 'the version of the world''s latest activation before this one (whatever its stages); null for the world''s first activation; details.previous_versions has the version active before at each stage of this one';
COMMENT ON COLUMN wval.policy_activations.reason IS 'why the version was activated (required free text)';
COMMENT ON COLUMN wval.policy_activations.forced IS 'true when activated with force => true; details.governance_exceptions lists what force waived (impact gate, fail-closed relaxation)';
COMMENT ON COLUMN wval.policy_activations.details IS '{governance_exceptions: [rules waived by force], previous_versions: {stage: version active before at each stage of the activation}, impact_gate: the replay of the change over history at each of those stages against the version active there (absent when no stage had another version)}';
COMMENT ON COLUMN wval.policy_activations.activated_at IS 'when the version became active';
COMMENT ON COLUMN wval.policy_activations.chain_seq IS 'position of the row in its world''s hash chain, shared by every chained table of the world (1, 2, 3 ... without gaps; in a world with settings.chain_lanes > 1, lane k counts from k * 2^40 + 1); set by the chain trigger';
COMMENT ON COLUMN wval.policy_activations.prev_hash IS 'row_hash of the previous link of the same world''s chain (in any table; in the same lane); ''sha256:'' and 64 zeros for a world''s first link';
COMMENT ON COLUMN wval.policy_activations.row_hash IS '''sha256:'' || hex of sha256 over prev_hash, table name, chain_seq and the row''s canonical text, newline-separated (docs/store.md); recomputed by wval_verify_chain';
SELECT wval._protect('wval.policy_activations', 'policy_activations');

------------------------------------------------------------------------------
-- Evaluation runs (partitioned by time, see wval_maintain) and the rule
-- results derived from them
--
-- The partitioned parents carry no indexes: each partition gets its own
-- (wval._index_partition, from wval.partition_indexes).  Indexes on an
-- extension-owned parent would be re-created by CREATE EXTENSION before
-- pg_restore attaches the dumped monthly partitions, and the restore would
-- then fail on the partitions' own copies of them.
------------------------------------------------------------------------------

CREATE TABLE wval.partition_indexes (
    parent text NOT NULL,
    spec   text NOT NULL,
    PRIMARY KEY (parent, spec)
);
COMMENT ON TABLE wval.partition_indexes IS 'the indexes every partition of a partitioned history table gets (PRIMARY KEY (...) or an index column list with optional WHERE)';

-- wval._index_partition(partition): creates the indexes of its parent's
-- specification on one partition.
CREATE FUNCTION wval._index_partition(part regclass) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    parent_name text;
    spec text;
BEGIN
    SELECT c.relname INTO parent_name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhparent
    WHERE i.inhrelid = part;
    FOR spec IN SELECT p.spec FROM wval.partition_indexes p WHERE p.parent = parent_name ORDER BY p.spec LOOP
        IF spec LIKE 'PRIMARY KEY%' THEN
            EXECUTE format('ALTER TABLE %s ADD %s', part, spec);
        ELSE
            EXECUTE format('CREATE INDEX ON %s %s', part, spec);
        END IF;
    END LOOP;
END
$$;
COMMENT ON FUNCTION wval._index_partition(regclass) IS 'creates the indexes of wval.partition_indexes on a new partition';

CREATE TABLE wval.evaluation_runs (
    run_id             uuid NOT NULL DEFAULT gen_random_uuid(),
    world_id           text NOT NULL,
    strategy_id        text NOT NULL,
    stage              wval.stage NOT NULL,
    kind               text NOT NULL DEFAULT 'single' CHECK (kind IN ('single', 'cohort', 'live', 'portfolio', 'stress', 'revalidation')),
    campaign_id        text,
    risk_tier          text,
    model_card_version text,
    code_hash          text,
    data_snapshot      jsonb,
    context            jsonb COMPRESSION lz4 NOT NULL DEFAULT '{}',
    client_run_id      text,
    returns_hash       text,
    metrics            jsonb COMPRESSION lz4 NOT NULL DEFAULT '{}',
    policy_version     integer,
    ruleset_hash       text,
    profile            text,
    status             text NOT NULL CHECK (status IN ('pass', 'warn', 'fail', 'unvalidated')),
    recommended_stage  wval.recommended_stage,
    recommendation     jsonb COMPRESSION lz4,
    results            jsonb COMPRESSION lz4 NOT NULL DEFAULT '{}',
    linked_run_id      uuid,
    supersedes         uuid,
    as_of              date,
    created_by         text NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now(),
    chain_seq          bigint NOT NULL,
    prev_hash          text NOT NULL,
    row_hash           text NOT NULL
) PARTITION BY RANGE (created_at);
SELECT wval._secure('wval.evaluation_runs');
INSERT INTO wval.partition_indexes (parent, spec) VALUES
    ('evaluation_runs', 'PRIMARY KEY (world_id, run_id, created_at)'),
    ('evaluation_runs', '(run_id)'),
    ('evaluation_runs', '(world_id, strategy_id, stage, created_at DESC)'),
    ('evaluation_runs', '(world_id, status, created_at DESC)'),
    ('evaluation_runs', '(world_id, strategy_id, client_run_id) WHERE client_run_id IS NOT NULL');
-- lz4: the jsonb columns of a run are compressed on every insert (pglz cost a
-- twentieth of wval_evaluate's time)
COMMENT ON TABLE wval.evaluation_runs IS 'every evaluation ever made: metrics, the policy version and ruleset hash applied, the outcome and its provenance; append-only, hash-chained';
COMMENT ON COLUMN wval.evaluation_runs.kind IS 'single | cohort | live | portfolio | stress | revalidation (a deployed strategy''s run re-checked after a policy activation, linked_run_id)';
COMMENT ON COLUMN wval.evaluation_runs.client_run_id IS 'context.run_id: the caller''s idempotency key (same world, strategy and run_id returns the first run)';
COMMENT ON COLUMN wval.evaluation_runs.returns_hash IS 'sha256 of the return series the metrics were computed from: hex(sha256(float8send(r_1) || ... || float8send(r_n)))';
COMMENT ON COLUMN wval.evaluation_runs.metrics IS 'metric blocks (returns, sample, robustness, risk, benchmark, diagnostics, ...)';
COMMENT ON COLUMN wval.evaluation_runs.status IS 'pass | warn | fail | unvalidated (emergency bypass)';
COMMENT ON COLUMN wval.evaluation_runs.recommended_stage IS 'backtest_only | paper_only | paper_ok_live_candidate';
COMMENT ON COLUMN wval.evaluation_runs.recommendation IS 'which profiles were tried for the recommendation and why each stopped';
COMMENT ON COLUMN wval.evaluation_runs.results IS 'check key -> RuleResult';
COMMENT ON COLUMN wval.evaluation_runs.linked_run_id IS 'for cohort, portfolio and stress runs: the candidate run they extend; for revalidation runs: the run they re-checked';
COMMENT ON COLUMN wval.evaluation_runs.supersedes IS 'the run this one corrects';
COMMENT ON COLUMN wval.evaluation_runs.as_of IS 'live runs: the day the realized windows end';
COMMENT ON COLUMN wval.evaluation_runs.run_id IS 'identifier of the run (gen_random_uuid()); rule_results, overrides, ex-post cases and live decisions refer to it';
COMMENT ON COLUMN wval.evaluation_runs.world_id IS 'the world (wval.worlds.world_id) the run was evaluated in';
COMMENT ON COLUMN wval.evaluation_runs.strategy_id IS 'the strategy (an identifier chosen by the caller of wval_evaluate)';
COMMENT ON COLUMN wval.evaluation_runs.stage IS 'backtest | paper | shadow | live: the stage the strategy was evaluated for (it picks the profile of the stored status)';
COMMENT ON COLUMN wval.evaluation_runs.campaign_id IS 'context.campaign_id: the research campaign the run belongs to (wval_evaluate_cohort sets it for the candidates of a cohort); null when not given';
COMMENT ON COLUMN wval.evaluation_runs.risk_tier IS 'the world''s risk tier when the run was made (high | medium | low)';
COMMENT ON COLUMN wval.evaluation_runs.model_card_version IS 'context.model_card_version: provenance, the model card the strategy was documented with; null when not given';
COMMENT ON COLUMN wval.evaluation_runs.code_hash IS 'context.code_hash: provenance, the version of the strategy''s code (e.g. git:4f2a9c1); null when not given';
COMMENT ON COLUMN wval.evaluation_runs.data_snapshot IS 'context.data_snapshot: provenance, the data the run used (e.g. vendor, as_of, the risk snapshot of a portfolio run); null when not given';
COMMENT ON COLUMN wval.evaluation_runs.context IS 'the caller''s context as given (run_id, provenance, actor, metric options), without the benchmark array; {} when none';
COMMENT ON COLUMN wval.evaluation_runs.policy_version IS 'the policy version applied (wval.policy_versions.version, the active one at evaluation); null for unvalidated (bypass) runs';
COMMENT ON COLUMN wval.evaluation_runs.ruleset_hash IS 'sha256 of the materialised ruleset of the profile applied (matches policy_versions.ruleset_hashes of that profile); null when no profile applied';
COMMENT ON COLUMN wval.evaluation_runs.profile IS 'name of the validation profile of the run''s stage that decided the stored status; null when no profile applied';
COMMENT ON COLUMN wval.evaluation_runs.created_by IS 'who made the run: context.actor (or the actor of wval_record_run), else the calling database role';
COMMENT ON COLUMN wval.evaluation_runs.created_at IS 'transaction start time of the evaluation; the partition key (one partition per month)';
COMMENT ON COLUMN wval.evaluation_runs.chain_seq IS 'position of the row in its world''s hash chain, shared by every chained table of the world (1, 2, 3 ... without gaps; in a world with settings.chain_lanes > 1, lane k counts from k * 2^40 + 1); set by the chain trigger';
COMMENT ON COLUMN wval.evaluation_runs.prev_hash IS 'row_hash of the previous link of the same world''s chain (in any table; in the same lane); ''sha256:'' and 64 zeros for a world''s first link';
COMMENT ON COLUMN wval.evaluation_runs.row_hash IS '''sha256:'' || hex of sha256 over prev_hash, table name, chain_seq and the row''s canonical text, newline-separated (docs/store.md); recomputed by wval_verify_chain';

CREATE TABLE wval.evaluation_runs_default PARTITION OF wval.evaluation_runs DEFAULT;
SELECT wval._secure('wval.evaluation_runs_default');
SELECT wval._index_partition('wval.evaluation_runs_default');
SELECT wval._protect('wval.evaluation_runs', 'evaluation_runs');
SELECT wval._protect('wval.evaluation_runs_default');

-- Rule results are stored once, in evaluation_runs.results; the per-check
-- rows analysts query are derived from it (docs/store.md, "Rule results").
-- The defaults are those of runs imported without them (wval_import_runs).
CREATE VIEW wval.rule_results AS
SELECT e.run_id, e.world_id, e.strategy_id, e.stage, r.key AS rule, pg_catalog.split_part(r.key, '.', 1) AS layer,
       r.value ->> 'status' AS status, coalesce(r.value ->> 'severity', 'blocking') AS severity,
       coalesce(r.value ->> 'owner', 'quant') AS owner, coalesce(r.value ->> 'reason_code', 'imported') AS reason_code,
       r.value ->> 'reason' AS reason,
       ARRAY(SELECT pg_catalog.jsonb_array_elements_text(coalesce(r.value -> 'tags', '[]'))) AS tags,
       coalesce(r.value -> 'details', '{}') AS details, e.created_at
FROM wval.evaluation_runs e
CROSS JOIN LATERAL pg_catalog.jsonb_each(e.results) r;
COMMENT ON VIEW wval.rule_results IS 'one row per check result of a run, derived from evaluation_runs.results (stored once there); filter by world_id and created_at, and by run_id, to read only the runs you need';
COMMENT ON COLUMN wval.rule_results.run_id IS 'the run (wval.evaluation_runs.run_id)';
COMMENT ON COLUMN wval.rule_results.world_id IS 'the world (wval.worlds.world_id)';
COMMENT ON COLUMN wval.rule_results.strategy_id IS 'strategy of the run';
COMMENT ON COLUMN wval.rule_results.stage IS 'stage of the run';
COMMENT ON COLUMN wval.rule_results.rule IS 'the check key, e.g. performance.sharpe_min (the key of evaluation_runs.results)';
COMMENT ON COLUMN wval.rule_results.layer IS 'the policy layer of the check (performance, sample, robustness, risk, ...)';
COMMENT ON COLUMN wval.rule_results.status IS 'pass | warn | fail';
COMMENT ON COLUMN wval.rule_results.severity IS 'blocking | soft | info';
COMMENT ON COLUMN wval.rule_results.owner IS 'quant | risk | ops: who answers for the check';
COMMENT ON COLUMN wval.rule_results.reason_code IS 'stable code of the outcome (wval.reason_codes)';
COMMENT ON COLUMN wval.rule_results.reason IS 'human-readable explanation naming the metric, its value and the threshold; null when the check gave none';
COMMENT ON COLUMN wval.rule_results.tags IS 'tags of the check (its layer, plus any the policy gives); {} when none';
COMMENT ON COLUMN wval.rule_results.details IS 'the check''s evidence: {metric, value, op, threshold, mode} (mode enforce or warn)';
COMMENT ON COLUMN wval.rule_results.created_at IS 'created_at of the run (the partition key)';

------------------------------------------------------------------------------
-- Overrides and ex-post failures
------------------------------------------------------------------------------

CREATE SEQUENCE wval.overrides_id_seq;
CREATE TABLE wval.overrides (
    override_id   bigint NOT NULL DEFAULT nextval('wval.overrides_id_seq'),
    run_id        uuid NOT NULL,
    world_id      text NOT NULL,
    strategy_id   text NOT NULL,
    status        text NOT NULL CHECK (status IN ('approved', 'rejected', 'revoked')),
    reason        text,
    actor         text,
    recorded_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    review_due_at timestamptz,
    chain_seq     bigint NOT NULL,
    prev_hash     text NOT NULL,
    row_hash      text NOT NULL,
    login         name DEFAULT session_user,    -- last: where 0.2.0's upgrade adds it
    PRIMARY KEY (world_id, override_id)
);
SELECT wval._secure('wval.overrides');
ALTER SEQUENCE wval.overrides_id_seq OWNED BY wval.overrides.override_id;
CREATE INDEX ON wval.overrides (run_id, recorded_at DESC);
COMMENT ON TABLE wval.overrides IS 'human decisions on runs (approved | rejected | revoked); the latest row per run is its current override state';
COMMENT ON COLUMN wval.overrides.login IS 'the database login that recorded the override (session_user); actor is the person it named; null for overrides recorded before 0.2.0';
COMMENT ON COLUMN wval.overrides.recorded_at IS 'when the decision was recorded (clock time once the run''s lock is held, so that the latest row of a run is its last decision, also within one transaction)';
COMMENT ON COLUMN wval.overrides.review_due_at IS 'approvals must be reviewed by then: recorded_at + 30 days for live runs or high-tier client-critical worlds, + 90 days otherwise';
COMMENT ON COLUMN wval.overrides.override_id IS 'number of the override row (sequence wval.overrides_id_seq)';
COMMENT ON COLUMN wval.overrides.run_id IS 'the run decided on (wval.evaluation_runs.run_id)';
COMMENT ON COLUMN wval.overrides.world_id IS 'the world (wval.worlds.world_id)';
COMMENT ON COLUMN wval.overrides.strategy_id IS 'strategy of the run';
COMMENT ON COLUMN wval.overrides.status IS 'approved (the run may be used despite its outcome) | rejected | revoked (ends an earlier approval)';
COMMENT ON COLUMN wval.overrides.reason IS 'why the validator decided so; empty reasons show in wval.override_queue.missing_fields';
COMMENT ON COLUMN wval.overrides.actor IS 'the person the validator named (a label; login is who acted)';
COMMENT ON COLUMN wval.overrides.chain_seq IS 'position of the row in its world''s hash chain, shared by every chained table of the world (1, 2, 3 ... without gaps; in a world with settings.chain_lanes > 1, lane k counts from k * 2^40 + 1); set by the chain trigger';
COMMENT ON COLUMN wval.overrides.prev_hash IS 'row_hash of the previous link of the same world''s chain (in any table; in the same lane); ''sha256:'' and 64 zeros for a world''s first link';
COMMENT ON COLUMN wval.overrides.row_hash IS '''sha256:'' || hex of sha256 over prev_hash, table name, chain_seq and the row''s canonical text, newline-separated (docs/store.md); recomputed by wval_verify_chain';
SELECT wval._protect('wval.overrides', 'overrides');

CREATE SEQUENCE wval.ex_post_failures_id_seq;
CREATE TABLE wval.ex_post_failures (
    entry_id     bigint NOT NULL DEFAULT nextval('wval.ex_post_failures_id_seq'),
    case_id      uuid NOT NULL,
    run_id       uuid NOT NULL,
    world_id     text NOT NULL,
    strategy_id  text NOT NULL,
    status       text NOT NULL CHECK (status IN ('candidate', 'confirmed', 'dismissed')),
    category     text NOT NULL CHECK (category IN ('risk_breach', 'performance_failure', 'liquidity_failure', 'data_issue', 'ops_incident')),
    reason_code  text NOT NULL,
    severity     text NOT NULL CHECK (severity IN ('critical', 'high', 'medium', 'low')),
    actor        text NOT NULL,
    evidence_url text,
    notes        text,
    source       text NOT NULL DEFAULT 'manual' CHECK (source IN ('manual', 'auto')),
    recorded_at  timestamptz NOT NULL DEFAULT now(),
    chain_seq    bigint NOT NULL,
    prev_hash    text NOT NULL,
    row_hash     text NOT NULL,
    PRIMARY KEY (world_id, case_id, entry_id)
);
SELECT wval._secure('wval.ex_post_failures');
ALTER SEQUENCE wval.ex_post_failures_id_seq OWNED BY wval.ex_post_failures.entry_id;
CREATE INDEX ON wval.ex_post_failures (run_id);
COMMENT ON TABLE wval.ex_post_failures IS 'ex-post failure cases: a strategy that passed validation and later failed; a later row with the same case_id changes the case''s state';
COMMENT ON COLUMN wval.ex_post_failures.entry_id IS 'number of the row (sequence wval.ex_post_failures_id_seq); the latest row per case_id is the case''s state';
COMMENT ON COLUMN wval.ex_post_failures.case_id IS 'the case; every state change of a case is a new row with the same case_id';
COMMENT ON COLUMN wval.ex_post_failures.run_id IS 'the run that passed validation and later failed (wval.evaluation_runs.run_id)';
COMMENT ON COLUMN wval.ex_post_failures.world_id IS 'the world (wval.worlds.world_id)';
COMMENT ON COLUMN wval.ex_post_failures.strategy_id IS 'strategy of the run';
COMMENT ON COLUMN wval.ex_post_failures.status IS 'candidate (suspected) | confirmed | dismissed';
COMMENT ON COLUMN wval.ex_post_failures.category IS 'risk_breach | performance_failure | liquidity_failure | data_issue | ops_incident';
COMMENT ON COLUMN wval.ex_post_failures.reason_code IS 'stable code of the failure, chosen by the validator (an identifier)';
COMMENT ON COLUMN wval.ex_post_failures.severity IS 'critical | high | medium | low';
COMMENT ON COLUMN wval.ex_post_failures.actor IS 'the person the recording validator named';
COMMENT ON COLUMN wval.ex_post_failures.evidence_url IS 'link to the evidence (incident, report); null when none';
COMMENT ON COLUMN wval.ex_post_failures.notes IS 'free-text notes; null when none';
COMMENT ON COLUMN wval.ex_post_failures.source IS 'manual | auto: whether a person or an automated process recorded the state (the source argument of wval_record_failure)';
COMMENT ON COLUMN wval.ex_post_failures.recorded_at IS 'when this state was recorded';
COMMENT ON COLUMN wval.ex_post_failures.chain_seq IS 'position of the row in its world''s hash chain, shared by every chained table of the world (1, 2, 3 ... without gaps; in a world with settings.chain_lanes > 1, lane k counts from k * 2^40 + 1); set by the chain trigger';
COMMENT ON COLUMN wval.ex_post_failures.prev_hash IS 'row_hash of the previous link of the same world''s chain (in any table; in the same lane); ''sha256:'' and 64 zeros for a world''s first link';
COMMENT ON COLUMN wval.ex_post_failures.row_hash IS '''sha256:'' || hex of sha256 over prev_hash, table name, chain_seq and the row''s canonical text, newline-separated (docs/store.md); recomputed by wval_verify_chain';
SELECT wval._protect('wval.ex_post_failures', 'ex_post_failures');

------------------------------------------------------------------------------
-- Audit log
------------------------------------------------------------------------------

CREATE SEQUENCE wval.audit_log_id_seq;
CREATE TABLE wval.audit_log (
    id          bigint NOT NULL DEFAULT nextval('wval.audit_log_id_seq') PRIMARY KEY,
    world_id    text,
    action      text NOT NULL,
    actor       text NOT NULL,
    db_user     text NOT NULL DEFAULT wval._invoker(),
    login       name DEFAULT session_user,
    details     jsonb NOT NULL DEFAULT '{}',
    recorded_at timestamptz NOT NULL DEFAULT now(),
    chain_seq   bigint NOT NULL,
    prev_hash   text NOT NULL,
    row_hash    text NOT NULL
);
SELECT wval._secure('wval.audit_log');
ALTER SEQUENCE wval.audit_log_id_seq OWNED BY wval.audit_log.id;
CREATE INDEX ON wval.audit_log (world_id, recorded_at);
COMMENT ON TABLE wval.audit_log IS 'every administrative act (world change, publish, activate, override, ex-post case, purge, grant) with the actor and the database user';
COMMENT ON COLUMN wval.audit_log.actor IS 'the person the caller named (a label; the login below is who acted)';
COMMENT ON COLUMN wval.audit_log.db_user IS 'the role that called into wval (current_user outside SECURITY DEFINER; honours SET ROLE)';
COMMENT ON COLUMN wval.audit_log.login IS 'the database login of the session (session_user): who acted; null for rows recorded before 0.2.0';
COMMENT ON COLUMN wval.audit_log.world_id IS 'null for acts that concern no single world (their chain is the one of the empty world_id)';
COMMENT ON COLUMN wval.audit_log.id IS 'number of the audit row (sequence wval.audit_log_id_seq): increasing in insertion order';
COMMENT ON COLUMN wval.audit_log.action IS 'what was done, e.g. world_created, world_updated, world_granted, policy_published, policy_activated, override_approved, ex_post_failure_confirmed, stage_promotion, purge, retention_set, schedule_set, ddl_on_wval';
COMMENT ON COLUMN wval.audit_log.details IS 'what the act changed or decided (jsonb object, e.g. old and new values of a world change, the ids written); {} when nothing more';
COMMENT ON COLUMN wval.audit_log.recorded_at IS 'transaction start time of the act';
COMMENT ON COLUMN wval.audit_log.chain_seq IS 'position of the row in its world''s hash chain, shared by every chained table of the world (1, 2, 3 ... without gaps; in a world with settings.chain_lanes > 1, lane k counts from k * 2^40 + 1); set by the chain trigger';
COMMENT ON COLUMN wval.audit_log.prev_hash IS 'row_hash of the previous link of the same world''s chain (in any table; in the same lane); ''sha256:'' and 64 zeros for a world''s first link';
COMMENT ON COLUMN wval.audit_log.row_hash IS '''sha256:'' || hex of sha256 over prev_hash, table name, chain_seq and the row''s canonical text, newline-separated (docs/store.md); recomputed by wval_verify_chain';
SELECT wval._protect('wval.audit_log', 'audit_log');

-- wval._audit(world, action, actor, details): appends one audit row.
CREATE FUNCTION wval._audit(p_world_id text, p_action text, p_actor text, p_details jsonb DEFAULT '{}')
RETURNS bigint
LANGUAGE sql SET search_path = pg_catalog, wval, pg_temp AS $$
    INSERT INTO wval.audit_log (world_id, action, actor, details)
    VALUES (p_world_id, p_action, p_actor, coalesce(p_details, '{}'))
    RETURNING id;
$$;
COMMENT ON FUNCTION wval._audit(text, text, text, jsonb) IS 'appends one row to wval.audit_log';

------------------------------------------------------------------------------
-- Separation of duties by login (docs/roles.md, "People and logins")
--
-- Who acted is the database login (session_user), never the free-text actor,
-- which stays a label.  The same login may not publish and activate a policy
-- version, author a run and approve an override on it, or author a run and
-- promote the strategy on it; a wval_admin may record a governance exception
-- that lets one login do both for a while.  A superuser session is allowed
-- through, and the activation / override / decision records why.
------------------------------------------------------------------------------

CREATE SEQUENCE wval.governance_exceptions_id_seq;
CREATE TABLE wval.governance_exceptions (
    exception_id bigint NOT NULL DEFAULT nextval('wval.governance_exceptions_id_seq'),
    world_id     text NOT NULL,
    login        name NOT NULL,
    rule         text NOT NULL CHECK (rule IN ('two_person', 'override_author', 'promotion_author')),
    reason       text NOT NULL,
    actor        text NOT NULL,
    granted_by   name NOT NULL DEFAULT session_user,
    granted_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    chain_seq    bigint NOT NULL,
    prev_hash    text NOT NULL,
    row_hash     text NOT NULL,
    PRIMARY KEY (world_id, exception_id),
    CHECK (expires_at > granted_at)
);
SELECT wval._secure('wval.governance_exceptions');
ALTER SEQUENCE wval.governance_exceptions_id_seq OWNED BY wval.governance_exceptions.exception_id;
COMMENT ON TABLE wval.governance_exceptions IS 'recorded exceptions to separation of duties: until expires_at, login may play both parts of rule in the world (granted by another login with wval_admin)';
COMMENT ON COLUMN wval.governance_exceptions.rule IS 'two_person (publish and activate a policy version) | override_author (approve an override on an own run) | promotion_author (promote a strategy on an own run)';
COMMENT ON COLUMN wval.governance_exceptions.login IS 'the database login the exception covers';
COMMENT ON COLUMN wval.governance_exceptions.granted_by IS 'the login of the admin who recorded it (never the covered login)';
COMMENT ON COLUMN wval.governance_exceptions.exception_id IS 'number of the exception (sequence wval.governance_exceptions_id_seq)';
COMMENT ON COLUMN wval.governance_exceptions.world_id IS 'the world (wval.worlds.world_id) the exception applies to';
COMMENT ON COLUMN wval.governance_exceptions.reason IS 'why one login may play both parts (required)';
COMMENT ON COLUMN wval.governance_exceptions.actor IS 'the person the granting admin named';
COMMENT ON COLUMN wval.governance_exceptions.granted_at IS 'when the exception was recorded';
COMMENT ON COLUMN wval.governance_exceptions.expires_at IS 'the exception applies until this time (granted_at + valid_for, default one day)';
COMMENT ON COLUMN wval.governance_exceptions.chain_seq IS 'position of the row in its world''s hash chain, shared by every chained table of the world (1, 2, 3 ... without gaps; in a world with settings.chain_lanes > 1, lane k counts from k * 2^40 + 1); set by the chain trigger';
COMMENT ON COLUMN wval.governance_exceptions.prev_hash IS 'row_hash of the previous link of the same world''s chain (in any table; in the same lane); ''sha256:'' and 64 zeros for a world''s first link';
COMMENT ON COLUMN wval.governance_exceptions.row_hash IS '''sha256:'' || hex of sha256 over prev_hash, table name, chain_seq and the row''s canonical text, newline-separated (docs/store.md); recomputed by wval_verify_chain';
SELECT wval._protect('wval.governance_exceptions', 'governance_exceptions');

-- wval._other_login(world, rule, first, did, doing): separation of duties.
-- first is the login (or role) that did the first part; raises WV009 when the
-- calling login or role is that one, unless a governance exception covers it
-- or the session is a superuser's; returns what allowed it (null: independent).
CREATE FUNCTION wval._other_login(p_world text, p_rule text, p_first text, p_did text, p_doing text)
RETURNS jsonb
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    me text := session_user;
    ex wval.governance_exceptions;
BEGIN
    IF p_first IS NULL OR (p_first <> me AND p_first <> wval._invoker()) THEN
        RETURN NULL;
    END IF;
    SELECT * INTO ex FROM wval.governance_exceptions g
    WHERE g.world_id = p_world AND g.login = me AND g.rule = p_rule AND g.expires_at > now()
    ORDER BY g.granted_at DESC LIMIT 1;
    IF FOUND THEN
        RETURN jsonb_build_object('rule', p_rule, 'login', me, 'exception_id', ex.exception_id,
                                  'granted_by', ex.granted_by, 'expires_at', ex.expires_at);
    END IF;
    IF (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = me) THEN
        RETURN jsonb_build_object('rule', p_rule, 'login', me, 'superuser', true);
    END IF;
    RAISE EXCEPTION 'login "%" % and cannot also %', me, p_did, p_doing
        USING ERRCODE = 'WV009',
              DETAIL = format('Separation of duties (%s) compares database logins; the free-text actor is only a label. Session login %L, role %L.',
                              p_rule, me, wval._invoker()),
              HINT = 'A second person does it with a login of their own (docs/roles.md); a wval_admin may record a governance exception with wval_governance_exception().';
END
$$;
COMMENT ON FUNCTION wval._other_login(text, text, text, text, text) IS 'separation of duties by login: WV009 when the calling login or role did the first part, unless a governance exception or a superuser session allows it (returned for the record)';

CREATE FUNCTION public.wval_governance_exception(world_id text, login name, rule text, reason text,
                                                 valid_for interval DEFAULT '1 day', actor text DEFAULT NULL)
RETURNS wval.governance_exceptions
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    p_world text := wval._ident('world_id', world_id);
    p_actor text := wval._ident('actor', coalesce(actor, wval._invoker()));
    g wval.governance_exceptions;
BEGIN
    PERFORM wval._world(p_world);
    PERFORM wval._one_of('rule', rule, ARRAY['two_person', 'override_author', 'promotion_author']);
    PERFORM wval._require_text('reason', reason, '22023', 'Say why one login may play both parts.');
    IF login IS NULL OR NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles r WHERE r.rolname = login AND r.rolcanlogin) THEN
        RAISE EXCEPTION 'invalid value for "login"' USING ERRCODE = '22023',
            DETAIL = format('login is %s.', coalesce(quote_literal(login), 'null')),
            HINT = 'Name an existing login role.';
    END IF;
    IF login = session_user THEN
        RAISE EXCEPTION 'login "%" cannot record a governance exception for itself', login
            USING ERRCODE = 'WV009',
                  HINT = 'Another admin records it.';
    END IF;
    IF valid_for IS NULL OR valid_for < interval '1 minute' OR valid_for > interval '30 days' THEN
        RAISE EXCEPTION 'invalid value for "valid_for"' USING ERRCODE = '22023',
            DETAIL = format('valid_for is %s.', coalesce(valid_for::text, 'null')),
            HINT = 'Exceptions last between 1 minute and 30 days.';
    END IF;
    INSERT INTO wval.governance_exceptions (world_id, login, rule, reason, actor, expires_at)
    VALUES (p_world, login, rule, reason, p_actor, now() + valid_for)
    RETURNING * INTO g;
    PERFORM wval._audit(p_world, 'governance_exception', p_actor,
                        jsonb_build_object('exception_id', g.exception_id, 'login', login, 'rule', rule,
                                           'reason', reason, 'expires_at', g.expires_at));
    RETURN g;
END
$$;
COMMENT ON FUNCTION public.wval_governance_exception(text, name, text, text, interval, text) IS 'lets one login play both parts of a separation-of-duties rule in a world for a while (1 minute to 30 days); recorded by another admin login, audited';

------------------------------------------------------------------------------
-- Partitions (created ahead by wval_maintain, see docs/retention.md)
------------------------------------------------------------------------------

-- Monthly partitions are named <parent>_pYYYYMM and bounded by the first
-- instant of the month in UTC, so that no session TimeZone can make two
-- months overlap.

-- wval._create_month_partition(parent, month): creates, indexes, protects
-- and grants one monthly partition; returns its name.
CREATE FUNCTION wval._create_month_partition(parent regclass, month date) RETURNS text
LANGUAGE plpgsql SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    m date := date_trunc('month', month)::date;
    part text := format('%s_p%s', (SELECT relname FROM pg_class WHERE oid = parent), to_char(m, 'YYYYMM'));
BEGIN
    EXECUTE format('CREATE TABLE wval.%I PARTITION OF %s FOR VALUES FROM (%L) TO (%L)',
                   part, parent, m::timestamp AT TIME ZONE 'UTC',
                   (m + interval '1 month')::timestamp AT TIME ZONE 'UTC');
    PERFORM wval._index_partition(('wval.' || quote_ident(part))::regclass);
    PERFORM wval._protect(('wval.' || quote_ident(part))::regclass);
    PERFORM wval._secure(('wval.' || quote_ident(part))::regclass);
    EXECUTE format('GRANT SELECT ON wval.%I TO wval_analyst', part);
    RETURN part;
END
$$;
COMMENT ON FUNCTION wval._create_month_partition(regclass, date) IS 'creates the monthly partition <parent>_pYYYYMM (UTC month bounds) with its indexes, triggers, row-level security and grants';

-- Work ids: working rows of definer code (the move below, the purge, the
-- import) live in schema wval under a work id, never in temporary tables: a
-- temporary table is found by a name the caller can create first, with
-- triggers that would run with the owner's rights (docs/development.md,
-- "Definer code").
CREATE SEQUENCE wval.work_id_seq;
COMMENT ON SEQUENCE wval.work_id_seq IS 'work ids of the working rows of wval_purge and wval_import_runs (tables wval.work_*) and of the staging tables of a month move';

-- wval._month_partition(parent, month, move): makes sure the month has its
-- own partition.  When the default partition already holds rows of that
-- month, the partition cannot simply be created: with move => false the
-- month stays in the default partition ('left_in_default'); with move =>
-- true those rows leave the default partition under the retention guard and
-- come back unchanged (chain columns included) into the new partition, all
-- in the caller's transaction ('moved'); meanwhile they wait in a staging
-- table wval.work_month_move_<work id> (schema wval: no caller can create or
-- shadow it), dropped before the function returns.  Needs the extension
-- owner to be a superuser (rows that arrive with their chain values are a
-- restore).
CREATE FUNCTION wval._month_partition(parent regclass, month date, move boolean DEFAULT false) RETURNS text
LANGUAGE plpgsql SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    m date := date_trunc('month', month)::date;
    parent_name text := (SELECT relname FROM pg_class WHERE oid = parent);
    part text := format('%s_p%s', parent_name, to_char(m, 'YYYYMM'));
    lo timestamptz := m::timestamp AT TIME ZONE 'UTC';
    hi timestamptz := (m + interval '1 month')::timestamp AT TIME ZONE 'UTC';
    cols text;
    has_rows boolean;
    staging text;
BEGIN
    IF to_regclass('wval.' || quote_ident(part)) IS NOT NULL THEN
        RETURN 'exists';
    END IF;
    EXECUTE format('SELECT EXISTS (SELECT 1 FROM wval.%I WHERE created_at >= %L AND created_at < %L)',
                   parent_name || '_default', lo, hi)
        INTO has_rows;
    IF NOT has_rows THEN
        PERFORM wval._create_month_partition(parent, m);
        RETURN 'created';
    END IF;
    IF NOT coalesce(move, false) THEN
        RETURN 'left_in_default';
    END IF;
    SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum) INTO cols
    FROM pg_attribute a WHERE a.attrelid = parent AND a.attnum > 0 AND NOT a.attisdropped;
    staging := format('work_month_move_%s', nextval('wval.work_id_seq'));
    EXECUTE format('CREATE UNLOGGED TABLE wval.%I AS SELECT %s FROM wval.%I WHERE created_at >= %L AND created_at < %L',
                   staging, cols, parent_name || '_default', lo, hi);
    PERFORM wval._purge_guard(true);
    EXECUTE format('DELETE FROM wval.%I WHERE created_at >= %L AND created_at < %L', parent_name || '_default', lo, hi);
    PERFORM wval._purge_guard(false);
    PERFORM wval._create_month_partition(parent, m);
    EXECUTE format('INSERT INTO %s (%s) SELECT %s FROM wval.%I', parent, cols, cols, staging);
    EXECUTE format('DROP TABLE wval.%I', staging);
    PERFORM wval._audit(NULL, 'partition_rows_moved', wval._invoker(),
                        jsonb_build_object('partition', part, 'from', parent_name || '_default'));
    RETURN 'moved';
END
$$;
COMMENT ON FUNCTION wval._month_partition(regclass, date, boolean) IS 'makes sure a month has its own partition: exists | created | left_in_default | moved (rows of the month taken out of the default partition into the new one, unchanged)';

-- wval_maintain(months_ahead): creates the monthly partitions of the
-- partitioned history tables from the current month (UTC) to months_ahead
-- months ahead (a month whose rows already sit in the default partition is
-- left there), protects them, and returns what it created.
CREATE FUNCTION public.wval_maintain(months_ahead integer DEFAULT 3) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    parent regclass;
    m date;
    part text;
    created text[] := '{}';
    skipped text[] := '{}';
BEGIN
    IF months_ahead IS NULL OR months_ahead < 0 OR months_ahead > 120 THEN
        RAISE EXCEPTION 'invalid value for "months_ahead"' USING ERRCODE = '22023',
            DETAIL = format('months_ahead is %s.', coalesce(months_ahead::text, 'null')),
            HINT = 'Pass a number of months between 0 and 120.';
    END IF;
    FOR parent IN
        SELECT c.oid::regclass FROM pg_class c
        WHERE c.relnamespace = 'wval'::regnamespace AND c.relkind = 'p' AND NOT c.relispartition
        ORDER BY c.relname
    LOOP
        FOR i IN 0 .. months_ahead LOOP
            m := (date_trunc('month', now() AT TIME ZONE 'UTC') + make_interval(months => i))::date;
            part := format('%s_p%s', (SELECT relname FROM pg_class WHERE oid = parent), to_char(m, 'YYYYMM'));
            CASE wval._month_partition(parent, m, false)
                WHEN 'created' THEN created := created || part;
                WHEN 'left_in_default' THEN skipped := skipped || part;
                ELSE NULL;
            END CASE;
        END LOOP;
    END LOOP;
    IF cardinality(created) > 0 THEN
        PERFORM wval._audit(NULL, 'partitions_created', wval._invoker(),
                            jsonb_build_object('created', to_jsonb(created)));
    END IF;
    RETURN jsonb_build_object('created', to_jsonb(created), 'left_in_default', to_jsonb(skipped));
END
$$;
COMMENT ON FUNCTION public.wval_maintain(integer) IS 'creates monthly partitions of the history tables ahead of time (run by the maintenance job)';

------------------------------------------------------------------------------
-- Writes
------------------------------------------------------------------------------

-- wval._world(world_id, lock): the world row, WV010 when it does not exist.
CREATE FUNCTION wval._world(p_world_id text, p_lock boolean DEFAULT false) RETURNS wval.worlds
LANGUAGE plpgsql SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    w wval.worlds;
BEGIN
    IF p_lock THEN
        SELECT * INTO w FROM wval.worlds WHERE world_id = p_world_id FOR UPDATE;
    ELSE
        SELECT * INTO w FROM wval.worlds WHERE world_id = p_world_id;
    END IF;
    -- a world the calling role may not see does not exist for it (security.sql)
    IF NOT FOUND OR NOT wval._can_read(p_world_id) THEN
        RAISE EXCEPTION 'world "%" does not exist', p_world_id
            USING ERRCODE = 'WV010',
                  DETAIL = format('world_id is %L.', p_world_id),
                  HINT = 'Create it first with wval_world_upsert(world_id, risk_tier, client_critical).';
    END IF;
    RETURN w;
END
$$;
COMMENT ON FUNCTION wval._world(text, boolean) IS 'returns (optionally locks) a world; WV010 when it does not exist';

CREATE FUNCTION public.wval_world_upsert(
    world_id text,
    risk_tier text DEFAULT NULL,
    client_critical boolean DEFAULT NULL,
    max_capital_at_risk_pct float8 DEFAULT NULL,
    legal_hold boolean DEFAULT NULL,
    settings jsonb DEFAULT NULL,
    actor text DEFAULT NULL)
RETURNS wval.worlds
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    p_world text := wval._ident('world_id', world_id);
    p_actor text := wval._ident('actor', coalesce(actor, wval._invoker()));
    old wval.worlds;
    new wval.worlds;
BEGIN
    IF risk_tier IS NOT NULL THEN
        PERFORM wval._one_of('risk_tier', risk_tier, ARRAY['high', 'medium', 'low']);
    END IF;
    IF settings IS NOT NULL AND jsonb_typeof(settings) <> 'object' THEN
        RAISE EXCEPTION 'invalid value for "settings"' USING ERRCODE = '22023',
            DETAIL = format('settings is %s.', settings), HINT = 'Pass a jsonb object.';
    END IF;
    IF settings ? 'chain_lanes' AND NOT (jsonb_typeof(settings -> 'chain_lanes') = 'number'
                                         AND (settings ->> 'chain_lanes')::numeric BETWEEN 1 AND 64
                                         AND (settings ->> 'chain_lanes')::numeric % 1 = 0) THEN
        RAISE EXCEPTION 'invalid value for "settings.chain_lanes"' USING ERRCODE = '22023',
            DETAIL = format('chain_lanes is %s.', settings -> 'chain_lanes'),
            HINT = 'Pass a whole number of hash-chain lanes from 1 to 64 (docs/store.md, "Chain lanes").';
    END IF;
    IF max_capital_at_risk_pct IS NOT NULL AND NOT (max_capital_at_risk_pct >= 0 AND max_capital_at_risk_pct <= 100) THEN
        RAISE EXCEPTION 'invalid value for "max_capital_at_risk_pct"' USING ERRCODE = '22023',
            DETAIL = format('max_capital_at_risk_pct is %s.', max_capital_at_risk_pct),
            HINT = 'Pass a percentage between 0 and 100.';
    END IF;

    SELECT * INTO old FROM wval.worlds w WHERE w.world_id = p_world FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO wval.worlds AS w (world_id, risk_tier, client_critical, max_capital_at_risk_pct,
                                     legal_hold, settings, created_by, updated_by)
        VALUES (p_world, coalesce(risk_tier, 'medium'), coalesce(client_critical, false),
                max_capital_at_risk_pct, coalesce(legal_hold, false),
                -- a new world stores the returns of its runs unless told otherwise
                '{"store_returns": true}'::jsonb || coalesce(settings, '{}'),
                p_actor, p_actor)
        ON CONFLICT ON CONSTRAINT worlds_pkey DO NOTHING
        RETURNING * INTO new;
        IF NOT FOUND THEN
            -- a concurrent creator won: update its row like any other change
            RETURN public.wval_world_upsert(world_id, risk_tier, client_critical, max_capital_at_risk_pct,
                                            legal_hold, settings, actor);
        END IF;
        PERFORM wval._audit(p_world, 'world_created', p_actor, to_jsonb(new));
        RETURN new;
    END IF;

    UPDATE wval.worlds w SET
        risk_tier = coalesce(wval_world_upsert.risk_tier, w.risk_tier),
        client_critical = coalesce(wval_world_upsert.client_critical, w.client_critical),
        max_capital_at_risk_pct = coalesce(wval_world_upsert.max_capital_at_risk_pct, w.max_capital_at_risk_pct),
        legal_hold = coalesce(wval_world_upsert.legal_hold, w.legal_hold),
        settings = coalesce(wval_world_upsert.settings, w.settings),
        updated_by = p_actor,
        updated_at = now()
    WHERE w.world_id = p_world
    RETURNING * INTO new;
    IF (to_jsonb(old) - 'updated_at' - 'updated_by') IS DISTINCT FROM (to_jsonb(new) - 'updated_at' - 'updated_by') THEN
        PERFORM wval._audit(p_world, 'world_updated', p_actor,
                            jsonb_build_object('old', to_jsonb(old), 'new', to_jsonb(new)));
    END IF;
    RETURN new;
END
$$;
COMMENT ON FUNCTION public.wval_world_upsert(text, text, boolean, float8, boolean, jsonb, text) IS 'creates a world or changes its configuration (arguments left null keep their value); audited';

CREATE FUNCTION public.wval_policy_publish(world_id text, policy jsonb, actor text, note text DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    p_world text := wval._ident('world_id', world_id);
    p_actor text := wval._ident('actor', actor);
    w wval.worlds := wval._world(p_world, true);	-- the row lock makes versions gapless
    hashes jsonb;
    v integer;
BEGIN
    hashes := wval._policy_validate(policy, wval._fail_closed(w));
    SELECT coalesce(max(pv.version), 0) + 1 INTO v FROM wval.policy_versions pv WHERE pv.world_id = p_world;
    INSERT INTO wval.policy_versions (world_id, version, policy, author, note, ruleset_hashes)
    VALUES (p_world, v, policy, p_actor, note, hashes);
    PERFORM wval._audit(p_world, 'policy_published', p_actor,
                        jsonb_build_object('version', v, 'note', note, 'ruleset_hashes', hashes));
    PERFORM wval._emit('policy_version_published', p_world, 'v' || v,
                       format('policy_version_published:%s:v%s', p_world, v),
                       jsonb_build_object('world_id', p_world, 'version', v, 'ruleset_hashes', hashes,
                                          'author', p_actor));
    RETURN v;
END
$$;
COMMENT ON FUNCTION public.wval_policy_publish(text, jsonb, text, text) IS 'validates a policy document and stores it as the world''s next version (1, 2, 3 ...); does not activate it';

-- wval._activation_stages(stages): the stages an activation names, checked and in
-- pipeline order without duplicates; null (every stage) stays null.
CREATE FUNCTION wval._activation_stages(p_stages text[]) RETURNS text[]
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    s text;
    bad boolean;
BEGIN
    IF p_stages IS NULL THEN
        RETURN NULL;
    END IF;
    -- one dimension first: array_position refuses the others
    bad := coalesce(array_ndims(p_stages), 0) <> 1 OR cardinality(p_stages) > 4;
    IF NOT bad THEN
        bad := array_position(p_stages, NULL) IS NOT NULL;
    END IF;
    IF bad THEN
        RAISE EXCEPTION 'invalid value for "stages"' USING ERRCODE = '22023',
            DETAIL = format('stages is %s.', p_stages),
            HINT = 'Name one to four of backtest, paper, shadow, live (a one-dimensional array), or pass null for every stage.';
    END IF;
    FOREACH s IN ARRAY p_stages LOOP
        PERFORM wval._one_of('stages', s, wval._stages());
    END LOOP;
    RETURN ARRAY(SELECT x FROM unnest(wval._stages()) WITH ORDINALITY u(x, o)
                 WHERE x = ANY (p_stages) ORDER BY o);
END
$$;
COMMENT ON FUNCTION wval._activation_stages(text[]) IS 'checks the stages of a staged activation (22023) and returns them in pipeline order without duplicates; null means every stage';

CREATE FUNCTION public.wval_active_policy_version(world_id text, stage text DEFAULT NULL) RETURNS integer
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    v integer;
BEGIN
    IF stage IS NOT NULL THEN
        PERFORM wval._one_of('stage', stage, wval._stages());
    END IF;
    IF NOT wval._can_read(wval_active_policy_version.world_id) THEN
        RETURN NULL;
    END IF;
    SELECT a.version INTO v FROM wval.policy_activations a
    WHERE a.world_id = wval_active_policy_version.world_id
      AND (wval_active_policy_version.stage IS NULL OR a.stages IS NULL
           OR wval_active_policy_version.stage = ANY (a.stages))
    ORDER BY a.activation_id DESC LIMIT 1;
    RETURN v;
END
$$;
COMMENT ON FUNCTION public.wval_active_policy_version(text, text) IS 'the policy version active at a stage of a world (the latest activation naming the stage or no stages); without a stage, the version of the latest activation whatever its stages; null when none or when the caller may not read the world';

CREATE FUNCTION public.wval_policy_activate(world_id text, version integer, actor text, reason text,
                                            force boolean DEFAULT false, stages text[] DEFAULT NULL)
RETURNS wval.policy_activations
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    p_world text := wval._ident('world_id', world_id);
    p_actor text := wval._ident('actor', actor);
    p_stages text[] := wval._activation_stages(stages);
    w wval.worlds;
    doc jsonb;
    author text;
    published_by text;
    allowed jsonb;
    prev integer;
    prev_by_stage jsonb := '{}';
    st text;
    exceptions jsonb := '[]';
    impact jsonb;
    act wval.policy_activations;
BEGIN
    PERFORM wval._require_text('reason', reason, '22023', 'Say why this version becomes active.');
    w := wval._world(p_world, true);
    SELECT pv.policy, pv.author, pv.published_by INTO doc, author, published_by FROM wval.policy_versions pv
    WHERE pv.world_id = p_world AND pv.version = wval_policy_activate.version;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'policy version % of world "%" does not exist', version, p_world
            USING ERRCODE = 'WV010',
                  DETAIL = format('version is %s.', coalesce(version::text, 'null')),
                  HINT = 'Publish it first with wval_policy_publish(); see wval.policy_versions.';
    END IF;

    -- two-person rule: whoever published a version does not activate it
    IF lower(btrim(author)) = lower(btrim(p_actor)) THEN
        RAISE EXCEPTION 'actor "%" published policy version % of world "%" and cannot also activate it', p_actor, version, p_world
            USING ERRCODE = 'WV009',
                  DETAIL = format('Version %s was published by %L; the activation was requested by %L.', version, author, p_actor),
                  HINT = 'A second person with wval_validator activates it (two-person rule); force does not waive this rule.';
    END IF;
    -- ... and the same rule by login: the label is the caller's word, the login is not
    allowed := wval._other_login(p_world, 'two_person', published_by,
                                 format('published policy version %s of world "%s"', version, p_world), 'activate it');
    IF allowed ? 'exception_id' THEN
        exceptions := exceptions || allowed;     -- an admin's recorded exception
    END IF;

    -- high-tier, client-critical worlds are fail-closed: a policy that tries
    -- to relax on_error / on_missing_metric needs a recorded governance exception
    IF wval._fail_closed(w) AND (coalesce(doc #>> '{validation,on_error}', 'fail') <> 'fail'
                                 OR coalesce(doc #>> '{validation,on_missing_metric}', 'fail') <> 'fail') THEN
        IF NOT coalesce(force, false) THEN
            RAISE EXCEPTION 'policy version % relaxes fail-closed validation in high-tier client-critical world "%"', version, p_world
                USING ERRCODE = 'WV009',
                      DETAIL = format('validation is %s.', doc -> 'validation'),
                      HINT = 'Keep on_error and on_missing_metric at "fail", or activate with force => true and a reason (a recorded governance exception; evaluation stays fail-closed either way).';
        END IF;
        exceptions := exceptions || jsonb_build_object('rule', 'fail_closed', 'validation', doc -> 'validation');
    END IF;

    -- the version each stage of the activation had (a staged rollout moves
    -- some stages only), and the impact gate: the change replayed over the
    -- world's history at each stage against the version active there
    prev := public.wval_active_policy_version(p_world);
    FOREACH st IN ARRAY coalesce(p_stages, wval._stages()) LOOP
        prev_by_stage := prev_by_stage || jsonb_build_object(st, public.wval_active_policy_version(p_world, st));
    END LOOP;
    impact := wval._activation_impact(w, version, prev_by_stage);
    IF (impact ->> 'breached')::boolean THEN
        IF NOT coalesce(force, false) THEN
            RAISE EXCEPTION 'policy version % of world "%" has an impact ratio of % against the active version, at or above the gate %',
                            version, p_world, impact ->> 'impact_ratio', impact ->> 'fail_impact_ratio'
                USING ERRCODE = 'WV008',
                      DETAIL = format('Against the active version %s, stage %s: %s of %s strategies affected (%s status, %s stage changes).',
                                      impact ->> 'old_policy_version', impact ->> 'stage',
                                      impact #>> ARRAY['stages', impact ->> 'stage', 'strategies_affected'],
                                      impact #>> ARRAY['stages', impact ->> 'stage', 'total_strategies'],
                                      impact #>> ARRAY['stages', impact ->> 'stage', 'status_changes'],
                                      impact #>> ARRAY['stages', impact ->> 'stage', 'stage_changes']),
                      HINT = 'Review wval_policy_diff(world_id, active, new, stage), roll out stage by stage (stages => ...), roll new checks out with "mode": "warn" first, or activate with force => true and a reason (recorded in the activation).';
        END IF;
        exceptions := exceptions || jsonb_build_object('rule', 'impact_gate', 'stage', impact -> 'stage',
                                                       'impact_ratio', impact -> 'impact_ratio',
                                                       'fail_impact_ratio', impact -> 'fail_impact_ratio');
    END IF;

    INSERT INTO wval.policy_activations (world_id, version, previous_version, activated_by, approved_by, reason, forced,
                                         details, stages)
    VALUES (p_world, version, prev, p_actor, session_user, reason, coalesce(force, false),
            jsonb_build_object('governance_exceptions', exceptions)
            || CASE WHEN p_stages IS NULL THEN '{}'::jsonb ELSE jsonb_build_object('previous_versions', prev_by_stage) END
            || CASE WHEN impact IS NULL THEN '{}'::jsonb ELSE jsonb_build_object('impact_gate', impact) END,
            p_stages)
    RETURNING * INTO act;
    PERFORM wval._audit(p_world, 'policy_activated', p_actor,
                        jsonb_build_object('version', version, 'previous_version', prev,
                                           'reason', reason, 'forced', coalesce(force, false),
                                           'governance_exceptions', exceptions,
                                           'impact_ratio', impact -> 'impact_ratio')
                        || CASE WHEN p_stages IS NULL THEN '{}'::jsonb
                                ELSE jsonb_build_object('stages', p_stages, 'previous_versions', prev_by_stage) END
                        || CASE WHEN allowed IS NULL THEN '{}'::jsonb
                                ELSE jsonb_build_object('separation_of_duties', allowed) END);
    PERFORM wval._emit('validation_profile_changed', p_world, 'v' || version,
                       format('validation_profile_changed:%s:v%s:%s', p_world, version, act.activation_id),
                       jsonb_build_object('world_id', p_world, 'old_version', prev, 'new_version', version,
                                          'actor', p_actor, 'stages', p_stages, 'previous_versions', prev_by_stage,
                                          'activation_id', act.activation_id));
    IF (impact ->> 'breached')::boolean THEN
        -- forced through the gate: this event survives (the activation commits)
        PERFORM wval._impact_event(p_world,
                                   jsonb_build_object('world_id', p_world, 'source', 'activation', 'forced', true,
                                                      'activation_id', act.activation_id, 'actor', p_actor,
                                                      'stage', impact -> 'stage',
                                                      'old_policy_version', impact -> 'old_policy_version',
                                                      'new_policy_version', version,
                                                      'impact_ratio', impact -> 'impact_ratio',
                                                      'fail_impact_ratio', impact -> 'fail_impact_ratio'),
                                   'activation-' || act.activation_id);
    END IF;
    -- deployed strategies are re-checked by the revalidation job, not here
    PERFORM wval._revalidation_enqueue(act);
    RETURN act;
END
$$;
COMMENT ON FUNCTION public.wval_policy_activate(text, integer, text, text, boolean, text[]) IS 'makes a published policy version the active one at every stage, or (stages => ARRAY[...], a staged rollout) at the stages named (audited, emits validation_profile_changed, queues the re-validation of deployed strategies); governance per activation: the publisher cannot activate (WV009), the impact gate against the version active at each stage (WV008), fail-closed worlds; force => true with a reason passes the gate and the fail-closed rule and is recorded';

CREATE VIEW wval.active_policy_versions AS
SELECT w.world_id, st.stage, a.version, a.activation_id, a.stages AS activation_stages, a.activated_by, a.activated_at
FROM wval.worlds w
CROSS JOIN unnest(wval._stages()) st(stage)
JOIN LATERAL (SELECT x.version, x.activation_id, x.stages, x.activated_by, x.activated_at
              FROM wval.policy_activations x
              WHERE x.world_id = w.world_id AND (x.stages IS NULL OR st.stage = ANY (x.stages))
              ORDER BY x.activation_id DESC LIMIT 1) a ON true;
COMMENT ON VIEW wval.active_policy_versions IS 'the policy version in force at each stage of each world (a staged rollout shows different versions per stage); worlds without an activation are not listed';
COMMENT ON COLUMN wval.active_policy_versions.world_id IS 'the world (wval.worlds.world_id)';
COMMENT ON COLUMN wval.active_policy_versions.stage IS 'backtest | paper | shadow | live';
COMMENT ON COLUMN wval.active_policy_versions.version IS 'the policy version wval_evaluate applies to runs of this stage';
COMMENT ON COLUMN wval.active_policy_versions.activation_id IS 'the activation that put it in force at this stage (wval.policy_activations.activation_id)';
COMMENT ON COLUMN wval.active_policy_versions.activation_stages IS 'the stages that activation named; null when it applied to every stage';
COMMENT ON COLUMN wval.active_policy_versions.activated_by IS 'the person named by the activating validator';
COMMENT ON COLUMN wval.active_policy_versions.activated_at IS 'when the version became active at this stage';

-- wval._imported(context): true for a run stored by wval_import_runs.  Such a
-- run is history, not a validation by wval: no decision reads it (stage
-- promotions, decay baselines, selection, live runs and demotion streaks,
-- portfolio candidates).  wval_evaluate refuses the key in a caller's context.
CREATE FUNCTION wval._imported(context jsonb) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(context -> 'imported' = 'true'::jsonb, false)
$$;
COMMENT ON FUNCTION wval._imported(jsonb) IS 'true for a run imported by wval_import_runs (context.imported): history that justifies no decision';

-- wval._run(run_id): the stored run, WV010 when it does not exist.
CREATE FUNCTION wval._run(p_run_id uuid) RETURNS wval.evaluation_runs
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    r wval.evaluation_runs;
BEGIN
    SELECT * INTO r FROM wval.evaluation_runs WHERE run_id = p_run_id LIMIT 1;
    IF NOT FOUND OR NOT wval._world_access((SELECT oid FROM pg_roles WHERE rolname = wval._invoker()), r.world_id, 'read') THEN
        RAISE EXCEPTION 'evaluation run % does not exist', p_run_id
            USING ERRCODE = 'WV010',
                  DETAIL = format('run_id is %s.', coalesce(p_run_id::text, 'null')),
                  HINT = 'Look the run up in wval.evaluation_runs or wval.latest_runs.';
    END IF;
    RETURN r;
END
$$;
COMMENT ON FUNCTION wval._run(uuid) IS 'returns a stored run; WV010 when it does not exist';

-- wval._run_lock(run, mode): locks a stored run's row ('key share': it stays
-- while we reference it; 'no key update': also one such caller per run at a
-- time).  wval_purge() locks the runs it removes FOR UPDATE and re-checks
-- them afterwards, so a reference recorded under this lock either commits
-- before the purge decides (and the run is kept) or finds the run gone
-- (WV010).
CREATE FUNCTION wval._run_lock(p_run wval.evaluation_runs, p_mode text) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, wval, pg_temp AS $$
BEGIN
    IF p_mode = 'no key update' THEN
        PERFORM 1 FROM wval.evaluation_runs x
        WHERE x.run_id = p_run.run_id AND x.world_id = p_run.world_id AND x.created_at = p_run.created_at
        FOR NO KEY UPDATE;
    ELSE
        PERFORM 1 FROM wval.evaluation_runs x
        WHERE x.run_id = p_run.run_id AND x.world_id = p_run.world_id AND x.created_at = p_run.created_at
        FOR KEY SHARE;
    END IF;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'evaluation run % does not exist', p_run.run_id
            USING ERRCODE = 'WV010',
                  DETAIL = format('run_id is %s; it was purged while this call waited for it.', p_run.run_id),
                  HINT = 'Look the run up in wval.evaluation_runs or wval.latest_runs.';
    END IF;
END
$$;
COMMENT ON FUNCTION wval._run_lock(wval.evaluation_runs, text) IS 'locks a stored run''s row (key share | no key update) against a concurrent purge; WV010 when a purge removed it meanwhile';

CREATE FUNCTION public.wval_override(run_id uuid, status text, reason text, actor text)
RETURNS wval.overrides
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    r wval.evaluation_runs := wval._run(run_id);
    w wval.worlds;
    missing text[] := '{}';
    at timestamptz;
    due timestamptz;
    allowed jsonb;
    o wval.overrides;
BEGIN
    PERFORM wval._one_of('status', status, ARRAY['approved', 'rejected', 'revoked']);
    IF status = 'approved' THEN
        IF reason IS NULL OR btrim(reason) = '' THEN missing := missing || 'reason'::text; END IF;
        IF actor IS NULL OR btrim(actor) = '' THEN missing := missing || 'actor'::text; END IF;
        IF cardinality(missing) > 0 THEN
            RAISE EXCEPTION 'an approved override needs %', array_to_string(missing, ' and ')
                USING ERRCODE = 'WV009',
                      DETAIL = format('reason is %s, actor is %s.', coalesce(quote_literal(reason), 'null'),
                                      coalesce(quote_literal(actor), 'null')),
                      HINT = 'Approve with a non-blank reason and the name of the approving person.';
        END IF;
    END IF;
    IF actor IS NOT NULL THEN
        PERFORM wval._ident('actor', actor);
    END IF;
    -- independent validation: the author of a run does not approve it
    IF status = 'approved' AND lower(btrim(actor)) = lower(btrim(r.created_by)) THEN
        RAISE EXCEPTION 'actor "%" created the run and cannot approve an override on it', actor
            USING ERRCODE = 'WV009',
                  DETAIL = format('Run %s was created by %L.', r.run_id, r.created_by),
                  HINT = 'Another person with wval_validator approves overrides (separation of duties).';
    END IF;
    IF status = 'approved' THEN
        allowed := wval._other_login(r.world_id, 'override_author', r.created_by,
                                     format('created run %s', r.run_id), 'approve an override on it');
    END IF;
    w := wval._world(r.world_id);
    -- the run's row lock: decisions on one run are recorded one after the
    -- other (the later one waits and becomes the current override), and a
    -- purge that is removing the run (it holds FOR UPDATE on it) finishes
    -- first: then the run is gone and this call answers WV010
    PERFORM wval._run_lock(r, 'no key update');
    -- recorded when the lock is held, so that recorded_at follows the order
    -- of the decisions (now() is the start of the transaction)
    at := clock_timestamp();
    IF status = 'approved' THEN
        due := at + CASE WHEN r.stage = 'live' OR r.kind = 'live'
                              OR (w.risk_tier = 'high' AND w.client_critical)
                         THEN interval '30 days' ELSE interval '90 days' END;
    END IF;
    INSERT INTO wval.overrides (run_id, world_id, strategy_id, status, reason, actor, recorded_at, review_due_at)
    VALUES (r.run_id, r.world_id, r.strategy_id, status, reason, actor, at, due)
    RETURNING * INTO o;
    PERFORM wval._audit(r.world_id, 'override_' || status, coalesce(actor, wval._invoker()),
                        jsonb_build_object('run_id', r.run_id, 'strategy_id', r.strategy_id,
                                           'reason', reason, 'review_due_at', due)
                        || CASE WHEN allowed IS NULL THEN '{}'::jsonb
                                ELSE jsonb_build_object('separation_of_duties', allowed) END);
    PERFORM wval._emit('evaluation_run_updated', r.world_id, r.run_id::text,
                       format('evaluation_run_updated:%s:%s:override:%s', r.world_id, r.run_id, o.override_id),
                       jsonb_build_object('run_id', r.run_id, 'world_id', r.world_id, 'strategy_id', r.strategy_id,
                                          'change_type', 'override', 'status', status,
                                          'review_due_at', due));
    RETURN o;
END
$$;
COMMENT ON FUNCTION public.wval_override(uuid, text, text, text) IS 'records an override (approved | rejected | revoked) on a run; approvals need reason and actor (WV009), not by the run''s author (WV009), and get a review date';

CREATE FUNCTION public.wval_record_failure(
    run_id uuid,
    category text,
    reason_code text,
    severity text,
    actor text,
    evidence_url text DEFAULT NULL,
    notes text DEFAULT NULL,
    status text DEFAULT 'candidate',
    source text DEFAULT 'manual',
    case_id uuid DEFAULT NULL)
RETURNS wval.ex_post_failures
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    r wval.evaluation_runs := wval._run(run_id);
    p_actor text := wval._ident('actor', actor);
    f wval.ex_post_failures;
BEGIN
    PERFORM wval._one_of('category', category,
                         ARRAY['risk_breach', 'performance_failure', 'liquidity_failure', 'data_issue', 'ops_incident']);
    PERFORM wval._one_of('severity', severity, ARRAY['critical', 'high', 'medium', 'low']);
    PERFORM wval._one_of('status', status, ARRAY['candidate', 'confirmed', 'dismissed']);
    PERFORM wval._one_of('source', source, ARRAY['manual', 'auto']);
    PERFORM wval._require_text('reason_code', reason_code);
    -- keeps a purge from removing the run while the case is being opened
    PERFORM wval._run_lock(r, 'key share');
    IF case_id IS NOT NULL AND NOT EXISTS (
        SELECT 1 FROM wval.ex_post_failures e WHERE e.case_id = wval_record_failure.case_id AND e.run_id = r.run_id) THEN
        RAISE EXCEPTION 'ex-post failure case % does not exist for run %', case_id, r.run_id
            USING ERRCODE = 'WV010',
                  DETAIL = format('case_id is %s.', case_id),
                  HINT = 'Leave case_id null to open a new case; pass the case_id of an existing case of this run to change its state.';
    END IF;
    INSERT INTO wval.ex_post_failures (case_id, run_id, world_id, strategy_id, status, category, reason_code,
                                       severity, actor, evidence_url, notes, source)
    VALUES (coalesce(case_id, gen_random_uuid()), r.run_id, r.world_id, r.strategy_id, status, category,
            reason_code, severity, p_actor, evidence_url, notes, source)
    RETURNING * INTO f;
    PERFORM wval._audit(r.world_id, 'ex_post_failure_' || status, p_actor,
                        jsonb_build_object('case_id', f.case_id, 'run_id', r.run_id, 'category', category,
                                           'reason_code', reason_code, 'severity', severity, 'source', source));
    PERFORM wval._emit('evaluation_run_updated', r.world_id, r.run_id::text,
                       format('evaluation_run_updated:%s:%s:ex_post_failure:%s', r.world_id, r.run_id, f.entry_id),
                       jsonb_build_object('run_id', r.run_id, 'world_id', r.world_id, 'strategy_id', r.strategy_id,
                                          'change_type', 'ex_post_failure', 'case_id', f.case_id,
                                          'status', status, 'category', category, 'severity', severity));
    RETURN f;
END
$$;
COMMENT ON FUNCTION public.wval_record_failure(uuid, text, text, text, text, text, text, text, text, uuid) IS 'opens an ex-post failure case on a run, or (with case_id) records its next state';

------------------------------------------------------------------------------
-- Hash chain verification
------------------------------------------------------------------------------

-- wval_chain_problems(world_id): the first broken link of a world's chain
-- (no row when the chain is intact).
CREATE FUNCTION public.wval_chain_problems(world_id text)
RETURNS TABLE (table_name text, chain_seq bigint, problem text, expected text, found text)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    key text := coalesce(world_id, '');
    parts text[] := '{}';
    t record;
    last record;
BEGIN
    FOR t IN
        SELECT tg.tgrelid::regclass AS rel, split_part(encode(tg.tgargs, 'escape'), '\000', 1) AS args
        FROM pg_trigger tg JOIN pg_class c ON c.oid = tg.tgrelid
        WHERE tg.tgfoid = 'wval._chain'::regproc AND NOT c.relispartition AND tg.tgparentid = 0
        ORDER BY 1
    LOOP
        parts := parts || format(
            'SELECT %L::text AS t, x.chain_seq, x.chain_seq AS end_seq, x.prev_hash, x.row_hash,
                    wval._row_hash(%L, x.chain_seq, x.prev_hash, x) AS calc
             FROM %s x WHERE %s',
            t.args, t.args, t.rel,
            CASE WHEN key = '' THEN 'x.world_id IS NULL' ELSE 'x.world_id = $1' END);
    END LOOP;
    -- a tombstone stands for one removed link, or (last_seq) a range of them
    parts := parts || 'SELECT s.table_name, s.chain_seq, coalesce(s.last_seq, s.chain_seq), s.prev_hash, s.row_hash, s.row_hash
                       FROM wval.chain_tombstones s WHERE s.world_id = $1'::text;

    RETURN QUERY EXECUTE format(
        'WITH r AS (%s),
              o AS (SELECT r.*, lag(r.row_hash) OVER w AS lag_hash,
                           coalesce(lag(r.end_seq) OVER w, (r.chain_seq >> 40) << 40) AS lag_seq
                    FROM r WINDOW w AS (PARTITION BY r.chain_seq >> 40 ORDER BY r.chain_seq))
         SELECT o.t, o.chain_seq,
                CASE WHEN o.chain_seq <> o.lag_seq + 1 THEN ''missing or duplicate rows before this one''
                     WHEN o.prev_hash IS DISTINCT FROM coalesce(o.lag_hash, %L) THEN ''prev_hash does not match the previous row''
                     ELSE ''row content does not match its row_hash'' END,
                CASE WHEN o.chain_seq <> o.lag_seq + 1 THEN (o.lag_seq + 1)::text
                     WHEN o.prev_hash IS DISTINCT FROM coalesce(o.lag_hash, %L) THEN coalesce(o.lag_hash, %L)
                     ELSE o.calc END,
                CASE WHEN o.chain_seq <> o.lag_seq + 1 THEN o.chain_seq::text
                     WHEN o.prev_hash IS DISTINCT FROM coalesce(o.lag_hash, %L) THEN o.prev_hash
                     ELSE o.row_hash END
         FROM o
         WHERE o.chain_seq <> o.lag_seq + 1
            OR o.prev_hash IS DISTINCT FROM coalesce(o.lag_hash, %L)
            OR o.calc IS DISTINCT FROM o.row_hash
         ORDER BY o.chain_seq LIMIT 1',
        array_to_string(parts, ' UNION ALL '),
        'sha256:' || repeat('0', 64), 'sha256:' || repeat('0', 64), 'sha256:' || repeat('0', 64),
        'sha256:' || repeat('0', 64), 'sha256:' || repeat('0', 64))
    USING key;
    IF FOUND THEN
        RETURN;
    END IF;

    -- rows removed at the end of a lane leave its head pointing past them
    EXECUTE format(
        'WITH r AS (%s),
              l AS (SELECT DISTINCT ON (r.chain_seq >> 40) (r.chain_seq >> 40)::integer AS lane,
                           r.t, r.end_seq, r.row_hash
                    FROM r ORDER BY r.chain_seq >> 40, r.chain_seq DESC)
         SELECT l.t, l.end_seq AS chain_seq, l.row_hash, h.seq AS head_seq, h.head_hash
         FROM wval.chain_heads h LEFT JOIN l ON l.lane = h.lane
         WHERE h.world_id = $1 AND (l.end_seq IS DISTINCT FROM h.seq OR l.row_hash IS DISTINCT FROM h.head_hash)
         ORDER BY h.lane LIMIT 1',
        array_to_string(parts, ' UNION ALL '))
        INTO last USING key;
    IF last.head_seq IS NOT NULL THEN
        -- (returned as a row: an assignment to the column "found" would set
        -- PL/pgSQL's FOUND instead)
        RETURN QUERY SELECT coalesce(last.t, 'wval.chain_heads'), last.chain_seq,
                            'the chain ends before its recorded head (rows missing at the end)'::text,
                            last.head_seq || ' ' || last.head_hash,
                            coalesce(last.chain_seq::text || ' ' || last.row_hash, 'no rows');
        RETURN;
    END IF;

    -- tables outside the chain are checked against the chained rows that
    -- record them (rule results need no check: wval.rule_results is derived
    -- from the runs' results): the world's configuration against its latest
    -- audited change ...
    RETURN QUERY
    SELECT 'worlds'::text, a.chain_seq,
           CASE WHEN a.id IS NULL THEN 'the world has no world_created or world_updated audit row'
                ELSE 'the world row differs from its latest audited change' END,
           coalesce(a.state::text, 'an audited change'),
           jsonb_build_object('risk_tier', to_jsonb(w) -> 'risk_tier', 'client_critical', to_jsonb(w) -> 'client_critical',
                              'max_capital_at_risk_pct', to_jsonb(w) -> 'max_capital_at_risk_pct',
                              'legal_hold', to_jsonb(w) -> 'legal_hold', 'settings', to_jsonb(w) -> 'settings')::text
    FROM wval.worlds w
    LEFT JOIN LATERAL (
        SELECT l.id, l.chain_seq,
               (SELECT jsonb_object_agg(k, x.doc -> k) FROM unnest(ARRAY['risk_tier', 'client_critical',
                       'max_capital_at_risk_pct', 'legal_hold', 'settings']) k) AS state
        FROM wval.audit_log l
        CROSS JOIN LATERAL (SELECT CASE l.action WHEN 'world_created' THEN l.details ELSE l.details -> 'new' END AS doc) x
        WHERE l.world_id = w.world_id AND l.action IN ('world_created', 'world_updated')
        ORDER BY l.chain_seq DESC LIMIT 1) a ON true
    WHERE w.world_id = key
      AND (a.id IS NULL
           OR a.state IS DISTINCT FROM (SELECT jsonb_object_agg(k, to_jsonb(w) -> k) FROM unnest(ARRAY['risk_tier',
                       'client_critical', 'max_capital_at_risk_pct', 'legal_hold', 'settings']) k));
    IF FOUND THEN
        RETURN;
    END IF;

    -- ... and world grants against the audit rows of wval_world_grant / _revoke
    RETURN QUERY
    WITH g AS (
        SELECT x.role_name::text AS role_name, x.privilege, count(*) AS n
        FROM wval.world_grants x
        WHERE x.granted_at <> '-infinity' AND x.world_id = CASE WHEN key = '' THEN '*' ELSE key END
        GROUP BY 1, 2
    ), a AS (
        SELECT l.details ->> 'role' AS role_name,
               CASE l.action WHEN 'world_revoked' THEN 'none' ELSE l.details ->> 'privilege' END AS privilege, count(*) AS n
        FROM wval.audit_log l
        WHERE l.action IN ('world_granted', 'world_revoked')
          AND l.details ->> 'world_id' = CASE WHEN key = '' THEN '*' ELSE key END
          AND (CASE WHEN key = '' THEN l.world_id IS NULL ELSE l.world_id = key END)
        GROUP BY 1, 2
    )
    SELECT 'world_grants'::text, NULL::bigint,
           format('%s grant row(s) of role %s (%s) without their audit row', g.n - coalesce(a.n, 0), g.role_name, g.privilege),
           coalesce(a.n, 0)::text, g.n::text
    FROM g LEFT JOIN a ON a.role_name = g.role_name AND a.privilege = g.privilege
    WHERE g.n > coalesce(a.n, 0)
    ORDER BY g.role_name, g.privilege LIMIT 1;
END
$$;
COMMENT ON FUNCTION public.wval_chain_problems(text) IS 'the first broken link of a world''s hash chain (table, chain_seq, problem, expected, found), else the first row of worlds or world_grants that the audit log does not account for; no row when intact. Pass null for the chain of global audit rows';

CREATE FUNCTION public.wval_verify_chain(world_id text) RETURNS boolean
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    p record;
BEGIN
    SELECT * INTO p FROM public.wval_chain_problems(world_id);
    IF FOUND THEN
        RAISE NOTICE 'hash chain of world "%" is broken at % chain_seq %: %', coalesce(world_id, ''),
            p.table_name, p.chain_seq, p.problem
            USING DETAIL = format('expected %s, found %s', p.expected, p.found);
        RETURN false;
    END IF;
    RETURN true;
END
$$;
COMMENT ON FUNCTION public.wval_verify_chain(text) IS 'true when the world''s hash chain is intact; otherwise false and a NOTICE naming the first broken row';

------------------------------------------------------------------------------
-- DDL on schema wval outside wval's writers is audited
------------------------------------------------------------------------------

-- wval._ddl_audit_record(dropped): one audit row (global chain) per object of
-- schema wval that the current command created, altered or (dropped) removed.
-- The event trigger runs it as the extension owner (store.c).
CREATE FUNCTION wval._ddl_audit_record(dropped boolean) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    c record;
BEGIN
    IF dropped THEN
        FOR c IN SELECT d.object_type, d.object_identity FROM pg_event_trigger_dropped_objects() d
                 WHERE d.schema_name = 'wval' AND d.original
                   AND d.object_type IN ('table', 'trigger', 'policy', 'rule', 'function') LOOP
            PERFORM wval._audit(NULL, 'ddl_on_wval', wval._invoker(),
                                jsonb_build_object('command', 'DROP', 'object_type', c.object_type,
                                                   'object', c.object_identity, 'query', left(current_query(), 2000)));
        END LOOP;
        RETURN;
    END IF;
    FOR c IN SELECT d.command_tag, d.object_type, d.object_identity, wval._ddl_weakens(d.command) AS weakens
             FROM pg_event_trigger_ddl_commands() d
             WHERE d.schema_name = 'wval' AND NOT d.in_extension LOOP
        CONTINUE WHEN c.weakens IS NULL;
        PERFORM wval._audit(NULL, 'ddl_on_wval', wval._invoker(),
                            jsonb_build_object('command', c.command_tag || ' ' || c.weakens, 'object_type', c.object_type,
                                               'object', c.object_identity, 'query', left(current_query(), 2000)));
    END LOOP;
END
$$;
COMMENT ON FUNCTION wval._ddl_audit_record(boolean) IS 'writes an audit row (action ddl_on_wval) for each object of schema wval the current DDL command touched; called by the event trigger wval_ddl_audit';

CREATE FUNCTION wval._ddl_weakens(command pg_ddl_command) RETURNS text
    AS 'MODULE_PATHNAME', 'wval_ddl_weakens' LANGUAGE C STRICT;
COMMENT ON FUNCTION wval._ddl_weakens(pg_ddl_command) IS 'for an ALTER TABLE that disables triggers, rules or row-level security (or demotes an ALWAYS trigger): which; else null';

CREATE FUNCTION wval._ddl_audit() RETURNS event_trigger
    AS 'MODULE_PATHNAME', 'wval_ddl_audit' LANGUAGE C;
COMMENT ON FUNCTION wval._ddl_audit() IS 'event trigger: audits DDL on schema wval that does not come from wval''s own functions (ALTER TABLE ... DISABLE TRIGGER, DROP TRIGGER, ...)';
CREATE EVENT TRIGGER wval_ddl_audit ON ddl_command_end EXECUTE FUNCTION wval._ddl_audit();
ALTER EVENT TRIGGER wval_ddl_audit ENABLE ALWAYS;
CREATE EVENT TRIGGER wval_ddl_audit_drop ON sql_drop EXECUTE FUNCTION wval._ddl_audit();
ALTER EVENT TRIGGER wval_ddl_audit_drop ENABLE ALWAYS;

------------------------------------------------------------------------------
-- Reads analysts expect
------------------------------------------------------------------------------

CREATE VIEW wval.current_overrides AS
SELECT DISTINCT ON (o.run_id) o.*
FROM wval.overrides o
ORDER BY o.run_id, o.recorded_at DESC, o.override_id DESC;
COMMENT ON VIEW wval.current_overrides IS 'the current override state of each run (its latest override row)';
COMMENT ON COLUMN wval.current_overrides.override_id IS 'number of the override row (sequence wval.overrides_id_seq)';
COMMENT ON COLUMN wval.current_overrides.run_id IS 'the run decided on (wval.evaluation_runs.run_id)';
COMMENT ON COLUMN wval.current_overrides.world_id IS 'the world (wval.worlds.world_id)';
COMMENT ON COLUMN wval.current_overrides.strategy_id IS 'strategy of the run';
COMMENT ON COLUMN wval.current_overrides.status IS 'approved (the run may be used despite its outcome) | rejected | revoked (ends an earlier approval)';
COMMENT ON COLUMN wval.current_overrides.reason IS 'why the validator decided so; empty reasons show in wval.override_queue.missing_fields';
COMMENT ON COLUMN wval.current_overrides.actor IS 'the person the validator named (a label; login is who acted)';
COMMENT ON COLUMN wval.current_overrides.login IS 'the database login that recorded the override (session_user); actor is the person it named; null for overrides recorded before 0.2.0';
COMMENT ON COLUMN wval.current_overrides.recorded_at IS 'when the decision was recorded (clock time once the run''s lock is held, so that the latest row of a run is its last decision, also within one transaction)';
COMMENT ON COLUMN wval.current_overrides.review_due_at IS 'approvals must be reviewed by then: recorded_at + 30 days for live runs or high-tier client-critical worlds, + 90 days otherwise';
COMMENT ON COLUMN wval.current_overrides.chain_seq IS 'position of the row in its world''s hash chain, shared by every chained table of the world (1, 2, 3 ... without gaps; in a world with settings.chain_lanes > 1, lane k counts from k * 2^40 + 1); set by the chain trigger';
COMMENT ON COLUMN wval.current_overrides.prev_hash IS 'row_hash of the previous link of the same world''s chain (in any table; in the same lane); ''sha256:'' and 64 zeros for a world''s first link';
COMMENT ON COLUMN wval.current_overrides.row_hash IS '''sha256:'' || hex of sha256 over prev_hash, table name, chain_seq and the row''s canonical text, newline-separated (docs/store.md); recomputed by wval_verify_chain';

CREATE VIEW wval.latest_runs AS
SELECT DISTINCT ON (r.world_id, r.strategy_id, r.stage)
       r.world_id, r.strategy_id, r.stage, r.run_id, r.kind, r.status, r.recommended_stage,
       r.policy_version, r.ruleset_hash, r.profile, r.created_at,
       co.status AS override_status, co.review_due_at AS override_review_due_at,
       (co.status = 'approved' AND co.review_due_at < now()) AS override_overdue
FROM wval.evaluation_runs r
LEFT JOIN wval.current_overrides co ON co.run_id = r.run_id
WHERE r.kind IN ('single', 'live')
ORDER BY r.world_id, r.strategy_id, r.stage, r.created_at DESC, r.chain_seq DESC;
COMMENT ON VIEW wval.latest_runs IS 'latest run per (world, strategy, stage) with the current override state folded in';
COMMENT ON COLUMN wval.latest_runs.world_id IS 'the world (wval.worlds.world_id)';
COMMENT ON COLUMN wval.latest_runs.strategy_id IS 'the strategy (an identifier chosen by the caller of wval_evaluate)';
COMMENT ON COLUMN wval.latest_runs.stage IS 'backtest | paper | shadow | live: one row per stage the strategy was evaluated at';
COMMENT ON COLUMN wval.latest_runs.run_id IS 'the latest single or live run of (world, strategy, stage)';
COMMENT ON COLUMN wval.latest_runs.kind IS 'single | live (cohort, portfolio and stress runs are not listed)';
COMMENT ON COLUMN wval.latest_runs.status IS 'pass | warn | fail | unvalidated';
COMMENT ON COLUMN wval.latest_runs.recommended_stage IS 'backtest_only | paper_only | paper_ok_live_candidate';
COMMENT ON COLUMN wval.latest_runs.policy_version IS 'the policy version applied; null for unvalidated runs';
COMMENT ON COLUMN wval.latest_runs.ruleset_hash IS 'sha256 of the ruleset applied';
COMMENT ON COLUMN wval.latest_runs.profile IS 'the validation profile that decided the status';
COMMENT ON COLUMN wval.latest_runs.created_at IS 'when the run was made';
COMMENT ON COLUMN wval.latest_runs.override_status IS 'approved | rejected | revoked: the run''s current override (wval.current_overrides); null without one';
COMMENT ON COLUMN wval.latest_runs.override_review_due_at IS 'review date of that override; null without one';
COMMENT ON COLUMN wval.latest_runs.override_overdue IS 'true for an approved override past its review date; null without an override';

CREATE FUNCTION public.wval_run_history(world_id text, strategy_id text)
RETURNS SETOF wval.evaluation_runs
LANGUAGE sql STABLE AS $$
    SELECT r.* FROM wval.evaluation_runs r
    WHERE r.world_id = wval_run_history.world_id AND r.strategy_id = wval_run_history.strategy_id
    ORDER BY r.created_at, r.chain_seq;
$$;
COMMENT ON FUNCTION public.wval_run_history(text, text) IS 'every run of a strategy with its policy version and outcome, oldest first';

CREATE VIEW wval.override_queue AS
SELECT o.world_id, o.strategy_id, o.run_id, o.override_id, o.actor, o.reason, o.recorded_at, o.review_due_at,
       o.review_due_at < now() AS overdue,
       array_remove(ARRAY[CASE WHEN o.reason IS NULL OR btrim(o.reason) = '' THEN 'reason' END,
                          CASE WHEN o.actor IS NULL OR btrim(o.actor) = '' THEN 'actor' END,
                          CASE WHEN o.review_due_at IS NULL THEN 'review_due_at' END], NULL) AS missing_fields
FROM wval.current_overrides o
WHERE o.status = 'approved'
ORDER BY o.review_due_at < now() DESC, o.review_due_at;
COMMENT ON VIEW wval.override_queue IS 'approved overrides with their review date, overdue flag and missing fields; overdue first';
COMMENT ON COLUMN wval.override_queue.world_id IS 'the world (wval.worlds.world_id)';
COMMENT ON COLUMN wval.override_queue.strategy_id IS 'strategy of the run';
COMMENT ON COLUMN wval.override_queue.run_id IS 'the run with an approved override';
COMMENT ON COLUMN wval.override_queue.override_id IS 'the approving override row (wval.overrides.override_id)';
COMMENT ON COLUMN wval.override_queue.actor IS 'the person the approving validator named';
COMMENT ON COLUMN wval.override_queue.reason IS 'the approval''s reason';
COMMENT ON COLUMN wval.override_queue.recorded_at IS 'when the approval was recorded';
COMMENT ON COLUMN wval.override_queue.review_due_at IS 'when the approval must be reviewed';
COMMENT ON COLUMN wval.override_queue.overdue IS 'true when review_due_at has passed';
COMMENT ON COLUMN wval.override_queue.missing_fields IS 'fields of the approval that are empty: reason, actor, review_due_at; {} when complete';

CREATE VIEW wval.ex_post_cases AS
SELECT DISTINCT ON (f.case_id) f.*
FROM wval.ex_post_failures f
ORDER BY f.case_id, f.recorded_at DESC, f.entry_id DESC;
COMMENT ON VIEW wval.ex_post_cases IS 'the current state of each ex-post failure case';
COMMENT ON COLUMN wval.ex_post_cases.entry_id IS 'the row of wval.ex_post_failures holding the case''s current state';
COMMENT ON COLUMN wval.ex_post_cases.case_id IS 'the case; every state change of a case is a new row with the same case_id';
COMMENT ON COLUMN wval.ex_post_cases.run_id IS 'the run that passed validation and later failed (wval.evaluation_runs.run_id)';
COMMENT ON COLUMN wval.ex_post_cases.world_id IS 'the world (wval.worlds.world_id)';
COMMENT ON COLUMN wval.ex_post_cases.strategy_id IS 'strategy of the run';
COMMENT ON COLUMN wval.ex_post_cases.status IS 'candidate (suspected) | confirmed | dismissed';
COMMENT ON COLUMN wval.ex_post_cases.category IS 'risk_breach | performance_failure | liquidity_failure | data_issue | ops_incident';
COMMENT ON COLUMN wval.ex_post_cases.reason_code IS 'stable code of the failure, chosen by the validator (an identifier)';
COMMENT ON COLUMN wval.ex_post_cases.severity IS 'critical | high | medium | low';
COMMENT ON COLUMN wval.ex_post_cases.actor IS 'the person the recording validator named';
COMMENT ON COLUMN wval.ex_post_cases.evidence_url IS 'link to the evidence (incident, report); null when none';
COMMENT ON COLUMN wval.ex_post_cases.notes IS 'free-text notes; null when none';
COMMENT ON COLUMN wval.ex_post_cases.source IS 'manual | auto: whether a person or an automated process recorded the state (the source argument of wval_record_failure)';
COMMENT ON COLUMN wval.ex_post_cases.recorded_at IS 'when this state was recorded';
COMMENT ON COLUMN wval.ex_post_cases.chain_seq IS 'position of the row in its world''s hash chain, shared by every chained table of the world (1, 2, 3 ... without gaps; in a world with settings.chain_lanes > 1, lane k counts from k * 2^40 + 1); set by the chain trigger';
COMMENT ON COLUMN wval.ex_post_cases.prev_hash IS 'row_hash of the previous link of the same world''s chain (in any table; in the same lane); ''sha256:'' and 64 zeros for a world''s first link';
COMMENT ON COLUMN wval.ex_post_cases.row_hash IS '''sha256:'' || hex of sha256 over prev_hash, table name, chain_seq and the row''s canonical text, newline-separated (docs/store.md); recomputed by wval_verify_chain';

------------------------------------------------------------------------------
-- pg_dump: every table that holds data is extension configuration
------------------------------------------------------------------------------

SELECT pg_catalog.pg_extension_config_dump('wval.chain_heads', '');
SELECT pg_catalog.pg_extension_config_dump('wval.chain_tombstones', '');
SELECT pg_catalog.pg_extension_config_dump('wval.worlds', '');
SELECT pg_catalog.pg_extension_config_dump('wval.policy_versions', '');
SELECT pg_catalog.pg_extension_config_dump('wval.policy_activations', '');
SELECT pg_catalog.pg_extension_config_dump('wval.policy_activations_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('wval.evaluation_runs_default', '');
SELECT pg_catalog.pg_extension_config_dump('wval.overrides', '');
SELECT pg_catalog.pg_extension_config_dump('wval.overrides_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('wval.ex_post_failures', '');
SELECT pg_catalog.pg_extension_config_dump('wval.ex_post_failures_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('wval.audit_log', '');
SELECT pg_catalog.pg_extension_config_dump('wval.governance_exceptions', '');
SELECT pg_catalog.pg_extension_config_dump('wval.governance_exceptions_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('wval.audit_log_id_seq', '');

------------------------------------------------------------------------------
-- Privileges (finish.sql revokes everything from PUBLIC first)
------------------------------------------------------------------------------

GRANT SELECT ON wval.worlds, wval.policy_versions, wval.policy_activations, wval.active_policy_versions, wval.evaluation_runs,
      wval.evaluation_runs_default, wval.rule_results, wval.overrides,
      wval.ex_post_failures, wval.audit_log, wval.governance_exceptions,
      wval.chain_heads, wval.chain_tombstones,
      wval.current_overrides, wval.latest_runs, wval.override_queue, wval.ex_post_cases
   TO wval_analyst;

GRANT EXECUTE ON FUNCTION wval._imported(jsonb) TO wval_analyst;
GRANT EXECUTE ON FUNCTION public.wval_verify_chain(text), public.wval_chain_problems(text),
      public.wval_active_policy_version(text, text), public.wval_run_history(text, text)
   TO wval_analyst;
GRANT EXECUTE ON FUNCTION public.wval_policy_publish(text, jsonb, text, text),
      public.wval_policy_activate(text, integer, text, text, boolean, text[]),
      public.wval_override(uuid, text, text, text),
      public.wval_record_failure(uuid, text, text, text, text, text, text, text, text, uuid)
   TO wval_validator;
GRANT EXECUTE ON FUNCTION public.wval_world_upsert(text, text, boolean, float8, boolean, jsonb, text),
      public.wval_maintain(integer), public.wval_governance_exception(text, name, text, text, interval, text)
   TO wval_admin;
