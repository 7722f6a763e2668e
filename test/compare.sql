-- pgTAP: comparisons (issue 16, point 4): wval_policy_compare row by row,
-- wval_policy_diff_render (markdown, HTML, escaping), wval_trend
BEGIN;
SET client_min_messages = warning;
SELECT plan(41);

SELECT lives_ok($$SELECT wval_world_upsert('tap-cmp', actor => 'dba'), wval_world_upsert('tap-cmp-b', actor => 'dba')$$, 'worlds');
-- v1 the sample policy; v2 drops profile paper for a new profile strict; v3 changes checks of backtest
SELECT is(wval_policy_publish('tap-cmp', (SELECT policy FROM wval.sample_policies WHERE name = 'sample'), 'alice'), 1, 'v1');
SELECT is(wval_policy_publish('tap-cmp', (SELECT policy FROM wval.sample_policies WHERE name = 'sample')
              || '{"default_profile_by_stage": {"backtest_only": "backtest", "paper_only": "strict"}}'
              || jsonb_build_object('validation_profiles', (SELECT policy -> 'validation_profiles' FROM wval.sample_policies WHERE name = 'sample') - 'paper'
                                    || '{"strict": {"performance": {"sharpe_min": {"min": 1.0, "owner": "risk"}}}}'),
              'alice'), 2, 'v2');
SELECT is(wval_policy_publish('tap-cmp', jsonb_set(jsonb_set((SELECT policy FROM wval.sample_policies WHERE name = 'sample'),
              '{validation_profiles,backtest,performance,sharpe_min}', '{"min": 0.7, "severity": "soft", "mode": "warn"}'),
              '{validation_profiles,backtest,robustness,psr_min}', '0.9') #- '{validation_profiles,backtest,risk,participation_rate_p95_max}',
              'alice'), 3, 'v3');
SELECT is((wval_policy_activate('tap-cmp', 1, 'bob', 'tap')).version, 1, 'v1 active');

------------------------------------------------------------------------------
-- wval_policy_compare
------------------------------------------------------------------------------
SELECT results_eq($$SELECT profile, rule, change, attribute, old_value::text, new_value::text FROM wval_policy_compare('tap-cmp', 1, 3)$$,
    $$VALUES ('backtest', 'performance.sharpe_min', 'changed', 'mode', '"enforce"', '"warn"'),
             ('backtest', 'performance.sharpe_min', 'changed', 'severity', '"blocking"', '"soft"'),
             ('backtest', 'performance.sharpe_min', 'changed', 'threshold', '0.5', '0.7'),
             ('backtest', 'risk.participation_rate_p95_max', 'removed', NULL,
              '{"op": "<=", "mode": "enforce", "owner": "risk", "metric": "risk.participation_rate_p95", "severity": "blocking", "threshold": 0.4}', NULL),
             ('backtest', 'robustness.psr_min', 'added', NULL, NULL,
              '{"op": ">=", "mode": "enforce", "owner": "quant", "metric": "robustness.probabilistic_sharpe_ratio", "severity": "soft", "threshold": 0.9}')$$,
    'v1 -> v3: a threshold, severity and mode changed, a check removed, a check added');
