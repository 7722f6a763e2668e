-- live.sql: live monitoring (docs/live.md) and stage decisions (docs/live.md,
-- "Stage decisions"), next to live.c.
--
-- Realized returns are appended to wval.live_returns (the latest row per
-- day counts).  People move strategies between stages with wval_set_stage;
-- wval.current_stage is what live monitoring treats as deployed.  A live
-- run (wval_live_run, kind 'live') measures the realized windows, applies
-- the policy's live_monitoring checks, and flags demotion candidates; wval
-- never changes a stage by itself.
--
-- requires: store

------------------------------------------------------------------------------
-- Realized returns
------------------------------------------------------------------------------

CREATE SEQUENCE wval.live_returns_id_seq;
CREATE TABLE wval.live_returns (
    entry_id    bigint NOT NULL DEFAULT nextval('wval.live_returns_id_seq'),
    world_id    text NOT NULL,
    strategy_id text NOT NULL,
    day         date NOT NULL CHECK (isfinite(day)),
    ret         float8 NOT NULL CHECK (ret > -1 AND ret < 'Infinity'),
    source      text NOT NULL,
    recorded_by text NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    chain_seq   bigint NOT NULL,
    prev_hash   text NOT NULL,
    row_hash    text NOT NULL,
    PRIMARY KEY (world_id, strategy_id, day, entry_id)
);
SELECT wval._secure('wval.live_returns');
ALTER SEQUENCE wval.live_returns_id_seq OWNED BY wval.live_returns.entry_id;
COMMENT ON TABLE wval.live_returns IS 'realized daily returns of deployed strategies; append-only and hash-chained: a correction of a day is a later row, and the latest row (highest entry_id) of each day counts';
COMMENT ON COLUMN wval.live_returns.day IS 'the calendar day the return was earned';
COMMENT ON COLUMN wval.live_returns.ret IS 'simple return of that day (0.01 = +1 %), finite and greater than -1';
COMMENT ON COLUMN wval.live_returns.source IS 'where the number comes from (gateway, broker statement, manual, ...)';
COMMENT ON COLUMN wval.live_returns.recorded_by IS 'the database role that recorded the row';
COMMENT ON COLUMN wval.live_returns.entry_id IS 'number of the row (sequence wval.live_returns_id_seq): the highest per day counts';
COMMENT ON COLUMN wval.live_returns.world_id IS 'the world (wval.worlds.world_id)';
COMMENT ON COLUMN wval.live_returns.strategy_id IS 'the deployed strategy';
COMMENT ON COLUMN wval.live_returns.recorded_at IS 'when the row was recorded';
COMMENT ON COLUMN wval.live_returns.chain_seq IS 'position of the row in its world''s hash chain, shared by every chained table of the world (1, 2, 3 ... without gaps; in a world with settings.chain_lanes > 1, lane k counts from k * 2^40 + 1); set by the chain trigger';
COMMENT ON COLUMN wval.live_returns.prev_hash IS 'row_hash of the previous link of the same world''s chain (in any table; in the same lane); ''sha256:'' and 64 zeros for a world''s first link';
COMMENT ON COLUMN wval.live_returns.row_hash IS '''sha256:'' || hex of sha256 over prev_hash, table name, chain_seq and the row''s canonical text, newline-separated (docs/store.md); recomputed by wval_verify_chain';
SELECT wval._protect('wval.live_returns', 'live_returns');

CREATE VIEW wval.live_returns_current AS
SELECT DISTINCT ON (lr.world_id, lr.strategy_id, lr.day)
       lr.world_id, lr.strategy_id, lr.day, lr.ret, lr.source, lr.recorded_by, lr.recorded_at, lr.entry_id
FROM wval.live_returns lr
ORDER BY lr.world_id, lr.strategy_id, lr.day, lr.entry_id DESC;
COMMENT ON VIEW wval.live_returns_current IS 'the return of each (world, strategy, day) that counts: the latest recorded row of the day';
COMMENT ON COLUMN wval.live_returns_current.world_id IS 'the world (wval.worlds.world_id)';
COMMENT ON COLUMN wval.live_returns_current.strategy_id IS 'the deployed strategy';
COMMENT ON COLUMN wval.live_returns_current.day IS 'the calendar day the return was earned';
COMMENT ON COLUMN wval.live_returns_current.ret IS 'simple return of that day (0.01 = +1 %), finite and greater than -1';
COMMENT ON COLUMN wval.live_returns_current.source IS 'where the number comes from (gateway, broker statement, manual, ...)';
COMMENT ON COLUMN wval.live_returns_current.recorded_by IS 'the database role that recorded the row';
COMMENT ON COLUMN wval.live_returns_current.recorded_at IS 'when the row was recorded';
COMMENT ON COLUMN wval.live_returns_current.entry_id IS 'number of the row (sequence wval.live_returns_id_seq): the highest per day counts';

CREATE FUNCTION public.wval_record_live_returns(world_id text, strategy_id text, days date[], rets float8[],
                                                source text DEFAULT 'manual')
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    p_world text := wval._ident('world_id', world_id);
    p_strategy text := wval._ident('strategy_id', strategy_id);
    p_source text := wval._ident('source', source);
    n integer;
BEGIN
    PERFORM wval._world(p_world);
    PERFORM wval._live_check_input(days, rets);
    -- a retry of what is already the day's value (same return, same source)
    -- adds nothing, also when the retries run at once: callers for one
    -- strategy queue here, and at READ COMMITTED the INSERT below (a new
    -- statement, a new snapshot) sees what the previous one committed; at
    -- REPEATABLE READ or SERIALIZABLE the world's chain head answers 40001
    PERFORM pg_advisory_xact_lock(hashtextextended(format('wval:live_returns:%s:%s', p_world, p_strategy), 0));
    INSERT INTO wval.live_returns (world_id, strategy_id, day, ret, source, recorded_by)
    SELECT p_world, p_strategy, u.day, u.ret, p_source, wval._invoker()
    FROM unnest(days, rets) WITH ORDINALITY AS u(day, ret, i)
    WHERE NOT EXISTS (SELECT 1 FROM wval.live_returns_current c
                      WHERE c.world_id = p_world AND c.strategy_id = p_strategy AND c.day = u.day
                        AND c.ret = u.ret AND c.source = p_source)
    ORDER BY u.i;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;
COMMENT ON FUNCTION public.wval_record_live_returns(text, text, date[], float8[], text) IS 'appends realized daily returns of a strategy (the input rules of wval_metrics, WV001 naming the element; days distinct within a call); a day recorded again is a correction (the latest row counts); returns the number of rows written (an identical retry writes none)';

------------------------------------------------------------------------------
-- Stage decisions
------------------------------------------------------------------------------

CREATE SEQUENCE wval.deployments_id_seq;
CREATE TABLE wval.deployments (
    deployment_id  bigint NOT NULL DEFAULT nextval('wval.deployments_id_seq'),
    world_id       text NOT NULL,
    strategy_id    text NOT NULL,
    stage          wval.deployment_stage NOT NULL,
    previous_stage wval.deployment_stage NOT NULL,
    change         text NOT NULL CHECK (change IN ('promotion', 'demotion', 'confirmation')),
    actor          text NOT NULL,
    login          name DEFAULT session_user,
    reason         text NOT NULL,
    run_id         uuid,
    justification  jsonb NOT NULL DEFAULT '{}',
    recorded_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    chain_seq      bigint NOT NULL,
    prev_hash      text NOT NULL,
    row_hash       text NOT NULL,
    PRIMARY KEY (world_id, deployment_id)
);
SELECT wval._secure('wval.deployments');
ALTER SEQUENCE wval.deployments_id_seq OWNED BY wval.deployments.deployment_id;
CREATE INDEX ON wval.deployments (world_id, strategy_id, deployment_id DESC);
COMMENT ON TABLE wval.deployments IS 'stage decisions made by people (wval_set_stage): which stage a strategy is deployed at, who decided, why, and the run the decision relied on; append-only, hash-chained';
COMMENT ON COLUMN wval.deployments.login IS 'the database login that decided (session_user); actor is the person it named; null for decisions recorded before 0.2.0';
COMMENT ON COLUMN wval.deployments.stage IS 'backtest | paper | live | retired';
COMMENT ON COLUMN wval.deployments.previous_stage IS 'the stage before this decision (backtest for a strategy without an earlier decision)';
COMMENT ON COLUMN wval.deployments.change IS 'promotion (higher stage), demotion (lower stage or retired) or confirmation (same stage, e.g. keeping a flagged strategy)';
COMMENT ON COLUMN wval.deployments.run_id IS 'the run the decision relied on: for a promotion the strategy''s latest validation run, otherwise its latest run of any kind';
COMMENT ON COLUMN wval.deployments.justification IS 'why a promotion was allowed (the run''s recommended stage, or the approved override) or which demotion candidate was open';
COMMENT ON COLUMN wval.deployments.recorded_at IS 'when the decision was recorded (clock time, so that decisions and demotion flags of one transaction stay ordered)';
COMMENT ON COLUMN wval.deployments.deployment_id IS 'number of the decision (sequence wval.deployments_id_seq); the latest per strategy is in force';
COMMENT ON COLUMN wval.deployments.world_id IS 'the world (wval.worlds.world_id)';
COMMENT ON COLUMN wval.deployments.strategy_id IS 'the strategy moved, kept or retired';
COMMENT ON COLUMN wval.deployments.actor IS 'the person the deciding validator named (a label; login is who acted)';
COMMENT ON COLUMN wval.deployments.reason IS 'why the decision was made (required free text)';
COMMENT ON COLUMN wval.deployments.chain_seq IS 'position of the row in its world''s hash chain, shared by every chained table of the world (1, 2, 3 ... without gaps; in a world with settings.chain_lanes > 1, lane k counts from k * 2^40 + 1); set by the chain trigger';
COMMENT ON COLUMN wval.deployments.prev_hash IS 'row_hash of the previous link of the same world''s chain (in any table; in the same lane); ''sha256:'' and 64 zeros for a world''s first link';
COMMENT ON COLUMN wval.deployments.row_hash IS '''sha256:'' || hex of sha256 over prev_hash, table name, chain_seq and the row''s canonical text, newline-separated (docs/store.md); recomputed by wval_verify_chain';
SELECT wval._protect('wval.deployments', 'deployments');

