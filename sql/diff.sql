-- diff: policy diff over history, the impact gate, the two-person rule,
-- scenario regression checks and the regression report
\set SHOW_CONTEXT never

SELECT world_id FROM wval_world_upsert('w-diff', 'medium', false, actor => 'dba');
SELECT wval_policy_publish('w-diff', (SELECT policy FROM wval.sample_policies WHERE name = 'sample'), 'alice', 'sample policy') AS version;

-- two-person rule: the publisher does not activate (names compared without case and blanks)
SELECT wval_policy_activate('w-diff', 1, 'alice', 'self-approval');
\echo :LAST_ERROR_SQLSTATE
SELECT wval_policy_activate('w-diff', 1, ' ALICE ', 'self-approval');
\echo :LAST_ERROR_SQLSTATE
-- the first activation has nothing to compare with: no gate
SELECT version, previous_version, activated_by, forced, details
FROM wval_policy_activate('w-diff', 1, 'bob', 'adopt the sample policy');

-- the four scenario sets stored as runs (metrics only), created by quant-bot
SELECT c.set_name, count(*) AS runs, count(*) FILTER (WHERE e.status = c.expected_status) AS as_expected
FROM wval.scenario_cases c,
     LATERAL wval_evaluate('w-diff', c.strategy_id, 'backtest', NULL, c.metrics,
                           jsonb_build_object('run_id', c.case_id, 'actor', 'quant-bot')) e
WHERE c.shipped GROUP BY c.set_name ORDER BY c.set_name;

-- version 2 raises backtest sharpe_min from 0.5 to 0.65
SELECT wval_policy_publish('w-diff',
    jsonb_set((SELECT policy FROM wval.sample_policies WHERE name = 'sample'),
              '{validation_profiles,backtest,performance,sharpe_min}', '0.65'), 'alice', 'tighter sharpe') AS version;

-- the diff over history: exactly the three borderline strategies, impact 3/32
CREATE TEMP TABLE d AS SELECT wval_policy_diff('w-diff', 1, 2) AS r;
SELECT array_agg(k ORDER BY k) AS report_fields FROM d, jsonb_object_keys(d.r) k;
SELECT r->'old_policy_version' AS old_v, r->'new_policy_version' AS new_v,
       r->'total_strategies' AS total, r->'strategies_affected' AS affected,
       r->'status_changes' AS status, r->'stage_changes' AS stage, r->'selection_changes' AS selection,
       r->'rule_status_changes' AS rule_flips, r->'impact_ratio' AS impact, (r->>'impact_ratio')::float8 = 3.0 / 32 AS is_3_of_32
FROM d;
SELECT r->>'old_ruleset_hash' = (SELECT ruleset_hashes->>'backtest' FROM wval.policy_versions WHERE world_id = 'w-diff' AND version = 1) AS old_hash_ok,
       r->>'new_ruleset_hash' = (SELECT ruleset_hashes->>'backtest' FROM wval.policy_versions WHERE world_id = 'w-diff' AND version = 2) AS new_hash_ok
FROM d;
-- diffs: only affected strategies, each changed check with old/new status and reason code
SELECT x->>'strategy_id' AS strategy, x->>'direction' AS direction, x->>'old_status' AS old, x->>'new_status' AS new,
       x->>'old_recommended_stage' AS old_stage, x->>'new_recommended_stage' AS new_stage,
       x->'rules' AS rules,
       x->>'run_id' = (SELECT run_id::text FROM wval.evaluation_runs WHERE world_id = 'w-diff' AND strategy_id = x->>'strategy_id') AS run_ok
FROM d, jsonb_array_elements(d.r->'diffs') x;
SELECT (o->>'rank')::int AS rank, o->>'strategy_id' AS strategy, o->>'label' AS label, o->'status_change' AS status_change,
       o->'stage_change' AS stage_change, o->'rule_flips' AS flips
FROM d, jsonb_array_elements(d.r->'top_offenders') o;

-- the same change given as a candidate document (not published)
SELECT r->'new_policy_version' AS new_v, r->'strategies_affected' AS affected, r->'impact_ratio' AS impact
FROM wval_policy_diff('w-diff', 1, jsonb_set((SELECT policy FROM wval.sample_policies WHERE name = 'sample'),
                      '{validation_profiles,backtest,performance,sharpe_min}', '0.65')) r;
-- a relaxation: sharpe_min 0.5 -> 0.3 clears bad_low_sharpe (sharpe 0.3); known_bad_compound_02/03
-- (0.35, 0.4) pass the check but still fail others
SELECT r->'strategies_affected' AS affected,
       (SELECT array_agg(format('%s %s %s->%s', o->>'strategy_id', o->>'label', o->>'old_status', o->>'new_status') ORDER BY o->>'strategy_id')
        FROM jsonb_array_elements(r->'top_offenders') o) AS offenders