SELECT results_eq($$SELECT profile, rule, change, attribute, old_value::text, new_value::text FROM wval_policy_compare('tap-cmp', 1, 2)$$,
    $$VALUES (NULL, 'default_profile_by_stage.paper_only', 'changed', 'profile', '"paper"', '"strict"'),
             ('paper', NULL, 'removed', NULL, '{"profile": "paper", "on_error": "fail", "on_missing_metric": "fail"}', NULL),
             ('paper', 'performance.gain_to_pain_min', 'removed', NULL,
              '{"op": ">=", "mode": "enforce", "owner": "quant", "metric": "returns.gain_to_pain_ratio", "severity": "blocking", "threshold": 1.2}', NULL),
             ('paper', 'performance.max_dd_max', 'removed', NULL,
              '{"op": "<=", "mode": "enforce", "owner": "quant", "metric": "returns.max_drawdown", "severity": "blocking", "threshold": 0.2}', NULL),
             ('paper', 'performance.sharpe_min', 'removed', NULL,
              '{"op": ">=", "mode": "enforce", "owner": "quant", "metric": "returns.sharpe", "severity": "blocking", "threshold": 0.8}', NULL),
             ('paper', 'robustness.dsr_min', 'removed', NULL,
              '{"op": ">=", "mode": "enforce", "owner": "quant", "metric": "robustness.deflated_sharpe_ratio", "severity": "soft", "threshold": 0.25}', NULL),
             ('paper', 'sample.min_effective_years', 'removed', NULL,
              '{"op": ">=", "mode": "enforce", "owner": "quant", "metric": "sample.effective_history_years", "severity": "soft", "threshold": 3}', NULL),
             ('strict', NULL, 'added', NULL, NULL, '{"profile": "strict", "on_error": "fail", "on_missing_metric": "fail"}'),
             ('strict', 'performance.sharpe_min', 'added', NULL, NULL,
              '{"op": ">=", "mode": "enforce", "owner": "risk", "metric": "returns.sharpe", "severity": "blocking", "threshold": 1}')$$,
    'v1 -> v2: the stage mapping, a removed profile with its checks, an added profile (with its on_missing_metric and owner)');
SELECT results_eq($$SELECT profile, rule, change, attribute, old_value::text, new_value::text FROM wval_policy_compare('tap-cmp', 2, 3)
                    WHERE profile = 'strict' OR rule LIKE 'default%'$$,
    $$VALUES (NULL, 'default_profile_by_stage.paper_only', 'changed', 'profile', '"strict"', '"paper"'),
             ('strict', NULL, 'removed', NULL, '{"profile": "strict", "on_error": "fail", "on_missing_metric": "fail"}', NULL),
             ('strict', 'performance.sharpe_min', 'removed', NULL,
              '{"op": ">=", "mode": "enforce", "owner": "risk", "metric": "returns.sharpe", "severity": "blocking", "threshold": 1}', NULL)$$,
    'v2 -> v3 is the reverse for those rows');
SELECT is((SELECT count(*)::int FROM wval_policy_compare('tap-cmp', 3, 3)), 0, 'a version compared with itself: no row');
SELECT lives_ok($$SELECT wval_world_upsert('tap-cmp-fc', 'high', true, actor => 'dba')$$, 'a fail-closed world');
SELECT is(wval_policy_publish('tap-cmp-fc', (SELECT policy FROM wval.sample_policies WHERE name = 'sample'), 'alice'), 1, 'its v1');
SELECT is(wval_policy_publish('tap-cmp-fc', (SELECT policy FROM wval.sample_policies WHERE name = 'sample')
              || '{"validation": {"on_missing_metric": "ignore"}}', 'alice'), 2, 'its v2 tries to relax on_missing_metric');
SELECT is((SELECT count(*)::int FROM wval_policy_compare('tap-cmp-fc', 1, 2)), 0,
          'which changes nothing in a fail-closed world (the engine forces fail)');
SELECT throws_ok($$SELECT * FROM wval_policy_compare('tap-cmp', 1, 9)$$, 'WV010', NULL, 'an unknown version: WV010');
SELECT throws_ok($$SELECT * FROM wval_policy_compare('tap-nowhere', 1, 2)$$, 'WV010', NULL, 'an unknown world: WV010');

