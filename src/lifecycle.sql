-- lifecycle.sql: the loops around a policy change and an exception
-- (docs/lifecycle.md): re-validation of deployed strategies after an
-- activation (a queue filled by wval_policy_activate, emptied in bounded
-- batches by the pg_cron job wval:revalidate), and override requests
-- (request by the strategy's owner, approval or rejection by other logins,
-- an SLA per world).  Uses store.sql (activations, overrides), evaluate.sql
-- (the run writer) and live.sql (stage decisions, demotion candidates).
--
-- requires: store evaluate live

------------------------------------------------------------------------------
-- Re-validation after an activation
------------------------------------------------------------------------------

CREATE SEQUENCE wval.revalidation_queue_id_seq;
CREATE TABLE wval.revalidation_queue (
    item_id             bigint NOT NULL DEFAULT nextval('wval.revalidation_queue_id_seq'),
    world_id            text NOT NULL,
    strategy_id         text NOT NULL,
    deployed_stage      wval.deployment_stage NOT NULL,
    activation_id       bigint NOT NULL,
    version             integer NOT NULL,
    run_id              uuid NOT NULL,
    state               text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'done', 'skipped', 'failed')),
    attempts            integer NOT NULL DEFAULT 0,
    enqueued_at         timestamptz NOT NULL DEFAULT now(),
    processed_at        timestamptz,
    revalidation_run_id uuid,
    outcome             text CHECK (outcome IN ('unchanged', 'improved', 'worsened')),
    candidate_id        bigint,
    note                text,
    PRIMARY KEY (world_id, item_id)
);
SELECT wval._secure('wval.revalidation_queue');
ALTER SEQUENCE wval.revalidation_queue_id_seq OWNED BY wval.revalidation_queue.item_id;
CREATE INDEX ON wval.revalidation_queue (item_id) WHERE state = 'pending';
CREATE INDEX ON wval.revalidation_queue (world_id, activation_id);
COMMENT ON TABLE wval.revalidation_queue IS 'deployed strategies to re-check after a policy activation: one item per strategy deployed at paper, shadow or live and activation, filled by wval_policy_activate, worked off by wval_revalidate (pg_cron job wval:revalidate); finished items are kept 30 days';
COMMENT ON COLUMN wval.revalidation_queue.item_id IS 'number of the item (sequence wval.revalidation_queue_id_seq); items are worked off in this order';
COMMENT ON COLUMN wval.revalidation_queue.world_id IS 'the world (wval.worlds.world_id)';
COMMENT ON COLUMN wval.revalidation_queue.strategy_id IS 'the deployed strategy';
COMMENT ON COLUMN wval.revalidation_queue.deployed_stage IS 'the stage it was deployed at when the item was queued (wval.current_stage)';
COMMENT ON COLUMN wval.revalidation_queue.activation_id IS 'the activation that queued it (wval.policy_activations.activation_id)';
COMMENT ON COLUMN wval.revalidation_queue.version IS 'the policy version that activation made active';
COMMENT ON COLUMN wval.revalidation_queue.run_id IS 'the run re-checked: the strategy''s latest validation run (kind single, not unvalidated, not imported) when the item was queued';
COMMENT ON COLUMN wval.revalidation_queue.state IS 'pending | done (re-checked) | skipped (nothing to re-check: the run is already under the version active at its stage, the run is gone, or the strategy is no longer deployed) | failed (three attempts raised an error; note has the last)';
COMMENT ON COLUMN wval.revalidation_queue.attempts IS 'how often wval_revalidate tried the item';
COMMENT ON COLUMN wval.revalidation_queue.enqueued_at IS 'when the activation queued it';
COMMENT ON COLUMN wval.revalidation_queue.processed_at IS 'when it was done, skipped or failed; null while pending';
COMMENT ON COLUMN wval.revalidation_queue.revalidation_run_id IS 'the revalidation run recorded (wval.evaluation_runs, kind revalidation, linked_run_id = run_id); null unless done';
COMMENT ON COLUMN wval.revalidation_queue.outcome IS 'unchanged | improved | worsened: the revalidation run''s status and recommended stage against the re-checked run''s';
COMMENT ON COLUMN wval.revalidation_queue.candidate_id IS 'the demotion candidate a worsened outcome recorded (wval.demotion_candidates.candidate_id); null otherwise';
COMMENT ON COLUMN wval.revalidation_queue.note IS 'why an item was skipped, or the last error (SQLSTATE: message) of an attempt';
SELECT wval._protect_in_place('wval.revalidation_queue');
SELECT pg_catalog.pg_extension_config_dump('wval.revalidation_queue', '');
SELECT pg_catalog.pg_extension_config_dump('wval.revalidation_queue_id_seq', '');