FROM wval_policy_diff('w-diff', 1, jsonb_set((SELECT policy FROM wval.sample_policies WHERE name = 'sample'),
                      '{validation_profiles,backtest,performance,sharpe_min}', '0.3')) r;
-- a new check that everyone passes affects nobody; in mode warn its violators are warned, not failed
SELECT r->'strategies_affected' AS affected, r->'rule_status_changes' AS flips
FROM wval_policy_diff('w-diff', 1, jsonb_set((SELECT policy FROM wval.sample_policies WHERE name = 'sample'),
                      '{validation_profiles,backtest,robustness,sharpe_max}', '100')) r;
SELECT r->'strategies_affected' AS affected, r->'status_changes' AS status, r->'selection_changes' AS selection,
       (SELECT array_agg(DISTINCT (x->>'old_status') || '->' || (x->>'new_status')) FROM jsonb_array_elements(r->'diffs') x) AS transitions,
       (SELECT array_agg(DISTINCT y->>'new_reason_code') FROM jsonb_array_elements(r->'diffs') x, jsonb_array_elements(x->'rules') y) AS codes
FROM wval_policy_diff('w-diff', 1, jsonb_set((SELECT policy FROM wval.sample_policies WHERE name = 'sample'),
                      '{validation_profiles,backtest,sample,min_trades_per_year}', '{"min": 30, "mode": "warn"}')) r;

-- dedupe: a newer run of borderline_floor that clears 0.65 takes it out of the diff,
-- unless every run counts
SELECT status FROM wval_evaluate('w-diff', 'borderline_floor', 'backtest', NULL,
    (SELECT jsonb_set(metrics, '{returns,sharpe}', '0.7') FROM wval.scenario_cases WHERE case_id = 'borderline-set-001'),
    '{"actor": "quant-bot"}');
SELECT 'strategy' AS dedupe, r->'total_strategies' AS total, r->'strategies_affected' AS affected, jsonb_array_length(r->'diffs') AS diffs
FROM wval_policy_diff('w-diff', 1, 2) r
UNION ALL
SELECT 'none', r->'total_strategies', r->'strategies_affected', jsonb_array_length(r->'diffs')
FROM wval_policy_diff('w-diff', 1, 2, dedupe => 'none') r;
-- the window: nothing was evaluated in the future
SELECT r->'total_strategies' AS total, r->'impact_ratio' AS impact
FROM wval_policy_diff('w-diff', 1, 2, since => now() + interval '1 day', until => now() + interval '2 days') r;
-- other stages: no paper runs
SELECT r->'total_strategies' AS total, r->'impact_ratio' AS impact FROM wval_policy_diff('w-diff', 1, 2, 'paper') r;

-- errors
SELECT wval_policy_diff('w-diff', 1, 9);
\echo :LAST_ERROR_SQLSTATE
SELECT wval_policy_diff('w-nowhere', 1, 2);
\echo :LAST_ERROR_SQLSTATE
SELECT wval_policy_diff('w-diff', 1, 2, dedupe => 'run');
\echo :LAST_ERROR_SQLSTATE
SELECT wval_policy_diff('w-diff', 1, 2, 'production');
\echo :LAST_ERROR_SQLSTATE
SELECT wval_policy_diff('w-diff', 1, 2, since => '2026-02-01', until => '2026-01-01');
\echo :LAST_ERROR_SQLSTATE
SELECT wval_policy_diff('w-diff', 1, '{"validation_profiles": {"backtest": {"performance": {"sharpe_minimum": 1}}}}'::jsonb);
\echo :LAST_ERROR_SQLSTATE

-- the gate: at or above 5 % it raises WV008 ...
SELECT wval_policy_diff_gate('w-diff', 1, 2, dedupe => 'none');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS events FROM wval.events WHERE world_id = 'w-diff' AND type = 'impact_threshold_exceeded';
-- ... below it returns the report
SELECT r->'gate' AS gate FROM wval_policy_diff_gate('w-diff', 1, 2, dedupe => 'none', fail_impact_ratio => 0.5) r;
-- ... and the non-raising path (jobs, CI) keeps the event
SELECT r->'gate' AS gate, r->'impact_ratio' AS impact
FROM wval_policy_diff_gate('w-diff', 1, 2, dedupe => 'none', raise_on_breach => false) r;
SELECT subject, payload->'data'->>'source' AS source, payload->'data'->'impact_ratio' AS impact,
       payload->'data'->'fail_impact_ratio' AS gate, payload->'data'->'old_policy_version' AS old_v,
       payload->'data'->'new_policy_version' AS new_v