CREATE VIEW wval.current_stage AS
SELECT DISTINCT ON (d.world_id, d.strategy_id)
       d.world_id, d.strategy_id, d.stage, d.previous_stage, d.change, d.actor, d.reason, d.run_id,
       d.recorded_at AS since, d.deployment_id
FROM wval.deployments d
ORDER BY d.world_id, d.strategy_id, d.deployment_id DESC;
COMMENT ON VIEW wval.current_stage IS 'the latest stage decision per world and strategy: what live monitoring, selection and the invariants treat as deployed (a strategy without a decision is at backtest and not listed)';
COMMENT ON COLUMN wval.current_stage.world_id IS 'the world (wval.worlds.world_id)';
COMMENT ON COLUMN wval.current_stage.strategy_id IS 'the strategy moved, kept or retired';
COMMENT ON COLUMN wval.current_stage.stage IS 'backtest | paper | live | retired: the stage the strategy is deployed at';
COMMENT ON COLUMN wval.current_stage.previous_stage IS 'the stage before this decision (backtest for a strategy without an earlier decision)';
COMMENT ON COLUMN wval.current_stage.change IS 'promotion (higher stage), demotion (lower stage or retired) or confirmation (same stage, e.g. keeping a flagged strategy)';
COMMENT ON COLUMN wval.current_stage.actor IS 'the person the deciding validator named (a label; login is who acted)';
COMMENT ON COLUMN wval.current_stage.reason IS 'why the decision was made (required free text)';
COMMENT ON COLUMN wval.current_stage.run_id IS 'the run the decision relied on: for a promotion the strategy''s latest validation run, otherwise its latest run of any kind';
COMMENT ON COLUMN wval.current_stage.since IS 'when this decision was recorded (wval.deployments.recorded_at)';
COMMENT ON COLUMN wval.current_stage.deployment_id IS 'the decision in force (wval.deployments.deployment_id)';

-- wval._stage_rank(stage): order of the stages for promotions and demotions.
CREATE FUNCTION wval._stage_rank(stage text) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    -- the order of wval._deployment_stages(), retired (last there) lowest
    SELECT CASE WHEN stage = 'retired' THEN 0 ELSE array_position(wval._deployment_stages(), stage) END
$$;
COMMENT ON FUNCTION wval._stage_rank(text) IS 'retired 0 < backtest 1 < paper 2 < live 3';

CREATE FUNCTION public.wval_set_stage(world_id text, strategy_id text, stage text, actor text, reason text)
RETURNS wval.deployments
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    p_world text := wval._ident('world_id', world_id);
    p_strategy text := wval._ident('strategy_id', strategy_id);
    p_stage text := wval._one_of('stage', stage, wval._deployment_stages());
    missing text[] := '{}';
    cur text;
    kind text;
    lr wval.evaluation_runs;
    co wval.overrides;
    needed text[];
    basis jsonb := '{}';
    allowed jsonb;
    d wval.deployments;