-- wval._revalidation_enqueue(activation): queues every strategy of the
-- world deployed at paper, shadow or live whose latest validation run has a
-- stage the activation applies to.  Called by wval_policy_activate, in the
-- activating transaction (which does nothing more: the job re-checks).
CREATE FUNCTION wval._revalidation_enqueue(act wval.policy_activations) RETURNS integer
LANGUAGE plpgsql SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    n integer;
BEGIN
    INSERT INTO wval.revalidation_queue (world_id, strategy_id, deployed_stage, activation_id, version, run_id)
    SELECT cs.world_id, cs.strategy_id, cs.stage, act.activation_id, act.version, lr.run_id
    FROM wval.current_stage cs
    JOIN LATERAL (SELECT e.run_id, e.stage FROM wval.evaluation_runs e
                  WHERE e.world_id = cs.world_id AND e.strategy_id = cs.strategy_id AND e.kind = 'single'
                    AND e.status <> 'unvalidated' AND NOT wval._imported(e.context)
                  ORDER BY e.created_at DESC, e.chain_seq DESC LIMIT 1) lr ON true
    WHERE cs.world_id = act.world_id AND cs.stage IN ('paper', 'shadow', 'live')
      AND (act.stages IS NULL OR lr.stage = ANY (act.stages))
    ORDER BY cs.strategy_id;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;
COMMENT ON FUNCTION wval._revalidation_enqueue(wval.policy_activations) IS 'queues the re-validation of the world''s deployed strategies (paper, shadow, live) whose latest validation run is at a stage the activation applies to; returns how many';