FROM wval.events WHERE world_id = 'w-diff' AND type = 'impact_threshold_exceeded' ORDER BY event_id;
SELECT wval_policy_diff_gate('w-diff', 1, 2, fail_impact_ratio => 0);
\echo :LAST_ERROR_SQLSTATE
SELECT wval_policy_diff_gate('w-diff', 1, 2, fail_impact_ratio => 1.5);
\echo :LAST_ERROR_SQLSTATE

-- activation runs the gate against the active version: force and a reason pass it
SELECT wval_policy_activate('w-diff', 2, 'bob', 'tighten sharpe');
\echo :LAST_ERROR_SQLSTATE
SELECT wval_policy_activate('w-diff', 2, 'alice', 'tighten sharpe', force => true);
\echo :LAST_ERROR_SQLSTATE
SELECT wval_active_policy_version('w-diff') AS still_active;
SELECT version, previous_version, activated_by, forced, reason,
       details->'governance_exceptions' AS exceptions,
       details->'impact_gate'->'impact_ratio' AS impact, details->'impact_gate'->'stage' AS stage,
       details->'impact_gate'->'breached' AS breached,
       details->'impact_gate'->'stages'->'backtest'->'strategies_affected' AS affected
FROM wval_policy_activate('w-diff', 2, 'carol', 'risk committee RC-42 accepts the three borderline strategies', force => true);
SELECT action, actor, details->'forced' AS forced, details->'impact_ratio' AS impact
FROM wval.audit_log WHERE world_id = 'w-diff' AND action = 'policy_activated' ORDER BY id;
SELECT payload->'data'->>'source' AS source, payload->'data'->'forced' AS forced, payload->'data'->>'actor' AS actor
FROM wval.events WHERE world_id = 'w-diff' AND type = 'impact_threshold_exceeded' ORDER BY event_id DESC LIMIT 1;
-- an activation below the gate needs no force: back to version 1 under a world threshold of 50 %
SELECT world_id FROM wval_world_upsert('w-diff', settings => '{"fail_impact_ratio": 0.5}', actor => 'dba');
SELECT version, forced, details->'impact_gate'->'breached' AS breached, details->'impact_gate'->'fail_impact_ratio' AS gate
FROM wval_policy_activate('w-diff', 1, 'bob', 'roll back');