BEGIN
    IF reason IS NULL OR btrim(reason) = '' THEN missing := missing || 'reason'::text; END IF;
    IF actor IS NULL OR btrim(actor) = '' THEN missing := missing || 'actor'::text; END IF;
    IF cardinality(missing) > 0 THEN
        RAISE EXCEPTION 'a stage decision needs %', array_to_string(missing, ' and ')
            USING ERRCODE = 'WV009',
                  DETAIL = format('reason is %s, actor is %s.', coalesce(quote_literal(reason), 'null'),
                                  coalesce(quote_literal(actor), 'null')),
                  HINT = 'Name the person who decides and say why.';
    END IF;
    PERFORM wval._ident('actor', actor);
    PERFORM wval._world(p_world);
    -- one decision at a time per strategy, so that "from" is the stage decided on
    PERFORM pg_advisory_xact_lock(hashtextextended(format('wval:stage:%s:%s', p_world, p_strategy), 0));
    SELECT cs.stage INTO cur FROM wval.current_stage cs
    WHERE cs.world_id = p_world AND cs.strategy_id = p_strategy;
    cur := coalesce(cur, 'backtest');
    kind := CASE WHEN wval._stage_rank(p_stage) > wval._stage_rank(cur) THEN 'promotion'
                 WHEN wval._stage_rank(p_stage) < wval._stage_rank(cur) THEN 'demotion'
                 ELSE 'confirmation' END;

    IF kind = 'promotion' AND p_stage IN ('paper', 'live') THEN
        -- the strategy's latest validation run must recommend the stage, or
        -- carry an approved override that is not overdue
        SELECT * INTO lr FROM wval.evaluation_runs e
        WHERE e.world_id = p_world AND e.strategy_id = p_strategy AND e.kind = 'single'
        ORDER BY e.created_at DESC, e.chain_seq DESC LIMIT 1;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'promotion of strategy "%" to % is not justified: it has no validation run', p_strategy, p_stage
                USING ERRCODE = 'WV009',
                      DETAIL = format('world_id is %L, strategy_id is %L.', p_world, p_strategy),
                      HINT = 'Evaluate the strategy with wval_evaluate() first.';
        END IF;
        needed := CASE p_stage WHEN 'paper' THEN ARRAY['paper_only', 'paper_ok_live_candidate']
                               ELSE ARRAY['paper_ok_live_candidate'] END;
        SELECT * INTO co FROM wval.current_overrides o WHERE o.run_id = lr.run_id;
        IF lr.recommended_stage = ANY (needed) AND lr.status IN ('pass', 'warn') AND NOT wval._imported(lr.context) THEN
            basis := jsonb_build_object('basis', 'recommendation', 'run_id', lr.run_id,
                                        'recommended_stage', lr.recommended_stage, 'run_status', lr.status);
        ELSIF co.status = 'approved' AND co.review_due_at >= now() THEN
            basis := jsonb_build_object('basis', 'override', 'run_id', lr.run_id, 'override_id', co.override_id,
                                        'override_actor', co.actor, 'review_due_at', co.review_due_at,
                                        'recommended_stage', lr.recommended_stage);
        ELSE
            RAISE EXCEPTION 'promotion of strategy "%" to % is not justified by its latest run %', p_strategy, p_stage, lr.run_id
                USING ERRCODE = 'WV009',
                      DETAIL = format('Run %s (stage %s, status %s%s) recommends %s; %s needs at least %s. Override: %s.',
                                      lr.run_id, lr.stage, lr.status,
                                      CASE WHEN wval._imported(lr.context) THEN ', imported: its recommendation is history and justifies nothing' ELSE '' END,
                                      coalesce(lr.recommended_stage, 'nothing'),
                                      p_stage, needed[1],
                                      CASE WHEN co.run_id IS NULL THEN 'none'
                                           WHEN co.status = 'approved' THEN format('approved but overdue since %s', co.review_due_at)
                                           ELSE co.status END),
                      HINT = format('Evaluate the strategy again, or have a validator approve an override on run %s with wval_override(run_id, ''approved'', reason, actor).', lr.run_id);
        END IF;
        -- the author of the run does not promote the strategy on it (by login)
        allowed := wval._other_login(p_world, 'promotion_author', lr.created_by,
                                     format('created run %s', lr.run_id),
                                     format('promote strategy "%s" on it', p_strategy));
        IF allowed IS NOT NULL THEN
            basis := basis || jsonb_build_object('separation_of_duties', allowed);
        END IF;
    ELSE
        -- demotions and confirmations rely on the latest run of any kind
        SELECT * INTO lr FROM wval.evaluation_runs e
        WHERE e.world_id = p_world AND e.strategy_id = p_strategy
        ORDER BY e.created_at DESC, e.chain_seq DESC LIMIT 1;
        basis := jsonb_build_object('basis', kind,
            'open_demotion_candidate', (SELECT c.candidate_id FROM wval.open_demotion_candidates c
                                        WHERE c.world_id = p_world AND c.strategy_id = p_strategy));
    END IF;

    INSERT INTO wval.deployments (world_id, strategy_id, stage, previous_stage, change, actor, reason, run_id, justification)
    VALUES (p_world, p_strategy, p_stage, cur, kind, actor, reason, lr.run_id, basis)
    RETURNING * INTO d;
    PERFORM wval._audit(p_world, 'stage_' || kind, actor,
                        jsonb_build_object('strategy_id', p_strategy, 'from', cur, 'to', p_stage, 'reason', reason,
                                           'run_id', lr.run_id, 'deployment_id', d.deployment_id,
                                           'justification', basis));
    IF cur <> p_stage THEN
        PERFORM wval._emit('stage_changed', p_world, p_strategy,
                           format('stage_changed:%s:%s:%s', p_world, p_strategy, d.deployment_id),
                           jsonb_build_object('world_id', p_world, 'strategy_id', p_strategy, 'from', cur, 'to', p_stage,
                                              'actor', actor, 'reason', reason, 'run_id', lr.run_id,
                                              'change', kind, 'justification', basis));
    END IF;
    RETURN d;
END
$$;
COMMENT ON FUNCTION public.wval_set_stage(text, text, text, text, text) IS 'records a stage decision (backtest | paper | live | retired): a promotion to paper/live needs the latest validation run to recommend at least paper_only / paper_ok_live_candidate or an approved, not overdue override on it (WV009 otherwise); demotions and confirmations need only actor and reason; audited, emits stage_changed';

------------------------------------------------------------------------------
-- Live runs
------------------------------------------------------------------------------

-- one live run per (world, strategy, as_of): found through this index
INSERT INTO wval.partition_indexes (parent, spec) VALUES
    ('evaluation_runs', '(world_id, strategy_id, as_of) WHERE kind = ''live''');
CREATE INDEX ON wval.evaluation_runs_default (world_id, strategy_id, as_of) WHERE kind = 'live';

CREATE FUNCTION wval._live_check_input(days date[], rets float8[]) RETURNS integer
    AS 'MODULE_PATHNAME', 'wval_live_check_input' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION wval._live_check_input(date[], float8[]) IS 'checks a batch of live returns (WV001 naming the element: nulls, non-finite values, returns <= -1, length mismatch, repeated days) and returns its length';

CREATE FUNCTION wval._live_windows(days date[], rets float8[], as_of date, windows integer[]) RETURNS jsonb
    AS 'MODULE_PATHNAME', 'wval_live_windows' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION wval._live_windows(date[], float8[], date, integer[]) IS 'realized metrics per calendar window (as_of - W, as_of]: {"W": {sharpe (annualised, P = 252), max_drawdown, es_p025 (historical ES 97.5 %), n_obs}}; null metrics below 2 observations; days ascending and distinct';

CREATE FUNCTION wval._live_policy(world_id text, version integer, fail_closed boolean) RETURNS jsonb
    AS 'MODULE_PATHNAME', 'wval_live_policy' LANGUAGE C STABLE;
COMMENT ON FUNCTION wval._live_policy(text, integer, boolean) IS 'live_monitoring settings of a policy version (cached per backend): {windows_days (ascending), demote_after, ruleset_hash, checks}';

CREATE FUNCTION wval._live_rules(world_id text, version integer, fail_closed boolean, metrics jsonb, stage text)
RETURNS jsonb
    AS 'MODULE_PATHNAME', 'wval_live_rules' LANGUAGE C STABLE;
COMMENT ON FUNCTION wval._live_rules(text, integer, boolean, jsonb, text) IS 'applies the live_monitoring checks of a policy version to {"live": {...}} metrics: {status, cleared, profile, ruleset_hash, results, stopped_by, validation_error_count}';