------------------------------------------------------------------------------
-- wval_policy_diff_render
------------------------------------------------------------------------------
-- history to replay: six runs, one of a strategy whose name is markup
SELECT is(wval_import_runs((SELECT jsonb_agg(jsonb_build_object('world_id', 'tap-cmp', 'strategy_id', s, 'status', 'pass', 'policy_version', 1,
              'created_at', to_char(now() - (i * interval '1 day'), 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
              'metrics', jsonb_build_object('returns', jsonb_build_object('sharpe', 0.4 + 0.1 * i, 'max_drawdown', 0.1, 'gain_to_pain_ratio', 1.5),
                                            'sample', jsonb_build_object('effective_history_years', 4, 'n_trades_total', 300),
                                            'risk', jsonb_build_object('adv_utilization_p95', 0.1, 'participation_rate_p95', 0.1),
                                            'robustness', jsonb_build_object('deflated_sharpe_ratio', 0.5, 'probabilistic_sharpe_ratio', 0.95))))
          FROM unnest(ARRAY['<b>&"x', 'c2', 'c3', 'c4', 'c5', 'c6']) WITH ORDINALITY u(s, i))), 6, 'six runs imported');
CREATE TEMP TABLE cmp_diff AS
SELECT wval_policy_diff('tap-cmp', 1, 3) || jsonb_build_object('policy_changes', (SELECT jsonb_agg(c) FROM wval_policy_compare('tap-cmp', 1, 3) c)) AS d;
SELECT is((SELECT d ->> 'strategies_affected' FROM cmp_diff), '2', 'Sharpe 0.5 and 0.6 now warn, 0.7 sits on the threshold');
CREATE TEMP TABLE cmp_md AS SELECT wval_policy_diff_render(d) AS md, wval_policy_diff_render(d, 'html') AS html FROM cmp_diff;
SELECT is((SELECT split_part(md, E'\n', 1) FROM cmp_md), '# Policy diff v1 → v3', 'markdown title');
SELECT ok((SELECT strpos(md, E'\n| backtest | performance.sharpe\\_min | changed | threshold | 0.5 | 0.7 |\n') > 0 FROM cmp_md),
          'markdown: a policy change row');
SELECT ok((SELECT strpos(md, E'\n| strategies\\_affected | 2 |\n') > 0 FROM cmp_md), 'markdown: the summary');
SELECT ok((SELECT strpos(md, E'\n| 1 | &lt;b&gt;&amp;"x | ') > 0 AND strpos(md, '<b>') = 0 FROM cmp_md), 'markdown: a strategy name is no markup');
SELECT is((SELECT count(*)::int FROM cmp_md, regexp_matches(md, E'\\| performance\\.sharpe\\\\_min \\| pass → warn \\| ok → sharpe\\\\_below\\\\_min \\|', 'g')), 2,
          'markdown: the two flipped checks');
SELECT ok((SELECT html LIKE '<!DOCTYPE html>%</body></html>' FROM cmp_md), 'HTML: a whole document');
SELECT ok((SELECT strpos(html, '<td>&lt;b&gt;&amp;&quot;x</td>') > 0 AND strpos(html, '<b>') = 0 FROM cmp_md), 'HTML: the strategy name is escaped');
SELECT ok((SELECT html LIKE '%<td>{&quot;op&quot;: &quot;&lt;=&quot;,%' FROM cmp_md), 'HTML: JSON values are escaped too');
SELECT ok((SELECT html !~* '<script|src=|href=|url\(|@import' FROM cmp_md), 'HTML: no scripts, no external assets');
SELECT throws_ok($$SELECT wval_policy_diff_render('{"a": 1}')$$, '22023', 'invalid value for "diff"', 'not a diff report: 22023');
SELECT throws_ok($$SELECT wval_policy_diff_render((SELECT d FROM cmp_diff), 'pdf')$$, '22023', NULL, 'an unknown format: 22023');

------------------------------------------------------------------------------
-- wval_trend
------------------------------------------------------------------------------
SELECT is(wval_import_runs((SELECT jsonb_agg(jsonb_build_object('world_id', 'tap-cmp-b', 'strategy_id', 's' || i,
              'created_at', to_char(timestamptz '2026-01-05' + (i * interval '9 days'), 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
              'stage', CASE WHEN i > 10 THEN 'paper' ELSE 'backtest' END,
              'status', CASE WHEN i % 3 = 0 THEN 'fail' ELSE 'pass' END,
              'metrics', jsonb_build_object('returns', jsonb_build_object('sharpe', i / 4.0)),
              'results', jsonb_build_object('performance.sharpe_min', jsonb_build_object(
                  'status', CASE WHEN i % 3 = 0 THEN 'fail' ELSE 'pass' END, 'severity', 'blocking', 'owner', 'quant',
                  'reason_code', CASE WHEN i % 3 = 0 THEN 'sharpe_below_min' ELSE 'ok' END, 'reason', 'tap'))))
          FROM generate_series(1, 12) i)), 12, 'twelve runs, 9 days apart from 14 January');
SELECT results_eq($$SELECT bucket_start, n, value FROM wval_trend('tap-cmp-b', 'returns.sharpe', 'month', '2026-01-01', '2026-05-31')$$,
    $$VALUES ('2026-01-01 00:00+00'::timestamptz, 2::bigint, 0.375::float8), ('2026-02-01', 4, 1.125), ('2026-03-01', 3, 2), ('2026-04-01', 3, 2.75),
             ('2026-05-01', 0, NULL)$$, 'monthly mean Sharpe, the empty month included');
SELECT results_eq($$SELECT bucket_start, n, value FROM wval_trend('tap-cmp-b', 'returns.sharpe', 'quarter', '2026-01-01', '2026-06-30', 'max')$$,
    $$VALUES ('2026-01-01 00:00+00'::timestamptz, 9::bigint, 2.25::float8), ('2026-04-01', 3, 3)$$, 'quarterly maximum');
SELECT results_eq($$SELECT bucket_start, n, value FROM wval_trend('tap-cmp-b', 'returns.sharpe', 'month', '2026-02-01', '2026-02-28', 'median')$$,
    $$VALUES ('2026-02-01 00:00+00'::timestamptz, 4::bigint, 1.125::float8)$$, 'median of a month');
SELECT results_eq($$SELECT bucket_start, n, round(value::numeric, 4) FROM wval_trend('tap-cmp-b', 'performance.sharpe_min', 'month', '2026-01-01', '2026-04-30')$$,
    $$VALUES ('2026-01-01 00:00+00'::timestamptz, 2::bigint, 1::numeric), ('2026-02-01', 4, 0.5), ('2026-03-01', 3, 0.6667), ('2026-04-01', 3, 0.6667)$$,
    'a check: its monthly pass rate');
SELECT results_eq($$SELECT bucket_start, n, round(value::numeric, 4) FROM wval_trend('tap-cmp-b', 'performance.sharpe_min', 'month', '2026-01-01', '2026-04-30', 'fail_rate', 'paper')$$,
    $$VALUES ('2026-01-01 00:00+00'::timestamptz, 0::bigint, NULL::numeric), ('2026-02-01', 0, NULL), ('2026-03-01', 0, NULL), ('2026-04-01', 2, 0.5)$$,
    'its fail rate at stage paper');
SELECT throws_ok($$SELECT * FROM wval_trend('tap-cmp-b', 'returns.sharpe', 'hour')$$, '22023', NULL, 'an unknown bucket: 22023');
SELECT throws_ok($$SELECT * FROM wval_trend('tap-cmp-b', 'returns.sharpe', 'day', '2026-02-01', '2026-01-01')$$, '22023', 'invalid period',
                 'since after until: 22023');
SELECT throws_ok($$SELECT * FROM wval_trend('tap-cmp-b', 'returns.sharpe', 'month', '2026-01-01', '2026-02-01', 'mode')$$, '22023', NULL,
                 'an unknown stat: 22023');

-- another world's analyst
CREATE ROLE tap_cmp_reader; GRANT wval_analyst TO tap_cmp_reader;
SELECT ok(wval_world_revoke('wval_analyst', '*', 'dba'), 'analysts lose every world');
SELECT is((wval_world_grant('tap_cmp_reader', 'tap-cmp', 'read', 'dba')).privilege, 'read', 'the reader gets tap-cmp');
SET ROLE tap_cmp_reader;
SELECT throws_ok($$SELECT * FROM wval_trend('tap-cmp-b', 'returns.sharpe')$$, 'WV010', NULL, 'the trend of an invisible world: WV010');
SELECT is((SELECT count(*)::int FROM wval_policy_compare('tap-cmp', 1, 3)), 5, 'the reader compares the versions of its world');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;