-- runs given as JSON (the scenario files' shape): impact 1.0 on the borderline set, 0 elsewhere
CREATE TEMP TABLE sets AS
SELECT set_name, jsonb_agg(jsonb_build_object('world_id', 'policy-diff', 'strategy_id', strategy_id, 'run_id', case_id,
                                              'metrics', metrics) ORDER BY case_id) AS runs
FROM wval.scenario_cases WHERE shipped GROUP BY set_name;
SELECT s.set_name, r->'total_strategies' AS total, r->'strategies_affected' AS affected, r->'impact_ratio' AS impact,
       r->'old_policy_version' AS old_v, r->'new_policy_version' AS new_v
FROM sets s,
     LATERAL wval_policy_diff((SELECT policy FROM wval.sample_policies WHERE name = 'sample'),
                              jsonb_set((SELECT policy FROM wval.sample_policies WHERE name = 'sample'),
                                        '{validation_profiles,backtest,performance,sharpe_min}', '0.65'),
                              s.runs) r
ORDER BY s.set_name;
SELECT x->>'run_id' AS run_id, x->>'strategy_id' AS strategy
FROM sets s, LATERAL wval_policy_diff((SELECT policy FROM wval.sample_policies WHERE name = 'sample'),
                                      jsonb_set((SELECT policy FROM wval.sample_policies WHERE name = 'sample'),
                                                '{validation_profiles,backtest,performance,sharpe_min}', '0.65'),
                                      s.runs) r, jsonb_array_elements(r->'diffs') x
WHERE s.set_name = 'borderline';
SELECT wval_policy_diff('{}'::jsonb, '{}', '{"not": "an array"}');
\echo :LAST_ERROR_SQLSTATE
SELECT wval_policy_diff('{}'::jsonb, '{}', '[{"run_id": "x", "metrics": {}}]');
\echo :LAST_ERROR_SQLSTATE
SELECT wval_policy_diff('{}'::jsonb, '{}', '[{"strategy_id": "s", "metrics": {"returns": {"sharpe": "high"}}}]');
\echo :LAST_ERROR_SQLSTATE

-- scenario checks: ratios, cases off their expected status, the gates of operations.md
SELECT c->>'set_name' AS set_name, c->'cases' AS cases, c->'pass_ratio' AS pass, c->'warn_ratio' AS warn,
       c->'fail_ratio' AS fail, jsonb_array_length(c->'off_expected') AS off, c->>'gate' AS gate, c->'ok' AS ok
FROM unnest(ARRAY['good', 'borderline', 'bad', 'known_bad']) s,
     LATERAL wval_scenario_check((SELECT policy FROM wval.sample_policies WHERE name = 'sample'), s) c;
-- under the tightened policy the borderline set is no longer mixed: all three fail, against expectations
SELECT c->'pass_ratio' AS pass, c->'fail_ratio' AS fail, c->'ok' AS ok,
       (SELECT array_agg(o->>'case_id' || ' ' || (o->>'expected_status') || '->' || (o->>'status') ORDER BY o->>'case_id')
        FROM jsonb_array_elements(c->'off_expected') o) AS off_expected
FROM wval_scenario_check(jsonb_set((SELECT policy FROM wval.sample_policies WHERE name = 'sample'),
                                   '{validation_profiles,backtest,performance,sharpe_min}', '0.65'), 'borderline') c;
-- a policy that lets known_bad through fails its gate
SELECT c->'pass_ratio' AS pass, c->'ok' AS ok
FROM wval_scenario_check('{"validation_profiles": {"backtest": {"performance": {"sharpe_min": 0}}},
                           "default_profile_by_stage": {"backtest_only": "backtest"}}', 'known_bad') c;
SELECT wval_scenario_check('{}', 'nonexistent');
\echo :LAST_ERROR_SQLSTATE

-- a site's own cases
SELECT set_name, case_id, strategy_id, expected_status, shipped, note
FROM wval_scenario_add('site-bad', 'overfit-2024', '{"returns": {"sharpe": 0.55, "max_drawdown": 0.3, "gain_to_pain_ratio": 1.1},
    "sample": {"effective_history_years": 2.5, "n_trades_total": 80}, "robustness": {"deflated_sharpe_ratio": 0.2},
    "risk": {"adv_utilization_p95": 0.1, "participation_rate_p95": 0.1}}', 'fail', 'drawdown 30 %');
SELECT wval_scenario_add('site-bad', 'overfit-2024', '{}', 'fail');
\echo :LAST_ERROR_SQLSTATE
SELECT wval_scenario_add('known_bad', 'known-bad-001', '{}', 'pass');
\echo :LAST_ERROR_SQLSTATE
SELECT wval_scenario_add('site-bad', 'x', '{"returns": {"sharpe": "high"}}', 'fail');
\echo :LAST_ERROR_SQLSTATE
SELECT wval_scenario_add('site-bad', 'x', '{}', 'maybe');
\echo :LAST_ERROR_SQLSTATE
SELECT c->'fail_ratio' AS fail, c->>'gate' AS gate, c->'ok' AS ok
FROM wval_scenario_check((SELECT policy FROM wval.sample_policies WHERE name = 'sample'), 'site-bad') c;

-- the regression: scenario checks of the active policy plus the impact against its predecessor
SELECT version FROM wval_policy_activate('w-diff', 2, 'carol', 'again, under the 50 % world gate');
SELECT r->'world_id' AS world, r->'policy_version' AS v, r->'previous_version' AS prev, r->'breached' AS breached,
       r->'breaches' AS breaches
FROM jsonb_array_elements(wval_run_regression('w-diff')) r;
SELECT policy_version, previous_version, breached, breaches,
       (SELECT array_agg(k || ':' || (v->>'ok') ORDER BY k) FROM jsonb_each(scenarios) AS s(k, v)) AS scenario_gates,
       impact->'impact_ratio' AS impact, impact->'fail_impact_ratio' AS gate
FROM wval.regression_reports WHERE world_id = 'w-diff';
SELECT payload->'data'->>'source' AS source, payload->'data'->'breaches' AS breaches
FROM wval.events WHERE world_id = 'w-diff' AND type = 'impact_threshold_exceeded' ORDER BY event_id DESC LIMIT 1;
SELECT wval_run_regression('w-nowhere');
\echo :LAST_ERROR_SQLSTATE
UPDATE wval.regression_reports SET breached = false WHERE world_id = 'w-diff';
\echo :LAST_ERROR_SQLSTATE

-- the author of a run cannot approve an override on it; someone else can
\set VERBOSITY terse
SELECT wval_override((SELECT run_id FROM wval.evaluation_runs WHERE world_id = 'w-diff' AND strategy_id = 'bad_low_sharpe'),
                     'approved', 'I know my strategy', 'Quant-Bot');
\set VERBOSITY default
\echo :LAST_ERROR_SQLSTATE
SELECT status, actor FROM wval_override((SELECT run_id FROM wval.evaluation_runs WHERE world_id = 'w-diff' AND strategy_id = 'bad_low_sharpe'),
                                        'rejected', 'withdrawn by its author', 'quant-bot');
SELECT status, actor FROM wval_override((SELECT run_id FROM wval.evaluation_runs WHERE world_id = 'w-diff' AND strategy_id = 'bad_low_sharpe'),
                                        'approved', 'reviewed by risk', 'dave');

SELECT wval_verify_chain('w-diff') AS chain_ok;