CREATE SEQUENCE wval.demotion_candidates_id_seq;
CREATE TABLE wval.demotion_candidates (
    candidate_id     bigint NOT NULL DEFAULT nextval('wval.demotion_candidates_id_seq'),
    world_id         text NOT NULL,
    strategy_id      text NOT NULL,
    run_id           uuid NOT NULL,
    as_of            date NOT NULL,
    stage            wval.stage NOT NULL,
    trigger          text NOT NULL CHECK (trigger IN ('blocking_fail', 'soft_fail_streak', 'revalidation')),
    breached         jsonb NOT NULL,
    consecutive_runs integer NOT NULL,
    demote_after     integer NOT NULL,
    flagged_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    chain_seq        bigint NOT NULL,
    prev_hash        text NOT NULL,
    row_hash         text NOT NULL,
    PRIMARY KEY (world_id, candidate_id)
);
SELECT wval._secure('wval.demotion_candidates');
ALTER SEQUENCE wval.demotion_candidates_id_seq OWNED BY wval.demotion_candidates.candidate_id;
CREATE UNIQUE INDEX ON wval.demotion_candidates (world_id, run_id);
CREATE INDEX ON wval.demotion_candidates (world_id, strategy_id, as_of DESC);
COMMENT ON TABLE wval.demotion_candidates IS 'runs that make their strategy a demotion candidate: a live run with a blocking fail, or a soft fail in live_monitoring.demote_after consecutive live runs at the same stage, or a revalidation run (after a policy activation) whose outcome is worse than the run it re-checked; append-only, hash-chained. wval never demotes by itself';
COMMENT ON COLUMN wval.demotion_candidates.trigger IS 'blocking_fail | soft_fail_streak (live monitoring) | revalidation (a re-check under a newly activated policy version worsened the outcome)';
COMMENT ON COLUMN wval.demotion_candidates.breached IS 'the failed checks: [{check, severity, reason_code, reason}]';
COMMENT ON COLUMN wval.demotion_candidates.consecutive_runs IS 'live runs in a row (this one included) with a blocking or soft fail; 1 for revalidation';
COMMENT ON COLUMN wval.demotion_candidates.stage IS 'the stage the strategy was deployed at';
COMMENT ON COLUMN wval.demotion_candidates.candidate_id IS 'number of the flag (sequence wval.demotion_candidates_id_seq)';
COMMENT ON COLUMN wval.demotion_candidates.world_id IS 'the world (wval.worlds.world_id)';
COMMENT ON COLUMN wval.demotion_candidates.strategy_id IS 'the flagged strategy';
COMMENT ON COLUMN wval.demotion_candidates.run_id IS 'the run that flagged the strategy (wval.evaluation_runs, kind live, or kind revalidation); one flag per run';
COMMENT ON COLUMN wval.demotion_candidates.as_of IS 'as_of day of that live run (the day its realized windows end); for revalidation, the day (UTC) of the re-check';
COMMENT ON COLUMN wval.demotion_candidates.demote_after IS 'live_monitoring.demote_after of the policy version the run applied (soft-fail streak length that flags; default 2)';
COMMENT ON COLUMN wval.demotion_candidates.flagged_at IS 'when the flag was recorded (clock time, ordered against stage decisions of the same transaction)';
COMMENT ON COLUMN wval.demotion_candidates.chain_seq IS 'position of the row in its world''s hash chain, shared by every chained table of the world (1, 2, 3 ... without gaps; in a world with settings.chain_lanes > 1, lane k counts from k * 2^40 + 1); set by the chain trigger';
COMMENT ON COLUMN wval.demotion_candidates.prev_hash IS 'row_hash of the previous link of the same world''s chain (in any table; in the same lane); ''sha256:'' and 64 zeros for a world''s first link';
COMMENT ON COLUMN wval.demotion_candidates.row_hash IS '''sha256:'' || hex of sha256 over prev_hash, table name, chain_seq and the row''s canonical text, newline-separated (docs/store.md); recomputed by wval_verify_chain';
SELECT wval._protect('wval.demotion_candidates', 'demotion_candidates');

CREATE VIEW wval.open_demotion_candidates AS
SELECT c.*
FROM (SELECT DISTINCT ON (dc.world_id, dc.strategy_id) dc.*
      FROM wval.demotion_candidates dc
      ORDER BY dc.world_id, dc.strategy_id, dc.as_of DESC, dc.candidate_id DESC) c
WHERE (c.trigger = 'revalidation'
       OR c.run_id = (SELECT e.run_id FROM wval.evaluation_runs e
                      WHERE e.world_id = c.world_id AND e.strategy_id = c.strategy_id AND e.kind = 'live'
                        AND NOT wval._imported(e.context)
                      ORDER BY e.as_of DESC, e.created_at DESC LIMIT 1))
  AND NOT EXISTS (SELECT 1 FROM wval.deployments d
                  WHERE d.world_id = c.world_id AND d.strategy_id = c.strategy_id AND d.recorded_at > c.flagged_at);
COMMENT ON VIEW wval.open_demotion_candidates IS 'strategies whose latest flag is open: flagged by their latest live run, or by a revalidation after a policy activation, and nobody has decided on them since (a stage decision, also a confirmation, closes the candidate; a later live run that does not flag closes a live flag)';
COMMENT ON COLUMN wval.open_demotion_candidates.candidate_id IS 'number of the flag (sequence wval.demotion_candidates_id_seq)';
COMMENT ON COLUMN wval.open_demotion_candidates.world_id IS 'the world (wval.worlds.world_id)';
COMMENT ON COLUMN wval.open_demotion_candidates.strategy_id IS 'the flagged strategy';
COMMENT ON COLUMN wval.open_demotion_candidates.run_id IS 'the run that flagged the strategy (wval.evaluation_runs, kind live, or kind revalidation); one flag per run';
COMMENT ON COLUMN wval.open_demotion_candidates.as_of IS 'as_of day of that live run (the day its realized windows end); for revalidation, the day (UTC) of the re-check';
COMMENT ON COLUMN wval.open_demotion_candidates.stage IS 'the stage the strategy was deployed at';
COMMENT ON COLUMN wval.open_demotion_candidates.trigger IS 'blocking_fail | soft_fail_streak | revalidation';
COMMENT ON COLUMN wval.open_demotion_candidates.breached IS 'the failed checks: [{check, severity, reason_code, reason}]';
COMMENT ON COLUMN wval.open_demotion_candidates.consecutive_runs IS 'live runs in a row (this one included) with a blocking or soft fail';
COMMENT ON COLUMN wval.open_demotion_candidates.demote_after IS 'live_monitoring.demote_after of the policy version the run applied (soft-fail streak length that flags; default 2)';
COMMENT ON COLUMN wval.open_demotion_candidates.flagged_at IS 'when the flag was recorded (clock time, ordered against stage decisions of the same transaction)';
COMMENT ON COLUMN wval.open_demotion_candidates.chain_seq IS 'position of the row in its world''s hash chain, shared by every chained table of the world (1, 2, 3 ... without gaps; in a world with settings.chain_lanes > 1, lane k counts from k * 2^40 + 1); set by the chain trigger';
COMMENT ON COLUMN wval.open_demotion_candidates.prev_hash IS 'row_hash of the previous link of the same world''s chain (in any table; in the same lane); ''sha256:'' and 64 zeros for a world''s first link';
COMMENT ON COLUMN wval.open_demotion_candidates.row_hash IS '''sha256:'' || hex of sha256 over prev_hash, table name, chain_seq and the row''s canonical text, newline-separated (docs/store.md); recomputed by wval_verify_chain';

-- wval._live_flag(run, demote_after): records the run as a demotion
-- candidate when it has a blocking fail, or a soft fail that completes
-- demote_after consecutive failing live runs at its stage.
CREATE FUNCTION wval._live_flag(r wval.evaluation_runs, demote_after integer) RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    breached jsonb;
    blocking boolean;
    streak integer;
    c wval.demotion_candidates;
BEGIN
    SELECT jsonb_agg(jsonb_build_object('check', x.key, 'severity', x.value->>'severity',
                                        'reason_code', x.value->>'reason_code', 'reason', x.value->>'reason')
                     ORDER BY x.key),
           bool_or(x.value->>'severity' = 'blocking')
      INTO breached, blocking
    FROM jsonb_each(r.results) x
    WHERE x.value->>'status' = 'fail' AND x.value->>'severity' IN ('blocking', 'soft');
    IF breached IS NULL THEN
        RETURN NULL;
    END IF;
    -- failing live runs in a row at this stage, newest first, this one included
    SELECT count(*) INTO streak
    FROM (SELECT bool_and(f.failed) OVER (ORDER BY f.as_of DESC) AS all_failed
          FROM (SELECT e.as_of,
                       EXISTS (SELECT 1 FROM jsonb_each(e.results) x
                               WHERE x.value->>'status' = 'fail' AND x.value->>'severity' IN ('blocking', 'soft')) AS failed
                FROM wval.evaluation_runs e
                WHERE e.world_id = r.world_id AND e.strategy_id = r.strategy_id AND e.kind = 'live'
                  AND e.stage = r.stage AND e.as_of <= r.as_of AND NOT wval._imported(e.context)
                ORDER BY e.as_of DESC LIMIT 1000) f) s
    WHERE s.all_failed;
    IF NOT blocking AND streak < demote_after THEN
        RETURN NULL;
    END IF;
    INSERT INTO wval.demotion_candidates (world_id, strategy_id, run_id, as_of, stage, trigger, breached,
                                          consecutive_runs, demote_after)
    VALUES (r.world_id, r.strategy_id, r.run_id, r.as_of, r.stage,
            CASE WHEN blocking THEN 'blocking_fail' ELSE 'soft_fail_streak' END, breached, streak, demote_after)
    RETURNING * INTO c;
    PERFORM wval._emit('demotion_candidate_flagged', r.world_id, r.strategy_id,
                       format('demotion_candidate_flagged:%s:%s:%s', r.world_id, r.strategy_id, r.run_id),
                       jsonb_build_object('world_id', r.world_id, 'strategy_id', r.strategy_id, 'run_id', r.run_id,
                                          'as_of', r.as_of, 'stage', r.stage, 'trigger', c.trigger,
                                          'breached', (SELECT jsonb_agg(b->'check') FROM jsonb_array_elements(breached) b),
                                          'consecutive_runs', streak, 'demote_after', demote_after));
    RETURN c.candidate_id;