-- wval._outcome_rank(status, recommended_stage): how good an outcome is,
-- status first (pass > warn > fail), then the recommended stage.
CREATE FUNCTION wval._outcome_rank(status text, recommended_stage text) RETURNS integer[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT ARRAY[CASE status WHEN 'pass' THEN 3 WHEN 'warn' THEN 2 WHEN 'fail' THEN 1 ELSE 0 END,
                 CASE recommended_stage WHEN 'paper_ok_live_candidate' THEN 3 WHEN 'paper_only' THEN 2
                                        WHEN 'backtest_only' THEN 1 ELSE 0 END]
$$;
COMMENT ON FUNCTION wval._outcome_rank(text, text) IS 'the order of run outcomes: {status rank (pass 3, warn 2, fail 1), recommended stage rank (paper_ok_live_candidate 3, paper_only 2, backtest_only 1)}';

-- wval._revalidate_item(item): re-checks one queued strategy; returns the
-- item as finished (done or skipped).  Errors propagate to the caller,
-- which counts the attempt.
CREATE FUNCTION wval._revalidate_item(it wval.revalidation_queue) RETURNS wval.revalidation_queue
LANGUAGE plpgsql SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    r wval.evaluation_runs;
    nr wval.evaluation_runs;
    deployed text;
    v integer;
    ctx jsonb;
    old_rank integer[];
    new_rank integer[];
    outcome text;
    breached jsonb;
    c wval.demotion_candidates;
BEGIN
    SELECT * INTO r FROM wval.evaluation_runs e WHERE e.world_id = it.world_id AND e.run_id = it.run_id LIMIT 1;
    IF NOT FOUND THEN
        it.state := 'skipped'; it.note := 'the run was purged';
        RETURN it;
    END IF;
    -- the current stage (wval.current_stage, through its index)
    SELECT d.stage INTO deployed FROM wval.deployments d
    WHERE d.world_id = it.world_id AND d.strategy_id = it.strategy_id
    ORDER BY d.deployment_id DESC LIMIT 1;
    IF deployed IS NULL OR deployed NOT IN ('paper', 'shadow', 'live') THEN
        it.state := 'skipped'; it.note := format('no longer deployed (stage %s)', coalesce(deployed, 'backtest'));
        RETURN it;
    END IF;
    SELECT a.version INTO v FROM wval.policy_activations a
    WHERE a.world_id = r.world_id AND (a.stages IS NULL OR r.stage = ANY (a.stages))
    ORDER BY a.activation_id DESC LIMIT 1;
    IF v IS NULL OR v = r.policy_version THEN
        it.state := 'skipped';
        it.note := format('run %s was evaluated under version %s, the version active at stage %s', r.run_id,
                          r.policy_version, r.stage);
        RETURN it;
    END IF;

    -- the stored metrics and provenance, evaluated as of the run's own time
    -- (as wval_policy_diff replays history), stored as a revalidation run
    ctx := jsonb_strip_nulls(jsonb_build_object(
               'run_id', format('revalidation:%s:%s', it.activation_id, r.run_id),
               'actor', 'wval:revalidation',
               'data_as_of', r.context -> 'data_as_of',
               'model_card_version', r.model_card_version, 'code_hash', r.code_hash,
               'data_snapshot', r.data_snapshot, 'campaign_id', r.campaign_id,
               'revalidation', jsonb_build_object('item_id', it.item_id, 'activation_id', it.activation_id,
                                                  'previous_policy_version', r.policy_version,
                                                  'previous_status', r.status,
                                                  'previous_recommended_stage', r.recommended_stage)));
    nr := wval._evaluate_linked(r.world_id, r.strategy_id, r.stage, NULL, r.metrics, ctx,
                                'revalidation', r.run_id, r.created_at);

    old_rank := wval._outcome_rank(r.status, r.recommended_stage);
    new_rank := wval._outcome_rank(nr.status, nr.recommended_stage);
    outcome := CASE WHEN new_rank[1] < old_rank[1] OR new_rank[2] < old_rank[2] THEN 'worsened'
                    WHEN new_rank[1] > old_rank[1] OR new_rank[2] > old_rank[2] THEN 'improved'
                    ELSE 'unchanged' END;
    it.state := 'done';
    it.revalidation_run_id := nr.run_id;
    it.outcome := outcome;

    IF outcome = 'worsened' THEN
        -- a demotion candidate, as live monitoring records them
        SELECT coalesce(jsonb_agg(jsonb_build_object('check', x.key, 'severity', x.value->>'severity',
                                                     'reason_code', x.value->>'reason_code', 'reason', x.value->>'reason')
                                  ORDER BY x.key), '[]')
          INTO breached
        FROM jsonb_each(nr.results) x
        WHERE x.value->>'status' = 'fail' AND x.value->>'severity' IN ('blocking', 'soft');
        INSERT INTO wval.demotion_candidates (world_id, strategy_id, run_id, as_of, stage, trigger, breached,
                                              consecutive_runs, demote_after)
        VALUES (nr.world_id, nr.strategy_id, nr.run_id, (now() AT TIME ZONE 'UTC')::date, deployed, 'revalidation',
                breached, 1, 1)
        RETURNING * INTO c;
        it.candidate_id := c.candidate_id;
        PERFORM wval._emit('demotion_candidate_flagged', nr.world_id, nr.strategy_id,
                           format('demotion_candidate_flagged:%s:%s:%s', nr.world_id, nr.strategy_id, nr.run_id),
                           jsonb_build_object('world_id', nr.world_id, 'strategy_id', nr.strategy_id,
                                              'run_id', nr.run_id, 'as_of', c.as_of, 'stage', deployed,
                                              'trigger', 'revalidation',
                                              'breached', (SELECT jsonb_agg(b->'check') FROM jsonb_array_elements(breached) b),
                                              'consecutive_runs', 1, 'demote_after', 1,
                                              'linked_run_id', r.run_id, 'activation_id', it.activation_id,
                                              'policy_version', nr.policy_version,
                                              'previous_policy_version', r.policy_version,
                                              'previous_status', r.status, 'status', nr.status,
                                              'previous_recommended_stage', r.recommended_stage,
                                              'recommended_stage', nr.recommended_stage));
    END IF;
    RETURN it;
END
$$;
COMMENT ON FUNCTION wval._revalidate_item(wval.revalidation_queue) IS 're-checks one queued strategy: its run''s stored metrics under the version active at the run''s stage, recorded as a revalidation run (as of the run''s time); a worse outcome records a demotion candidate (trigger revalidation) and emits demotion_candidate_flagged';

CREATE FUNCTION public.wval_revalidate(max_items integer DEFAULT 100, max_ms integer DEFAULT 10000) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    started timestamptz := clock_timestamp();
    me oid := (SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname = wval._invoker());
    it wval.revalidation_queue;
    done_it wval.revalidation_queue;
    counts jsonb := jsonb_build_object('done', 0, 'skipped', 0, 'failed', 0, 'retry', 0, 'worsened', 0);
    k text;
    n_pruned bigint;
BEGIN
    IF max_items IS NULL OR max_items < 1 OR max_items > 10000 THEN
        RAISE EXCEPTION 'invalid value for "max_items"' USING ERRCODE = '22023',
            DETAIL = format('max_items is %s.', coalesce(max_items::text, 'null')),
            HINT = 'Pass 1 to 10000 items per call.';
    END IF;
    IF max_ms IS NULL OR max_ms < 1 OR max_ms > 600000 THEN
        RAISE EXCEPTION 'invalid value for "max_ms"' USING ERRCODE = '22023',
            DETAIL = format('max_ms is %s.', coalesce(max_ms::text, 'null')),
            HINT = 'Pass 1 to 600000 milliseconds per call.';
    END IF;
    -- the oldest pending items, locked as the loop reaches them; items another
    -- run holds are skipped (they are that run's), so concurrent runs share
    -- the queue without waiting for each other's items
    FOR it IN SELECT * FROM wval.revalidation_queue q
              WHERE q.state = 'pending' AND wval._world_access(me, q.world_id, 'write')
              ORDER BY q.item_id LIMIT max_items
              FOR UPDATE SKIP LOCKED
    LOOP
        EXIT WHEN clock_timestamp() - started >= max_ms * interval '1 millisecond';
        BEGIN
            done_it := wval._revalidate_item(it);
            UPDATE wval.revalidation_queue q
            SET state = done_it.state, attempts = q.attempts + 1, processed_at = clock_timestamp(),
                revalidation_run_id = done_it.revalidation_run_id, outcome = done_it.outcome,
                candidate_id = done_it.candidate_id, note = done_it.note
            WHERE q.world_id = it.world_id AND q.item_id = it.item_id;
            k := done_it.state;
            IF done_it.outcome = 'worsened' THEN
                counts := jsonb_set(counts, '{worsened}', to_jsonb((counts ->> 'worsened')::integer + 1));
            END IF;
        EXCEPTION WHEN OTHERS THEN
            -- the item's work is rolled back; three attempts, then failed
            UPDATE wval.revalidation_queue q
            SET attempts = q.attempts + 1, note = SQLSTATE || ': ' || SQLERRM,
                state = CASE WHEN q.attempts + 1 >= 3 THEN 'failed' ELSE 'pending' END,
                processed_at = CASE WHEN q.attempts + 1 >= 3 THEN clock_timestamp() END
            WHERE q.world_id = it.world_id AND q.item_id = it.item_id
            RETURNING CASE WHEN q.state = 'failed' THEN 'failed' ELSE 'retry' END INTO k;
        END;
        counts := jsonb_set(counts, ARRAY[k], to_jsonb((counts ->> k)::integer + 1));
    END LOOP;
    -- finished items are kept 30 days (bounded per call)
    DELETE FROM wval.revalidation_queue q
    WHERE (q.world_id, q.item_id) IN (SELECT x.world_id, x.item_id FROM wval.revalidation_queue x
                                      WHERE x.state <> 'pending' AND x.processed_at < now() - interval '30 days'
                                        AND wval._world_access(me, x.world_id, 'write')
                                      LIMIT 1000);
    GET DIAGNOSTICS n_pruned = ROW_COUNT;
    RETURN counts || jsonb_build_object('pruned', n_pruned,
        'pending', (SELECT count(*) FROM wval.revalidation_queue q
                    WHERE q.state = 'pending' AND wval._world_access(me, q.world_id, 'read')),
        'ms', round(extract(epoch FROM clock_timestamp() - started) * 1000));
END
$$;
COMMENT ON FUNCTION public.wval_revalidate(integer, integer) IS 're-checks queued deployed strategies after policy activations (at most max_items items or max_ms milliseconds per call, each in its own subtransaction, of the worlds the caller may write): revalidation runs, demotion candidates for worse outcomes; returns {done, skipped, failed, retry, worsened, pruned, pending, ms}; what the pg_cron job wval:revalidate runs';

CREATE FUNCTION public.wval_schedule_revalidation(schedule text DEFAULT '* * * * *', max_items integer DEFAULT 100)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
BEGIN
    IF max_items IS NULL OR max_items < 1 OR max_items > 10000 THEN
        RAISE EXCEPTION 'invalid value for "max_items"' USING ERRCODE = '22023',
            DETAIL = format('max_items is %s.', coalesce(max_items::text, 'null')),
            HINT = 'Pass 1 to 10000 items per run.';
    END IF;
    RETURN wval._cron_schedule('revalidate', schedule,
                               format('SELECT public.wval_revalidate(%s, 50000)', max_items::integer));
END
$$;
COMMENT ON FUNCTION public.wval_schedule_revalidation(text, integer) IS 'schedules the re-validation job (pg_cron job wval:revalidate): wval_revalidate(max_items) every minute by default';

CREATE VIEW wval.revalidation_progress AS
SELECT q.world_id, q.activation_id, q.version,
       count(*) AS items,
       count(*) FILTER (WHERE q.state = 'pending') AS pending,
       count(*) FILTER (WHERE q.state = 'done') AS done,
       count(*) FILTER (WHERE q.state = 'skipped') AS skipped,
       count(*) FILTER (WHERE q.state = 'failed') AS failed,
       count(*) FILTER (WHERE q.outcome = 'worsened') AS worsened,
       min(q.enqueued_at) AS enqueued_at,
       min(q.enqueued_at) FILTER (WHERE q.state = 'pending') AS oldest_pending_at,
       max(q.processed_at) AS last_processed_at
FROM wval.revalidation_queue q
GROUP BY q.world_id, q.activation_id, q.version;
COMMENT ON VIEW wval.revalidation_progress IS 'progress and backlog of the re-validation per world and activation (items kept 30 days after they finish)';
COMMENT ON COLUMN wval.revalidation_progress.world_id IS 'the world (wval.worlds.world_id)';
COMMENT ON COLUMN wval.revalidation_progress.activation_id IS 'the activation that queued the items';
COMMENT ON COLUMN wval.revalidation_progress.version IS 'the policy version it made active';
COMMENT ON COLUMN wval.revalidation_progress.items IS 'deployed strategies queued';
COMMENT ON COLUMN wval.revalidation_progress.pending IS 'items not yet re-checked (the backlog)';
COMMENT ON COLUMN wval.revalidation_progress.done IS 'items re-checked (a revalidation run recorded)';
COMMENT ON COLUMN wval.revalidation_progress.skipped IS 'items with nothing to re-check (see wval.revalidation_queue.note)';
COMMENT ON COLUMN wval.revalidation_progress.failed IS 'items that raised an error three times';
COMMENT ON COLUMN wval.revalidation_progress.worsened IS 're-checks whose outcome worsened (each a demotion candidate)';
COMMENT ON COLUMN wval.revalidation_progress.enqueued_at IS 'when the activation queued them';
COMMENT ON COLUMN wval.revalidation_progress.oldest_pending_at IS 'when the oldest pending item was queued; null when none is pending';
COMMENT ON COLUMN wval.revalidation_progress.last_processed_at IS 'when an item was last finished; null when none is';

------------------------------------------------------------------------------
-- Override requests
------------------------------------------------------------------------------

CREATE SEQUENCE wval.override_requests_id_seq;
CREATE TABLE wval.override_requests (
    entry_id           bigint NOT NULL DEFAULT nextval('wval.override_requests_id_seq'),
    request_id         uuid NOT NULL,
    world_id           text NOT NULL,
    run_id             uuid NOT NULL,
    strategy_id        text NOT NULL,
    state              text NOT NULL CHECK (state IN ('requested', 'approval', 'approved', 'rejected')),
    reason             text NOT NULL,
    actor              text NOT NULL,
    login              name NOT NULL DEFAULT session_user,
    approvals_required integer NOT NULL CHECK (approvals_required BETWEEN 1 AND 3),
    due_at             timestamptz NOT NULL,
    override_id        bigint,
    recorded_at        timestamptz NOT NULL DEFAULT clock_timestamp(),
    chain_seq          bigint NOT NULL,
    prev_hash          text NOT NULL,
    row_hash           text NOT NULL,
    PRIMARY KEY (world_id, request_id, entry_id)
);
SELECT wval._secure('wval.override_requests');
ALTER SEQUENCE wval.override_requests_id_seq OWNED BY wval.override_requests.entry_id;
CREATE INDEX ON wval.override_requests (request_id, entry_id DESC);
CREATE INDEX ON wval.override_requests (run_id);
COMMENT ON TABLE wval.override_requests IS 'override requests and their decisions: a strategy owner asks for an override on a run, validators (other logins) approve or reject it; every transition is a row with the same request_id, the latest is the request''s state; append-only, hash-chained';
COMMENT ON COLUMN wval.override_requests.entry_id IS 'number of the row (sequence wval.override_requests_id_seq); the latest per request_id is the state';
COMMENT ON COLUMN wval.override_requests.request_id IS 'the request; its every transition is a row with this id';
COMMENT ON COLUMN wval.override_requests.world_id IS 'the world (wval.worlds.world_id)';
COMMENT ON COLUMN wval.override_requests.run_id IS 'the run the override is asked for (wval.evaluation_runs.run_id)';
COMMENT ON COLUMN wval.override_requests.strategy_id IS 'strategy of the run';
COMMENT ON COLUMN wval.override_requests.state IS 'requested (open) | approval (one of several required approvals recorded; still open) | approved (the override was recorded, override_id) | rejected';
COMMENT ON COLUMN wval.override_requests.reason IS 'why the override is asked for (requested) or why it was approved or rejected';
COMMENT ON COLUMN wval.override_requests.actor IS 'the person the acting login named (a label)';
COMMENT ON COLUMN wval.override_requests.login IS 'the database login that acted (session_user): the requester''s login cannot approve or reject, and two approvals need two logins';
COMMENT ON COLUMN wval.override_requests.approvals_required IS 'approvals needed (world setting override_request_approvers; default 2 in high-tier worlds, else 1), fixed when requested';
COMMENT ON COLUMN wval.override_requests.due_at IS 'the request must be decided by then: requested_at + the world''s override_request_sla (default 2 days), fixed when requested';
COMMENT ON COLUMN wval.override_requests.override_id IS 'the override the final approval recorded (wval.overrides.override_id); null otherwise';
COMMENT ON COLUMN wval.override_requests.recorded_at IS 'when the transition was recorded';
COMMENT ON COLUMN wval.override_requests.chain_seq IS 'position of the row in its world''s hash chain, shared by every chained table of the world (1, 2, 3 ... without gaps; in a world with settings.chain_lanes > 1, lane k counts from k * 2^40 + 1); set by the chain trigger';
COMMENT ON COLUMN wval.override_requests.prev_hash IS 'row_hash of the previous link of the same world''s chain (in any table; in the same lane); ''sha256:'' and 64 zeros for a world''s first link';
COMMENT ON COLUMN wval.override_requests.row_hash IS '''sha256:'' || hex of sha256 over prev_hash, table name, chain_seq and the row''s canonical text, newline-separated (docs/store.md); recomputed by wval_verify_chain';
SELECT wval._protect('wval.override_requests', 'override_requests');
SELECT pg_catalog.pg_extension_config_dump('wval.override_requests', '');
SELECT pg_catalog.pg_extension_config_dump('wval.override_requests_id_seq', '');

CREATE VIEW wval.current_override_requests AS
SELECT c.request_id, c.world_id, c.run_id, c.strategy_id, c.state,
       c.state IN ('requested', 'approval') AS open,
       f.actor AS requested_by, f.login AS requester_login, f.reason AS request_reason, f.recorded_at AS requested_at,
       c.approvals_required,
       (SELECT count(*) FROM wval.override_requests a
        WHERE a.world_id = c.world_id AND a.request_id = c.request_id AND a.state IN ('approval', 'approved')) AS approvals,
       (SELECT array_agg(a.login ORDER BY a.entry_id) FROM wval.override_requests a
        WHERE a.world_id = c.world_id AND a.request_id = c.request_id AND a.state IN ('approval', 'approved')) AS approver_logins,
       c.due_at, c.state IN ('requested', 'approval') AND c.due_at < statement_timestamp() AS overdue,
       c.override_id, c.actor AS last_actor, c.reason AS last_reason, c.recorded_at AS updated_at
FROM (SELECT DISTINCT ON (r.world_id, r.request_id) r.*
      FROM wval.override_requests r
      ORDER BY r.world_id, r.request_id, r.entry_id DESC) c
JOIN wval.override_requests f ON f.world_id = c.world_id AND f.request_id = c.request_id AND f.state = 'requested';
COMMENT ON VIEW wval.current_override_requests IS 'every override request in its current state (the latest row per request), with who asked, the approvals so far and whether it is overdue';
COMMENT ON COLUMN wval.current_override_requests.request_id IS 'the request';
COMMENT ON COLUMN wval.current_override_requests.world_id IS 'the world (wval.worlds.world_id)';
COMMENT ON COLUMN wval.current_override_requests.run_id IS 'the run the override is asked for';
COMMENT ON COLUMN wval.current_override_requests.strategy_id IS 'strategy of the run';
COMMENT ON COLUMN wval.current_override_requests.state IS 'requested | approval | approved | rejected (the latest transition)';
COMMENT ON COLUMN wval.current_override_requests.open IS 'true while it waits for a decision (requested or approval)';
COMMENT ON COLUMN wval.current_override_requests.requested_by IS 'the person the requester named';
COMMENT ON COLUMN wval.current_override_requests.requester_login IS 'the login that asked';
COMMENT ON COLUMN wval.current_override_requests.request_reason IS 'why the override was asked for';
COMMENT ON COLUMN wval.current_override_requests.requested_at IS 'when it was asked for';
COMMENT ON COLUMN wval.current_override_requests.approvals_required IS 'approvals needed';
COMMENT ON COLUMN wval.current_override_requests.approvals IS 'approvals recorded so far';
COMMENT ON COLUMN wval.current_override_requests.approver_logins IS 'the logins that approved, in order; null when none';
COMMENT ON COLUMN wval.current_override_requests.due_at IS 'the request must be decided by then (the world''s SLA)';
COMMENT ON COLUMN wval.current_override_requests.overdue IS 'open and past due_at (at the start of the query: statement_timestamp())';
COMMENT ON COLUMN wval.current_override_requests.override_id IS 'the override an approval recorded (wval.overrides.override_id); null otherwise';
COMMENT ON COLUMN wval.current_override_requests.last_actor IS 'the person named in the latest transition';
COMMENT ON COLUMN wval.current_override_requests.last_reason IS 'the reason given in the latest transition';
COMMENT ON COLUMN wval.current_override_requests.updated_at IS 'when the latest transition was recorded';

CREATE VIEW wval.overdue_override_requests AS
SELECT r.request_id, r.world_id, r.run_id, r.strategy_id, r.state, r.requested_by, r.requester_login, r.requested_at,
       r.approvals, r.approvals_required, r.due_at, statement_timestamp() - r.due_at AS overdue_by
FROM wval.current_override_requests r
WHERE r.overdue;
COMMENT ON VIEW wval.overdue_override_requests IS 'open override requests past their SLA (due_at), most overdue first when ordered by overdue_by';
COMMENT ON COLUMN wval.overdue_override_requests.request_id IS 'the request';
COMMENT ON COLUMN wval.overdue_override_requests.world_id IS 'the world (wval.worlds.world_id)';
COMMENT ON COLUMN wval.overdue_override_requests.run_id IS 'the run the override is asked for';
COMMENT ON COLUMN wval.overdue_override_requests.strategy_id IS 'strategy of the run';
COMMENT ON COLUMN wval.overdue_override_requests.state IS 'requested | approval';
COMMENT ON COLUMN wval.overdue_override_requests.requested_by IS 'the person the requester named';
COMMENT ON COLUMN wval.overdue_override_requests.requester_login IS 'the login that asked';
COMMENT ON COLUMN wval.overdue_override_requests.requested_at IS 'when it was asked for';
COMMENT ON COLUMN wval.overdue_override_requests.approvals IS 'approvals recorded so far';
COMMENT ON COLUMN wval.overdue_override_requests.approvals_required IS 'approvals needed';
COMMENT ON COLUMN wval.overdue_override_requests.due_at IS 'when it should have been decided';
COMMENT ON COLUMN wval.overdue_override_requests.overdue_by IS 'how long past due_at (at the start of the query)';

-- wval._override_request_sla(world): settings.override_request_sla (an
-- interval of 1 second to 90 days), default 2 days.
CREATE FUNCTION wval._override_request_sla(w wval.worlds) RETURNS interval
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v interval;
BEGIN
    IF jsonb_typeof(w.settings -> 'override_request_sla') = 'string' THEN
        BEGIN
            v := wval._duration('override_request_sla', w.settings ->> 'override_request_sla');
        EXCEPTION WHEN OTHERS THEN
            v := NULL;
        END;
        IF v >= interval '1 second' AND v <= interval '90 days' THEN
            RETURN v;
        END IF;
    END IF;
    RETURN interval '2 days';
END
$$;
COMMENT ON FUNCTION wval._override_request_sla(wval.worlds) IS 'how long a world''s override requests may wait for a decision: settings.override_request_sla (1 second to 90 days, e.g. "8h"), default 2 days';

-- wval._override_approvers(world): settings.override_request_approvers
-- (1 to 3), default 2 for high-tier worlds and 1 otherwise.
CREATE FUNCTION wval._override_approvers(w wval.worlds) RETURNS integer
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN jsonb_typeof(w.settings -> 'override_request_approvers') = 'number'
                     AND (w.settings ->> 'override_request_approvers') IN ('1', '2', '3')
                THEN (w.settings ->> 'override_request_approvers')::integer
                WHEN w.risk_tier = 'high' THEN 2 ELSE 1 END
$$;
COMMENT ON FUNCTION wval._override_approvers(wval.worlds) IS 'approvals an override request of a world needs: settings.override_request_approvers (1 to 3), default 2 in high-tier worlds, else 1';

-- wval._override_request(request_id, lock): the current row of a request
-- the caller may read (WV010 otherwise), optionally locking its run.
CREATE FUNCTION wval._override_request(p_request_id uuid) RETURNS wval.override_requests
LANGUAGE plpgsql SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    q wval.override_requests;
BEGIN
    SELECT * INTO q FROM wval.override_requests r WHERE r.request_id = p_request_id
    ORDER BY r.entry_id DESC LIMIT 1;
    IF NOT FOUND OR NOT wval._can_read(q.world_id) THEN
        -- no id in the message: a hidden request reads like a missing one
        RAISE EXCEPTION 'override request does not exist'
            USING ERRCODE = 'WV010',
                  DETAIL = format('request_id is %s.', coalesce(p_request_id::text, 'null')),
                  HINT = 'See wval.current_override_requests.';
    END IF;
    -- decisions on one run are made one after the other (the run's row lock,
    -- as wval_override takes it); then re-read the state
    PERFORM wval._run_lock(wval._run(q.run_id), 'no key update');
    SELECT * INTO q FROM wval.override_requests r WHERE r.request_id = p_request_id
    ORDER BY r.entry_id DESC LIMIT 1;
    RETURN q;
END
$$;
COMMENT ON FUNCTION wval._override_request(uuid) IS 'the current row of an override request (WV010 when the caller may not see it), read after locking its run so that decisions on it are serial';

-- wval._override_request_open(request_id, decision): the current row of a
-- request a validator is about to decide, after the checks both decisions
-- share: the caller may write the world (42501), the request is still open
-- (WV009), and the caller's login is not the requester's (WV009 unless a
-- governance exception allows it; allowed says which).
CREATE FUNCTION wval._override_request_open(p_request_id uuid, p_decision text,
                                            OUT cur wval.override_requests, OUT allowed jsonb)
LANGUAGE plpgsql SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    requester name;
BEGIN
    cur := wval._override_request(p_request_id);
    PERFORM wval._require_world_access(cur.world_id, 'write');
    IF cur.state NOT IN ('requested', 'approval') THEN
        RAISE EXCEPTION 'override request % is already %', p_request_id, cur.state
            USING ERRCODE = 'WV009',
                  DETAIL = format('It was %s by %L at %s.', cur.state, cur.actor, cur.recorded_at),
                  HINT = 'Ask again with wval_override_request() if the decision should be revisited.';
    END IF;
    SELECT r.login INTO requester FROM wval.override_requests r
    WHERE r.world_id = cur.world_id AND r.request_id = cur.request_id AND r.state = 'requested';
    allowed := wval._other_login(cur.world_id, 'override_author', requester,
                                 format('requested override %s', cur.request_id), p_decision);
END
$$;
COMMENT ON FUNCTION wval._override_request_open(uuid, text) IS 'the current row of an open override request about to be decided, after the shared checks (world write access, still open, not the requester''s login); allowed: the governance exception that let the requester''s login decide, if any';

-- wval._override_request_event(row, type, data): audit row and event of a transition
CREATE FUNCTION wval._override_request_event(q wval.override_requests, p_type text, p_data jsonb) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, wval, pg_temp AS $$
BEGIN
    PERFORM wval._audit(q.world_id, p_type, q.actor,
                        jsonb_build_object('request_id', q.request_id, 'run_id', q.run_id, 'strategy_id', q.strategy_id,
                                           'reason', q.reason, 'state', q.state) || coalesce(p_data, '{}'));
    PERFORM wval._emit(p_type, q.world_id, q.request_id::text,
                       format('%s:%s:%s:%s', p_type, q.world_id, q.request_id, q.entry_id),
                       jsonb_build_object('world_id', q.world_id, 'request_id', q.request_id, 'run_id', q.run_id,
                                          'strategy_id', q.strategy_id, 'state', q.state, 'actor', q.actor,
                                          'login', q.login, 'due_at', q.due_at,
                                          'approvals_required', q.approvals_required) || coalesce(p_data, '{}'));
END
$$;
COMMENT ON FUNCTION wval._override_request_event(wval.override_requests, text, jsonb) IS 'audits a transition of an override request and emits its event (override_requested, override_request_approved, override_request_rejected)';

CREATE FUNCTION public.wval_override_request(run_id uuid, reason text, actor text DEFAULT NULL)
RETURNS wval.override_requests
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    r wval.evaluation_runs := wval._run(run_id);
    p_actor text := wval._ident('actor', coalesce(actor, wval._invoker()));
    w wval.worlds;
    open_id uuid;
    q wval.override_requests;
BEGIN
    PERFORM wval._require_text('reason', reason, '22023', 'Say why the run should be let through.');
    w := wval._world(r.world_id);
    PERFORM wval._require_world_access(r.world_id, 'write');
    PERFORM wval._run_lock(r, 'no key update');     -- one open request per run
    SELECT c.request_id INTO open_id FROM wval.current_override_requests c
    WHERE c.world_id = r.world_id AND c.run_id = r.run_id AND c.open;
    IF FOUND THEN
        RAISE EXCEPTION 'run % already has an open override request %', r.run_id, open_id
            USING ERRCODE = 'WV009',
                  DETAIL = format('request_id is %s.', open_id),
                  HINT = 'Wait for the decision on that request (wval.current_override_requests).';
    END IF;
    INSERT INTO wval.override_requests (request_id, world_id, run_id, strategy_id, state, reason, actor,
                                        approvals_required, due_at)
    VALUES (gen_random_uuid(), r.world_id, r.run_id, r.strategy_id, 'requested', reason, p_actor,
            wval._override_approvers(w), clock_timestamp() + wval._override_request_sla(w))
    RETURNING * INTO q;
    PERFORM wval._override_request_event(q, 'override_requested',
                                         jsonb_build_object('run_status', r.status,
                                                            'recommended_stage', r.recommended_stage));
    RETURN q;
END
$$;
COMMENT ON FUNCTION public.wval_override_request(uuid, text, text) IS 'asks for an override on a run (the strategy''s owner, a wval_producer): an open request with the world''s SLA (due_at) and number of approvers; one open request per run (WV009); audited, emits override_requested';

CREATE FUNCTION public.wval_override_approve(request_id uuid, reason text, actor text)
RETURNS wval.override_requests
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    p_actor text := wval._ident('actor', actor);
    opened record;
    cur wval.override_requests;
    prior text;
    allowed jsonb;
    n integer;
    o wval.overrides;
    q wval.override_requests;
BEGIN
    PERFORM wval._require_text('reason', reason, 'WV009', 'Approve with a non-blank reason.');
    -- the requester does not approve (by login), nor does one login approve twice
    opened := wval._override_request_open(request_id, 'approve it');
    cur := opened.cur;
    allowed := opened.allowed;
    FOR prior IN SELECT r.login FROM wval.override_requests r
                 WHERE r.world_id = cur.world_id AND r.request_id = cur.request_id AND r.state = 'approval' LOOP
        allowed := coalesce(allowed, '{}') || coalesce(wval._other_login(cur.world_id, 'two_person', prior,
                                 format('approved override request %s', cur.request_id), 'give its second approval'), '{}');
    END LOOP;
    SELECT count(*) + 1 INTO n FROM wval.override_requests r
    WHERE r.world_id = cur.world_id AND r.request_id = cur.request_id AND r.state = 'approval';
    IF n >= cur.approvals_required THEN
        -- the last approval: the override, through the override path (its checks apply)
        o := public.wval_override(cur.run_id, 'approved', reason, p_actor);
    END IF;
    INSERT INTO wval.override_requests (request_id, world_id, run_id, strategy_id, state, reason, actor,
                                        approvals_required, due_at, override_id)
    VALUES (cur.request_id, cur.world_id, cur.run_id, cur.strategy_id,
            CASE WHEN o.override_id IS NULL THEN 'approval' ELSE 'approved' END, reason, p_actor,
            cur.approvals_required, cur.due_at, o.override_id)
    RETURNING * INTO q;
    PERFORM wval._override_request_event(q, 'override_request_approved',
                                         jsonb_build_object('approvals', n, 'final', o.override_id IS NOT NULL,
                                                            'override_id', o.override_id,
                                                            'review_due_at', o.review_due_at)
                                         || CASE WHEN allowed IS NULL OR allowed = '{}' THEN '{}'::jsonb
                                                 ELSE jsonb_build_object('separation_of_duties', allowed) END);
    RETURN q;
END
$$;
COMMENT ON FUNCTION public.wval_override_approve(uuid, text, text) IS 'approves an open override request (a validator; not the requester''s login, and each approval by another login, WV009); the last required approval records the override with wval_override() (review date, run-author rule); audited, emits override_request_approved';

CREATE FUNCTION public.wval_override_reject(request_id uuid, reason text, actor text)
RETURNS wval.override_requests
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    p_actor text := wval._ident('actor', actor);
    opened record;
    cur wval.override_requests;
    allowed jsonb;
    q wval.override_requests;
BEGIN
    PERFORM wval._require_text('reason', reason, 'WV009', 'Reject with a non-blank reason.');
    opened := wval._override_request_open(request_id, 'reject it');
    cur := opened.cur;
    allowed := opened.allowed;
    INSERT INTO wval.override_requests (request_id, world_id, run_id, strategy_id, state, reason, actor,
                                        approvals_required, due_at)
    VALUES (cur.request_id, cur.world_id, cur.run_id, cur.strategy_id, 'rejected', reason, p_actor,
            cur.approvals_required, cur.due_at)
    RETURNING * INTO q;
    PERFORM wval._override_request_event(q, 'override_request_rejected',
                                         CASE WHEN allowed IS NULL THEN '{}'::jsonb
                                              ELSE jsonb_build_object('separation_of_duties', allowed) END);
    RETURN q;
END
$$;
COMMENT ON FUNCTION public.wval_override_reject(uuid, text, text) IS 'rejects an open override request (a validator, not the requester''s login: WV009); no override is recorded; audited, emits override_request_rejected';

------------------------------------------------------------------------------
-- Privileges
------------------------------------------------------------------------------

GRANT SELECT ON wval.revalidation_queue, wval.revalidation_progress, wval.override_requests,
      wval.current_override_requests, wval.overdue_override_requests TO wval_analyst;
GRANT EXECUTE ON FUNCTION public.wval_override_request(uuid, text, text) TO wval_producer;
GRANT EXECUTE ON FUNCTION public.wval_override_approve(uuid, text, text),
      public.wval_override_reject(uuid, text, text) TO wval_validator;
GRANT EXECUTE ON FUNCTION public.wval_revalidate(integer, integer),
      public.wval_schedule_revalidation(text, integer) TO wval_admin;