END
$$;
COMMENT ON FUNCTION wval._live_flag(wval.evaluation_runs, integer) IS 'records a live run in wval.demotion_candidates (and emits demotion_candidate_flagged) when it has a blocking fail or completes demote_after consecutive soft-failing live runs at its stage';

CREATE FUNCTION public.wval_live_run(world_id text, strategy_id text, as_of date DEFAULT current_date)
RETURNS wval.evaluation_runs
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    p_world text := wval._ident('world_id', world_id);
    p_strategy text := wval._ident('strategy_id', strategy_id);
    p_as_of date := as_of;
    w wval.worlds;
    r wval.evaluation_runs;
    new_run wval.evaluation_runs;
    v integer;
    fc boolean;
    settings jsonb;
    windows integer[];
    longest integer;
    deployed text;
    p_stage text;
    d date[];
    x float8[];
    rhash text;
    win jsonb;
    check_w text;
    bt_run uuid;
    bt_sharpe float8;
    decay float8;
    live jsonb;
    outcome jsonb;
    rid uuid := gen_random_uuid();
    created timestamptz := now();
BEGIN
    IF p_as_of IS NULL OR NOT isfinite(p_as_of) OR p_as_of NOT BETWEEN date '1900-01-01' AND date '9999-12-31' THEN
        RAISE EXCEPTION 'invalid value for "as_of"' USING ERRCODE = '22023',
            DETAIL = format('as_of is %s.', coalesce(p_as_of::text, 'null')),
            HINT = 'Pass the day the windows end (1900-01-01 to 9999-12-31), e.g. current_date.';
    END IF;
    w := wval._world(p_world);

    -- idempotent: one live run per (world, strategy, as_of), also for
    -- concurrent callers (read committed: the lookup after the lock sees a
    -- run the other caller committed)
    PERFORM pg_advisory_xact_lock(hashtextextended(format('wval:live_run:%s:%s:%s', p_world, p_strategy, to_char(p_as_of, 'YYYY-MM-DD')), 0));
    SELECT * INTO r FROM wval.evaluation_runs e
    WHERE e.world_id = p_world AND e.strategy_id = p_strategy AND e.kind = 'live' AND e.as_of = p_as_of
      AND NOT wval._imported(e.context)
    ORDER BY e.created_at LIMIT 1;
    IF FOUND THEN
        RETURN r;
    END IF;

    -- the run's stage: the strategy's deployed stage (paper or live), else live
    SELECT cs.stage INTO deployed FROM wval.current_stage cs
    WHERE cs.world_id = p_world AND cs.strategy_id = p_strategy;
    p_stage := CASE WHEN deployed IN ('paper', 'live') THEN deployed ELSE 'live' END;

    v := public.wval_active_policy_version(p_world, p_stage);
    IF v IS NULL THEN
        RAISE EXCEPTION 'world "%" has no active policy version', p_world
            USING ERRCODE = 'WV010',
                  DETAIL = 'Nothing was evaluated and nothing was recorded.',
                  HINT = 'Publish a policy with wval_policy_publish() and activate it with wval_policy_activate().';
    END IF;
    fc := wval._fail_closed(w);
    settings := wval._live_policy(p_world, v, fc);
    windows := ARRAY(SELECT jsonb_array_elements_text(settings->'windows_days')::integer);
    longest := windows[cardinality(windows)];

    -- the latest return of each day of the longest window
    SELECT coalesce(array_agg(c.day ORDER BY c.day), '{}'), coalesce(array_agg(c.ret ORDER BY c.day), '{}'),
           'sha256:' || encode(sha256(coalesce(string_agg(float8send(c.ret), ''::bytea ORDER BY c.day), ''::bytea)), 'hex')
      INTO d, x, rhash
    FROM wval.live_returns_current c
    WHERE c.world_id = p_world AND c.strategy_id = p_strategy
      AND c.day > p_as_of - longest AND c.day <= p_as_of;

    win := wval._live_windows(d, x, p_as_of, windows);
    -- the checks use the shortest window with data
    SELECT min(k.key::integer)::text INTO check_w
    FROM jsonb_each(win) k WHERE (k.value->>'n_obs')::integer >= 2;

    -- decay against the latest backtest run (not a paper run)
    SELECT e.run_id, (e.metrics #>> '{returns,sharpe}')::float8 INTO bt_run, bt_sharpe
    FROM wval.evaluation_runs e
    WHERE e.world_id = p_world AND e.strategy_id = p_strategy AND e.stage = 'backtest' AND e.kind = 'single'
      AND e.status <> 'unvalidated' AND NOT wval._imported(e.context)
    ORDER BY e.created_at DESC, e.chain_seq DESC LIMIT 1;
    decay := CASE WHEN bt_sharpe > 0 THEN (win #>> ARRAY[longest::text, 'sharpe'])::float8 / bt_sharpe END;

    live := jsonb_build_object('as_of', p_as_of, 'windows', win, 'check_window', check_w::integer,
                               'decay', decay, 'backtest_run_id', bt_run, 'backtest_sharpe', bt_sharpe);
    outcome := wval._live_rules(p_world, v, fc,
                                jsonb_build_object('live', jsonb_build_object(
                                    'sharpe', win #> ARRAY[check_w, 'sharpe'],
                                    'max_drawdown', win #> ARRAY[check_w, 'max_drawdown'],
                                    'es_p025', win #> ARRAY[check_w, 'es_p025'],
                                    'decay', decay)),
                                p_stage);

    -- the run with its rule results and evaluation_run_created (run.c)
    new_run.run_id := rid;
    new_run.world_id := p_world;
    new_run.strategy_id := p_strategy;
    new_run.stage := p_stage;
    new_run.kind := 'live';
    new_run.risk_tier := w.risk_tier;
    new_run.context := jsonb_build_object('windows_days', settings->'windows_days', 'demote_after', settings->'demote_after',
                                    'deployed_stage', deployed);
    new_run.returns_hash := rhash;
    new_run.metrics := jsonb_build_object('live', live, 'returns', public.wval_metrics(x)->'returns');
    new_run.policy_version := v;
    new_run.ruleset_hash := outcome->>'ruleset_hash';
    new_run.profile := 'live_monitoring';
    new_run.status := outcome->>'status';
    new_run.results := outcome->'results';
    new_run.as_of := p_as_of;
    new_run.created_by := wval._invoker();
    new_run.created_at := created;
    -- the window's returns (world setting store_returns), then the run
    IF cardinality(x) > 0 THEN
        PERFORM wval._store_returns(p_world, rhash, x);
    END IF;
    r := wval._store_run(new_run);
    PERFORM wval._emit('live_run_created', p_world, p_strategy,
                       format('live_run_created:%s:%s:%s', p_world, p_strategy, to_char(p_as_of, 'YYYY-MM-DD')),
                       jsonb_build_object('world_id', p_world, 'strategy_id', p_strategy, 'run_id', rid,
                                          'as_of', p_as_of, 'stage', p_stage, 'status', outcome->>'status',
                                          'policy_version', v, 'check_window', check_w::integer,
                                          'windows', win, 'decay', decay,
                                          'failed', outcome->'stopped_by'));

    -- only a deployed strategy can be a demotion candidate
    IF deployed IN ('paper', 'live') THEN
        PERFORM wval._live_flag(r, (settings->>'demote_after')::integer);
    END IF;
    RETURN r;
END
$$;
COMMENT ON FUNCTION public.wval_live_run(text, text, date) IS 'the live run of a strategy as of a day: realized Sharpe, max drawdown, ES 97.5 % and n_obs per calendar window (as_of - W, as_of] of live_monitoring.windows_days, decay against the latest backtest run, the live_monitoring checks on the shortest window with data; stores the run (kind live) with rule results, emits evaluation_run_created and live_run_created, flags demotion candidates; a second call for the same day returns the stored run';

CREATE FUNCTION public.wval_live_run_all(as_of date DEFAULT current_date)
RETURNS TABLE (world_id text, strategy_id text, stage text, run_id uuid, status text, flagged boolean, error text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp SET datestyle = 'ISO, YMD' AS $$
DECLARE
    p_as_of date := as_of;
    c record;
    r wval.evaluation_runs;
    msg text;
    state text;
BEGIN
    IF p_as_of IS NULL OR NOT isfinite(p_as_of) OR p_as_of NOT BETWEEN date '1900-01-01' AND date '9999-12-31' THEN
        RAISE EXCEPTION 'invalid value for "as_of"' USING ERRCODE = '22023',
            DETAIL = format('as_of is %s.', coalesce(p_as_of::text, 'null')),
            HINT = 'Pass the day the windows end (1900-01-01 to 9999-12-31), e.g. current_date.';
    END IF;
    -- every world the caller may write (row-level security per world)
    FOR c IN
        SELECT cs.world_id, cs.strategy_id, cs.stage FROM wval.current_stage cs
        WHERE cs.stage IN ('paper', 'live')
          AND wval._world_access((SELECT pr.oid FROM pg_roles pr WHERE pr.rolname = wval._invoker()), cs.world_id, 'write')
        ORDER BY cs.world_id, cs.strategy_id
    LOOP
        world_id := c.world_id;
        strategy_id := c.strategy_id;
        stage := c.stage;
        BEGIN
            -- each strategy in its own subtransaction: one failure does not stop the rest
            r := public.wval_live_run(c.world_id, c.strategy_id, p_as_of);
            run_id := r.run_id;
            status := r.status;
            flagged := EXISTS (SELECT 1 FROM wval.demotion_candidates dc
                               WHERE dc.world_id = r.world_id AND dc.run_id = r.run_id);
            error := NULL;
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT, state = RETURNED_SQLSTATE;
            run_id := NULL;
            status := NULL;
            flagged := NULL;
            error := state || ': ' || msg;
            RAISE WARNING 'live run of strategy "%" in world "%" as of % failed: %', c.strategy_id, c.world_id, p_as_of, msg;
            PERFORM wval._audit(c.world_id, 'live_run_failed', wval._invoker(),
                                jsonb_build_object('strategy_id', c.strategy_id, 'as_of', p_as_of,
                                                   'sqlstate', state, 'message', msg));
        END;
        RETURN NEXT;
    END LOOP;
END
$$;
COMMENT ON FUNCTION public.wval_live_run_all(date) IS 'runs wval_live_run for every strategy whose current stage is paper or live, in every world the caller may write, each in its own subtransaction; one row per strategy (run_id, status, flagged as demotion candidate, or the error, which is also audited as live_run_failed)';

CREATE FUNCTION public.wval_schedule_live_monitoring(schedule text DEFAULT '15 2 * * *') RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
BEGIN
    PERFORM wval._require_text('schedule', schedule, '22023', 'Pass a cron expression such as ''15 2 * * *''.');
    PERFORM wval._cron_check(schedule);
    RETURN wval._cron_schedule('live-monitoring', schedule, 'SELECT count(*) FROM public.wval_live_run_all()');
END
$$;
COMMENT ON FUNCTION public.wval_schedule_live_monitoring(text) IS 'schedules (or reschedules) the pg_cron job wval:live-monitoring that runs wval_live_run_all() (default daily at 02:15 in pg_cron''s time zone); remove it with wval_unschedule(''live-monitoring''); WV010 with set-up instructions when pg_cron is missing';

------------------------------------------------------------------------------
-- Live report
------------------------------------------------------------------------------

-- wval._live_table(html, headers, rows): a markdown or HTML table; rows is
-- a jsonb array of arrays of strings; cells that are a status get a class.
CREATE FUNCTION wval._live_table(html boolean, headers text[], rows jsonb) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN html THEN
            '<table><tr>' || (SELECT string_agg('<th>' || wval._html(h) || '</th>', '' ORDER BY i)
                              FROM unnest(headers) WITH ORDINALITY u(h, i)) || '</tr>'
            || coalesce((SELECT string_agg('<tr>' || (SELECT string_agg(
                                 CASE WHEN c.v IN ('pass', 'warn', 'fail', 'PASS', 'WARN', 'FAIL')
                                      THEN format('<td class="%s">%s</td>', lower(c.v), c.v)
                                      ELSE '<td>' || wval._html(c.v) || '</td>' END, '' ORDER BY c.i)
                                 FROM jsonb_array_elements_text(r.row) WITH ORDINALITY c(v, i)) || '</tr>', '' ORDER BY r.n)
                         FROM jsonb_array_elements(rows) WITH ORDINALITY r(row, n)), '')
            || '</table>'
        ELSE
            '| ' || array_to_string(headers, ' | ') || ' |' || E'\n'
            || '|' || repeat(' --- |', cardinality(headers))
            || coalesce((SELECT string_agg(E'\n| ' || (SELECT string_agg(wval._md_cell(c.v), ' | ' ORDER BY c.i)
                                                       FROM jsonb_array_elements_text(r.row) WITH ORDINALITY c(v, i)) || ' |',
                                           '' ORDER BY r.n)
                         FROM jsonb_array_elements(rows) WITH ORDINALITY r(row, n)), '')
        END
$$;
COMMENT ON FUNCTION wval._live_table(boolean, text[], jsonb) IS 'renders a table (markdown or HTML, text escaped) for the live report';

-- wval._live_report_items(world, as_of): per strategy of the world with a
-- live run up to as_of, or deployed at paper or live: its stage, latest
-- live run up to as_of, the live run before that, the demotion candidate
-- that run raised and the first stage decision recorded after the flag.
CREATE FUNCTION wval._live_report_items(p_world text, p_as_of date)
RETURNS TABLE (strategy_id text, stage text, run wval.evaluation_runs, prev wval.evaluation_runs,
               candidate wval.demotion_candidates, decision wval.deployments)
LANGUAGE sql STABLE SET search_path = pg_catalog, wval, pg_temp AS $$
    SELECT k.strategy_id, cs.stage, lr.run, pr.run, dc.cand, dd.dep
    FROM (SELECT e.strategy_id FROM wval.evaluation_runs e
          WHERE e.world_id = p_world AND e.kind = 'live' AND e.as_of <= p_as_of
          UNION
          SELECT c.strategy_id FROM wval.current_stage c
          WHERE c.world_id = p_world AND c.stage IN ('paper', 'live')) k
    LEFT JOIN wval.current_stage cs ON cs.world_id = p_world AND cs.strategy_id = k.strategy_id
    LEFT JOIN LATERAL (SELECT e FROM wval.evaluation_runs e
                       WHERE e.world_id = p_world AND e.strategy_id = k.strategy_id AND e.kind = 'live'
                         AND e.as_of <= p_as_of
                       ORDER BY e.as_of DESC, e.created_at DESC LIMIT 1) lr(run) ON true
    LEFT JOIN LATERAL (SELECT e FROM wval.evaluation_runs e
                       WHERE e.world_id = p_world AND e.strategy_id = k.strategy_id AND e.kind = 'live'
                         AND e.as_of < (lr.run).as_of
                       ORDER BY e.as_of DESC, e.created_at DESC LIMIT 1) pr(run) ON true
    LEFT JOIN LATERAL (SELECT c FROM wval.demotion_candidates c
                       WHERE c.world_id = p_world AND c.run_id = (lr.run).run_id) dc(cand) ON true
    LEFT JOIN LATERAL (SELECT d FROM wval.deployments d
                       WHERE d.world_id = p_world AND d.strategy_id = k.strategy_id
                         AND d.recorded_at > (dc.cand).flagged_at
                       ORDER BY d.deployment_id LIMIT 1) dd(dep) ON true
    ORDER BY k.strategy_id
$$;
COMMENT ON FUNCTION wval._live_report_items(text, date) IS 'the strategies of a live report with their latest live run up to as_of, the previous live run, stage, the demotion candidate of that run and the first stage decision after it';

CREATE FUNCTION public.wval_live_report(world_id text, as_of date DEFAULT current_date, format text DEFAULT 'markdown')
RETURNS text
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp SET datestyle = 'ISO, YMD' AS $$
DECLARE
    p_world text := wval._ident('world_id', world_id);
    p_as_of date := as_of;
    html boolean;
    out text[] := '{}';
    s record;
    summary jsonb := '[]';
    wins text[];
    rows jsonb;
    cur jsonb;
    prev jsonb;
    ch record;
    days date[];
    equity float8[];
    dd float8[];
    rs_days date[];
    rs float8[];
    nchart integer := 0;
    dd_max float8;
    sharpe_min float8;
BEGIN
    PERFORM wval._one_of('format', format, ARRAY['markdown', 'html']);
    IF p_as_of IS NULL OR NOT isfinite(p_as_of) OR p_as_of NOT BETWEEN date '1900-01-01' AND date '9999-12-31' THEN
        RAISE EXCEPTION 'invalid value for "as_of"' USING ERRCODE = '22023',
            DETAIL = format('as_of is %s.', coalesce(p_as_of::text, 'null')),
            HINT = 'Pass the day of the report, e.g. current_date.';
    END IF;
    PERFORM wval._world(p_world);
    html := format = 'html';

    IF html THEN
        out := out || format('<!DOCTYPE html><html><head><meta charset="utf-8"><title>wval live report %s %s</title>'
                             '<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:0.5em 0}'
                             'td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}figure{margin:0.5em 0}'
                             '.fail{color:#b00020;font-weight:bold}.warn{color:#a06000}.pass{color:#2e7d32}</style></head><body>'
                             '<h1>Live monitoring report: %s as of %s</h1>',
                             wval._html(p_world), p_as_of, wval._html(p_world), p_as_of);
    ELSE
        out := out || format('# Live monitoring report: %s as of %s', wval._md_cell(p_world), p_as_of);
    END IF;

    -- summary, one row per strategy
    FOR s IN SELECT * FROM wval._live_report_items(p_world, p_as_of) LOOP
        summary := summary || jsonb_build_array(jsonb_build_array(
            s.strategy_id, coalesce(s.stage, 'not deployed'),
            coalesce(((s.run).as_of)::text, 'no live run'),
            coalesce(upper((s.run).status), ''),
            coalesce(((s.run).metrics #>> '{live,check_window}') || ' days', 'no data'),
            wval._fmt((s.run).metrics #> ARRAY['live', 'windows', (s.run).metrics #>> '{live,check_window}', 'sharpe']),
            wval._fmt((s.run).metrics #> ARRAY['live', 'windows', (s.run).metrics #>> '{live,check_window}', 'max_drawdown']),
            wval._fmt((s.run).metrics #> ARRAY['live', 'windows', (s.run).metrics #>> '{live,check_window}', 'es_p025']),
            wval._fmt((s.run).metrics #> '{live,decay}'),
            CASE WHEN (s.candidate).candidate_id IS NULL THEN 'none'
                 WHEN (s.decision).deployment_id IS NULL THEN 'CANDIDATE (' || (s.candidate).trigger || '), open'
                 ELSE format('candidate (%s), decided: %s', (s.candidate).trigger, (s.decision).stage) END,
            CASE WHEN (s.run).run_id IS NULL THEN ''
                 WHEN (s.prev).run_id IS NULL THEN 'first report'
                 WHEN (s.prev).status = (s.run).status THEN 'status unchanged since ' || (s.prev).as_of
                 ELSE format('%s -> %s since %s', upper((s.prev).status), upper((s.run).status), (s.prev).as_of) END));
    END LOOP;
    out := out || CASE WHEN html THEN '<h2>Summary</h2>' ELSE E'\n## Summary\n' END;
    IF jsonb_array_length(summary) = 0 THEN
        out := out || CASE WHEN html THEN '<p>No live runs and no deployed strategies up to this day.</p>'
                           ELSE 'No live runs and no deployed strategies up to this day.' END;
    ELSE
        out := out || wval._live_table(html, ARRAY['strategy', 'stage', 'run as of', 'status', 'check window', 'sharpe',
                                                   'max drawdown', 'ES 97.5%', 'decay', 'demotion', 'trend'], summary);
    END IF;

    -- one section per strategy with a run
    FOR s IN SELECT * FROM wval._live_report_items(p_world, p_as_of) x WHERE (x.run).run_id IS NOT NULL LOOP
        cur := (s.run).metrics -> 'live';
        prev := (s.prev).metrics -> 'live';
        out := out || CASE WHEN html THEN '<h2>' || wval._html(s.strategy_id) || '</h2>'
                           ELSE E'\n## ' || wval._md_cell(s.strategy_id) || E'\n' END;
        out := out || wval._live_table(html, ARRAY['item', 'value'], jsonb_build_array(
            jsonb_build_array('stage', coalesce(s.stage, 'not deployed')),
            jsonb_build_array('run', (s.run).run_id::text || ' as of ' || (s.run).as_of),
            jsonb_build_array('status', upper((s.run).status)),
            jsonb_build_array('policy version', coalesce((s.run).policy_version::text, 'none')),
            jsonb_build_array('live ruleset hash', coalesce((s.run).ruleset_hash, 'none')),
            jsonb_build_array('decay', wval._fmt(cur->'decay') ||
                CASE WHEN cur->>'backtest_run_id' IS NULL THEN ' (no backtest run)'
                     ELSE format(' (realized Sharpe over %s days / backtest Sharpe %s of run %s)',
                                 (SELECT max(k::integer) FROM jsonb_object_keys(cur->'windows') k),
                                 wval._fmt(cur->'backtest_sharpe'), cur->>'backtest_run_id') END),
            jsonb_build_array('demotion',
                CASE WHEN (s.candidate).candidate_id IS NULL THEN 'not a candidate'
                     ELSE format('flagged %s (%s; %s failing run%s in a row, demote_after %s; breached: %s)%s',
                                 (s.candidate).as_of, (s.candidate).trigger, (s.candidate).consecutive_runs,
                                 CASE WHEN (s.candidate).consecutive_runs = 1 THEN '' ELSE 's' END,
                                 (s.candidate).demote_after,
                                 (SELECT string_agg(b->>'check', ', ') FROM jsonb_array_elements((s.candidate).breached) b),
                                 CASE WHEN (s.decision).deployment_id IS NULL
                                      THEN ' - open: nobody has decided yet (wval_set_stage)'
                                      ELSE format(' - decided %s by %s: %s to %s (%s)',
                                                  to_char((s.decision).recorded_at AT TIME ZONE 'UTC', 'YYYY-MM-DD'),
                                                  (s.decision).actor, (s.decision).change, (s.decision).stage,
                                                  (s.decision).reason) END) END),
            jsonb_build_array('previous report', coalesce(((s.prev).as_of)::text || ', status ' || upper((s.prev).status),
                                                          'none'))));

        -- windows with the previous report's values
        wins := ARRAY(SELECT k FROM jsonb_object_keys(cur->'windows') k ORDER BY k::integer);
        SELECT jsonb_agg(jsonb_build_array(
                   k || ' days', cur #>> ARRAY['windows', k, 'n_obs'],
                   wval._fmt(cur #> ARRAY['windows', k, 'sharpe']),
                   wval._fmt(cur #> ARRAY['windows', k, 'max_drawdown']),
                   wval._fmt(cur #> ARRAY['windows', k, 'es_p025']),
                   CASE WHEN prev IS NULL THEN 'n/a'
                        ELSE wval._fmt(prev #> ARRAY['windows', k, 'sharpe']) || ' / ' ||
                             wval._fmt(prev #> ARRAY['windows', k, 'max_drawdown']) || ' / ' ||
                             wval._fmt(prev #> ARRAY['windows', k, 'es_p025']) END) ORDER BY o)
          INTO rows
        FROM unnest(wins) WITH ORDINALITY u(k, o);
        out := out || CASE WHEN html THEN '<h3>Windows</h3>' ELSE E'\n### Windows\n' END;
        out := out || wval._live_table(html, ARRAY['window', 'observations', 'sharpe', 'max drawdown', 'ES 97.5%',
                                                   'previous report (sharpe / max drawdown / ES)'], rows);

        -- check outcomes, failures first
        SELECT jsonb_agg(jsonb_build_array(e.key, e.value->>'status', e.value->>'severity', e.value->>'owner',
                                           wval._fmt(e.value->'details'->'value'), wval._threshold(e.value->'details'),
                                           e.value->>'reason_code', e.value->>'reason',
                                           coalesce((s.prev).results #>> ARRAY[e.key, 'status'], 'n/a'))
                         ORDER BY CASE e.value->>'status' WHEN 'fail' THEN 0 WHEN 'warn' THEN 1 ELSE 2 END, e.key)
          INTO rows
        FROM jsonb_each((s.run).results) e;
        out := out || CASE WHEN html THEN '<h3>Checks</h3>' ELSE E'\n### Checks\n' END;
        out := out || wval._live_table(html, ARRAY['check', 'status', 'severity', 'owner', 'value', 'threshold',
                                                   'reason code', 'reason', 'previous status'], coalesce(rows, '[]'));

        IF html THEN
          BEGIN
            -- charts over the longest window, from the returns that count now
            SELECT array_agg(q.day ORDER BY q.day), array_agg(q.eq ORDER BY q.day),
                   array_agg(q.eq / q.peak - 1 ORDER BY q.day),
                   array_agg(q.day ORDER BY q.day) FILTER (WHERE q.rs IS NOT NULL),
                   array_agg(q.rs ORDER BY q.day) FILTER (WHERE q.rs IS NOT NULL)
              INTO days, equity, dd, rs_days, rs
            FROM (SELECT z.day, z.eq, max(z.eq) OVER (ORDER BY z.day) AS peak, z.rs
                  FROM (SELECT c.day, exp(sum(ln(1 + c.ret)) OVER (ORDER BY c.day)) AS eq,
                               CASE WHEN count(*) OVER r20 = 20
                                    THEN avg(c.ret) OVER r20 / nullif(stddev_samp(c.ret) OVER r20, 0) * sqrt(252) END AS rs
                        FROM wval.live_returns_current c
                        WHERE c.world_id = p_world AND c.strategy_id = s.strategy_id
                          AND c.day > (s.run).as_of - wins[cardinality(wins)]::integer AND c.day <= (s.run).as_of
                        WINDOW r20 AS (ORDER BY c.day ROWS 19 PRECEDING)) z) q;
            -- thresholds: the dd_max and sharpe_min the run applied (live_monitoring)
            nchart := nchart + 1;
            dd_max := wval._report_threshold(s.run, 'live.max_drawdown', '<=');
            sharpe_min := wval._report_threshold(s.run, 'live.sharpe', '>=');
            out := out || '<h3>Charts</h3>'::text
                       || wval._chart_line('equity-' || nchart, format('Equity curve (%s days)', wins[cardinality(wins)]),
                                           days::text[], equity, '[]', '#1f5fa8')
                       || wval._chart_line('drawdown-' || nchart, 'Drawdown', days::text[], dd,
                                           CASE WHEN dd_max IS NULL THEN '[]'::jsonb
                                                ELSE jsonb_build_array(jsonb_build_object('y', -dd_max, 'label', 'dd_max', 'color', '#b00020')) END,
                                           '#b00020', true)
                       || wval._chart_line('rolling-sharpe-' || nchart, 'Rolling Sharpe (20 observations, annualised)',
                                           rs_days::text[], rs,
                                           jsonb_build_array(jsonb_build_object('y', 0, 'label', 'zero', 'color', '#666'))
                                           || CASE WHEN sharpe_min IS NULL THEN '[]'::jsonb
                                                   ELSE jsonb_build_array(jsonb_build_object('y', sharpe_min, 'label', 'sharpe_min',
                                                                                             'color', '#b00020')) END,
                                           '#2e7d32');
          EXCEPTION WHEN numeric_value_out_of_range OR division_by_zero OR invalid_argument_for_logarithm THEN
            -- realized returns near the limits of a double overflow the equity or variance
            out := out || '<h3>Charts</h3><p class="wval-no-returns">The realized returns are too large to chart (the arithmetic of the charts overflows a double).</p>'::text;
          END;
        END IF;
    END LOOP;

    IF html THEN
        out := out || '</body></html>'::text;
    END IF;
    RETURN array_to_string(out, E'\n');
END
$$;
COMMENT ON FUNCTION public.wval_live_report(text, date, text) IS 'the live monitoring report of a world as of a day (markdown or html): per strategy its latest live run up to that day with the windows, decay, check outcomes, demotion status and the change since the previous live run; html adds inline SVG charts (equity curve, drawdown with the dd_max line, rolling Sharpe with the zero and sharpe_min lines; round axis ticks)';

------------------------------------------------------------------------------
-- pg_dump and privileges
------------------------------------------------------------------------------

SELECT pg_catalog.pg_extension_config_dump('wval.live_returns', '');
SELECT pg_catalog.pg_extension_config_dump('wval.live_returns_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('wval.deployments', '');
SELECT pg_catalog.pg_extension_config_dump('wval.deployments_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('wval.demotion_candidates', '');
SELECT pg_catalog.pg_extension_config_dump('wval.demotion_candidates_id_seq', '');

GRANT SELECT ON wval.live_returns, wval.live_returns_current, wval.deployments, wval.current_stage,
      wval.demotion_candidates, wval.open_demotion_candidates
   TO wval_analyst;
GRANT EXECUTE ON FUNCTION public.wval_live_report(text, date, text) TO wval_analyst;
GRANT EXECUTE ON FUNCTION public.wval_record_live_returns(text, text, date[], float8[], text),
      public.wval_live_run(text, text, date), public.wval_live_run_all(date)
   TO wval_producer;
GRANT EXECUTE ON FUNCTION public.wval_set_stage(text, text, text, text, text) TO wval_validator;
GRANT EXECUTE ON FUNCTION public.wval_schedule_live_monitoring(text) TO wval_admin;
