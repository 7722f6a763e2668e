-- pgTAP: the chart layer (src/charts.sql), the validation report's charts and
-- override wording, the world report, and markup injected into world,
-- strategy and reason texts coming out escaped in all three reports
BEGIN;
SET client_min_messages = warning;
SELECT plan(70);

------------------------------------------------------------------------------
-- the chart layer
------------------------------------------------------------------------------

SELECT is(wval._chart_ticks(-0.034, 0.021), '{-0.02,0,0.02}'::float8[], 'ticks: round steps inside the range');
SELECT is(wval._chart_ticks(0.97, 1.13), '{1,1.05,1.1}'::float8[], 'ticks: step 0.05');
SELECT is(wval._chart_ticks(0, 7), '{0,2,4,6}'::float8[], 'ticks: step 2');
SELECT is(wval._chart_num(-0.00001, 0.005), '0.000', 'axis numbers: fixed precision of the step, no "-0"');
SELECT is(wval._chart_num(1.5, 2.5), '1.5', 'axis numbers: a 2.5 step keeps one decimal');
SELECT is(wval._chart_num('NaN', 1), 'n/a', 'axis numbers: NaN is n/a');

CREATE TEMP TABLE ch AS SELECT
    wval._chart_line('t<1>', 'Equity <b>"&', ARRAY['a', '<i>', 'c', 'd', 'e', 'f'], '{1, 1.01, NaN, 0.99, Infinity, 1.05}',
                     '[{"y": 1, "label": "start <x>", "color": "#666\"/><script>"}]') AS line,
    wval._chart_line('dd', 'Drawdown', NULL, '{0, -0.01, -0.03, 0, -0.02}',
                     '[{"y": -0.25, "label": "dd_max", "color": "#b00020"}]', '#b00020', true) AS area,
    wval._chart_hist('h', 'Distribution', '{-0.03, -0.01, 0, 0.01, 0.02, 0.015, 0.005}',
                     '[{"x": -0.025, "label": "VaR 99%"}, {"x": -0.03, "label": "ES 99%"}]') AS hist,
    wval._chart_line('one', 'One point', NULL, '{1, NaN}') AS one;
SELECT ok((SELECT line ~ '^<figure class="wval-chart" id="chart-t-1-"><svg xmlns="http://www.w3.org/2000/svg" ' AND line ~ '</svg></figure>$' FROM ch),
          'a chart is one figure with an svg; its id keeps [a-z0-9-] only');
SELECT ok((SELECT line LIKE '%aria-label="Equity &lt;b&gt;&quot;&amp;"%' AND line LIKE '%&lt;i&gt;%' AND line LIKE '%start &lt;x&gt; 1%'
                  AND line LIKE '%stroke="#666&quot;/&gt;&lt;script&gt;"%' AND line !~ '<(script|b|i|x)[ >]' FROM ch),
          'title, x labels, captions and colours are escaped');
SELECT is((SELECT cardinality(string_to_array(substring(line FROM 'class="series"[^>]*points="([^"]*)"'), ' ')) FROM ch), 4,
          'NaN and Infinity are left out of the line');
SELECT ok((SELECT line !~ 'NaN|Infinity' FROM ch), 'no NaN reaches the svg');
SELECT is((SELECT count(*)::int FROM ch, regexp_matches(line, 'text-anchor="end">1\.0[0-9]<', 'g')), 3,
          'value axis: three labelled round ticks (1.00, 1.02, 1.04)');
SELECT is((SELECT count(*)::int FROM ch, regexp_matches(area, '<line class="ref" [^>]*y1="([0-9.]+)"', 'g')), 1, 'area chart: the dd_max line');
SELECT ok((SELECT area LIKE '%<polygon fill="#b00020" fill-opacity="0.25"%' AND area LIKE '%dd_max -0.25%' FROM ch),
          'area chart: shaded to zero, dd_max captioned with its value');
SELECT is((SELECT count(*)::int FROM ch, regexp_matches(hist, '<line class="mark"', 'g')), 2, 'histogram: two vertical marks');
SELECT is((SELECT count(*)::int FROM ch, regexp_matches(hist, '<rect class="bar"', 'g')), 4, 'histogram: the non-empty bins as bars');
SELECT ok((SELECT hist LIKE '%>-0.02<%' AND hist LIKE '%>0.00<%' AND hist LIKE '%VaR 99% -0.025%' FROM ch), 'histogram: round x ticks and captioned marks');
SELECT is((SELECT one FROM ch), '<p class="wval-chart-missing" id="chart-one">One point: not enough data for a chart</p>',
          'fewer than two finite values: a note, not a chart');
SELECT is(wval._chart_line('d', 'x', NULL, '{0.1, 0.2, 0.15}', '[{"y": 0}]'), wval._chart_line('d', 'x', NULL, '{0.1, 0.2, 0.15}', '[{"y": 0}]'),
          'deterministic');
SELECT ok(wval._chart_line('flat', 'Flat', NULL, '{0, 0, 0}', '[]', '#000', true) LIKE '<figure%', 'a flat series still draws');

------------------------------------------------------------------------------
-- the validation report
------------------------------------------------------------------------------

SELECT lives_ok($$SELECT wval_world_upsert('tap-rep', actor => 'dba'),
                         wval_policy_publish('tap-rep', '{"validation_profiles": {"backtest": {"performance": {"sharpe_min": 0.5, "max_dd_max": 0.05}}},
                             "default_profile_by_stage": {"backtest_only": "backtest"}}', 'alice'),
                         wval_policy_activate('tap-rep', 1, 'bob', 'tap')$$, 'world and policy');
CREATE TEMP TABLE runs AS
SELECT s, (wval_evaluate('tap-rep', s, 'backtest',
                         returns => ARRAY(SELECT 0.01 * sin(i) + CASE WHEN s = 'good' THEN 0.006 ELSE -0.001 END FROM generate_series(1, 36) i),
                         context => '{"periods_per_year": 12}')).run_id AS run_id
FROM unnest(ARRAY['good', 'loser']) s;
SELECT is((SELECT status FROM wval.evaluation_runs WHERE run_id = (SELECT run_id FROM runs WHERE s = 'loser')), 'fail', 'the loser fails');

CREATE TEMP TABLE rep AS SELECT wval_report((SELECT run_id FROM runs WHERE s = 'loser'), 'html') AS h,
                                wval_report((SELECT run_id FROM runs WHERE s = 'loser')) AS m;
SELECT is((SELECT count(*)::int FROM rep, regexp_matches(h, '<svg ', 'g')), 4, 'html: four charts');
SELECT ok((SELECT h LIKE '%id="chart-equity"%' AND h LIKE '%id="chart-drawdown"%' AND h LIKE '%id="chart-rolling-sharpe"%'
                  AND h LIKE '%id="chart-distribution"%' FROM rep), 'equity, drawdown, rolling Sharpe, distribution');
SELECT ok((SELECT h LIKE '%dd_max -0.05<%' AND h LIKE '%sharpe_min 0.5<%' AND h LIKE '%zero 0<%' FROM rep),
          'the policy''s dd_max line, the sharpe_min and zero lines');
SELECT is((SELECT substring(h FROM '>VaR 99% (-[0-9.]+)<') FROM rep),
          (SELECT wval._fmt(to_jsonb(-(metrics #>> '{returns,var_p01}')::float8)) FROM wval.evaluation_runs
           WHERE run_id = (SELECT run_id FROM runs WHERE s = 'loser')), 'the VaR mark is the run''s var_p01');
SELECT ok((SELECT h LIKE '%ES 99% -%' FROM rep), 'the ES mark');
SELECT ok((SELECT h !~* '<script|<img|<link|src=|href=|url\(' FROM rep), 'html: no scripts, no external assets');
SELECT matches((SELECT m FROM rep), '\| rolling Sharpe \(12 periods\) \| 25 \| [^|]+ \| [^|]+ \| [^|]+ \| [^|]+ \| zero, sharpe_min 0.5 \|',
               'markdown: the charts as a table (25 full windows of 12 periods)');
SELECT matches((SELECT m FROM rep), '\| drawdown \| 37 \| 0 \| -[0-9.]+ \| 0 \| [^|]+ \| dd_max -0.05 \|', 'markdown: drawdown row with dd_max');
SELECT matches((SELECT m FROM rep), 'record an override with a reason', 'no override yet: the report asks for one');

SELECT lives_ok($$SELECT wval_override((SELECT run_id FROM runs WHERE s = 'loser'), 'approved', 'known regime', 'carol')$$, 'approved override');
SELECT ok(wval_report((SELECT run_id FROM runs WHERE s = 'loser')) !~ 'record an override', 'approved override: no "record an override"');
SELECT matches(wval_report((SELECT run_id FROM runs WHERE s = 'loser')),
               'an approved override \(carol, recorded [0-9-]+, review due [0-9-]+\) lets the run be used', 'the wording names the approval');
SELECT lives_ok($$SELECT wval_override((SELECT run_id FROM runs WHERE s = 'loser'), 'revoked', 'regime ended', 'carol')$$, 'revoked');
SELECT matches(wval_report((SELECT run_id FROM runs WHERE s = 'loser')), 'record an override with a reason', 'revoked: asks again');

-- returns not stored: a world with store_returns off
SELECT lives_ok($$SELECT wval_world_upsert('tap-rep-off', settings => '{"store_returns": false}', actor => 'dba'),
                         wval_policy_publish('tap-rep-off', '{"validation_profiles": {"backtest": {"performance": {"sharpe_min": 0.5}}},
                             "default_profile_by_stage": {"backtest_only": "backtest"}}', 'alice'),
                         wval_policy_activate('tap-rep-off', 1, 'bob', 'tap')$$, 'a world that keeps no returns');
CREATE TEMP TABLE off AS SELECT (wval_evaluate('tap-rep-off', 's', 'backtest', '{0.01, -0.02, 0.015, 0.005}')).run_id;
SELECT ok(wval_report((SELECT run_id FROM off), 'html') LIKE '%<p class="wval-no-returns">The returns of this run are not stored%'
          AND wval_report((SELECT run_id FROM off), 'html') NOT LIKE '%<svg%', 'not stored: the report says so, no chart');
SELECT matches(wval_report((SELECT run_id FROM off)), '## Charts\n\nThe returns of this run are not stored[^\n]*\n\n## Scope',
               'markdown says so too');
SELECT matches(wval_report((SELECT run_id FROM off)), '\| performance.sharpe_min \| (pass|fail) \|', 'the rule outcomes are still there');

-- returns near the limits of a double: a note instead of an overflow error
SELECT lives_ok($$SELECT wval_evaluate('tap-rep-off', 'huge', 'backtest', '{1e300, 1e300, -0.5, 1e300}')$$,
                'wval_evaluate takes returns of 1e300');
SELECT is(wval._report_charts((SELECT r FROM wval.evaluation_runs r WHERE world_id = 'tap-rep-off' AND strategy_id = 'huge'),
                              '{1e300, 1e300, -0.5, 1e300}', true),
          '<p class="wval-no-returns">The returns of this run are too large to chart (the arithmetic of the charts overflows a double); the rule outcomes below are what the run recorded.</p>',
          'returns too large to chart: a note, not an error');

------------------------------------------------------------------------------
-- the world report
------------------------------------------------------------------------------

SELECT lives_ok($$SELECT wval_import_runs(jsonb_agg(jsonb_build_object('world_id', 'tap-rep', 'strategy_id', 'good',
                         'created_at', now() - i * interval '10 days', 'status', CASE WHEN i = 1 THEN 'fail' ELSE 'pass' END,
                         'metrics', '{}'::jsonb, 'policy_version', 1,
                         'results', jsonb_build_object('performance.sharpe_min', jsonb_build_object(
                             'status', CASE WHEN i = 1 THEN 'fail' ELSE 'pass' END, 'severity', 'blocking', 'owner', 'quant',
                             'reason_code', CASE WHEN i = 1 THEN 'imported_fail' ELSE 'ok' END))) ORDER BY i DESC))
                  FROM generate_series(1, 3) i$$, 'imported history: good failed 10 days ago');
CREATE TEMP TABLE wr AS SELECT wval_world_report('tap-rep', current_date - 5, current_date) AS m,
                               wval_world_report('tap-rep', current_date - 40, current_date, 'html', 'week') AS h,
                               wval_world_report('tap-rep', current_date - 400, current_date) AS y;
SELECT is((SELECT count(*)::int FROM wr, regexp_matches(m, '^## (Summary|Trend|Checks that failed most|Strategies that changed status|Policy versions activated|Overrides recorded|Overrides expiring|Live demotions)$', 'gn')),
          8, 'eight sections');
SELECT matches((SELECT m FROM wr), '\| runs evaluated \| 2 \|\n\| strategies evaluated \| 2 \|', 'runs and strategies of the period');
SELECT matches((SELECT m FROM wr), '\| status mix \| 1 pass, 0 warn, 1 fail, 0 unvalidated \|\n\| pass rate \| 50.0% \|', 'status mix and pass rate');
SELECT matches((SELECT m FROM wr), '\| week \| runs \| pass \| warn \| fail \| unvalidated \| pass rate \|', 'a short period goes by week');
SELECT matches((SELECT y FROM wr), '\| month \| runs \|', 'a long one by month');
SELECT matches((SELECT m FROM wr), '\| good \| backtest \| FAIL \| PASS \| 1 \|', 'good changed status: FAIL before the period, PASS now');
SELECT matches((SELECT m FROM wr), E'## Checks that failed most\n\n[^\n]*\n[^\n]*\n\\| performance.sharpe_min \\| sharpe_below_min \\| 1 \\| 1 \\| blocking \\| quant \\|',
               'the check that failed, with its reason code');
SELECT matches((SELECT y FROM wr), '\| performance.sharpe_min \| imported_fail \| 1 \| 1 \|', 'older failures in the longer period');
SELECT matches((SELECT m FROM wr), '\| 1 \| none \| [0-9-]+ [0-9:]+ \| bob \| tap \| no \| n/a \| 50.0% \(2 runs\) \| n/a \|',
               'the activation with its measured pass rate');
SELECT matches((SELECT m FROM wr), '\| [0-9-]+ \| loser \| [0-9a-f-]+ \| approved \| carol \| [0-9-]+ \| known regime \|\n\| [0-9-]+ \| loser \| [0-9a-f-]+ \| revoked \|',
               'overrides recorded in the period');
SELECT is((SELECT count(*)::int FROM wr, regexp_matches(h, '<svg ', 'g')), 2, 'html: status mix and pass-rate charts');
SELECT ok((SELECT h LIKE '%id="chart-status-mix"%' AND h LIKE '%id="chart-pass-rate"%' AND h !~* '<script|<img|src=|href=' FROM wr),
          'chart ids, no script, no external asset');
SELECT throws_ok($$SELECT wval_world_report('tap-rep', current_date, current_date - 1)$$, '22023', NULL, 'from after to: 22023');
SELECT throws_ok($$SELECT wval_world_report('tap-rep', bucket => 'day')$$, '22023', NULL, 'unknown bucket: 22023');
SELECT throws_ok($$SELECT wval_world_report('tap-rep', until => '4713-01-01 BC')$$, '22023', NULL, 'a day out of range: 22023');
SELECT throws_ok($$SELECT wval_world_report('tap-rep', 'infinity', current_date)$$, '22023', NULL, 'an infinite day: 22023');
SELECT throws_ok($$SELECT wval_world_report('tap-rep', format => 'pdf')$$, '22023', NULL, 'unknown format: 22023');
SELECT throws_ok($$SELECT wval_world_report('tap-nowhere')$$, 'WV010', NULL, 'unknown world: WV010');

-- an analyst of another world sees no world report of this one
CREATE ROLE tap_rep_other; GRANT wval_analyst TO tap_rep_other;
SELECT lives_ok($$SELECT wval_world_upsert('tap-rep-other', actor => 'dba'),
                         wval_world_grant('tap_rep_other', 'tap-rep-other', 'read', 'dba'),
                         wval_world_revoke('wval_analyst', '*', 'dba')$$, 'analyst of another world only');
SET LOCAL ROLE tap_rep_other;
SELECT throws_ok($$SELECT wval_world_report('tap-rep')$$, 'WV010', NULL, 'another world''s analyst: WV010');
SELECT lives_ok($$SELECT wval_world_report('tap-rep-other')$$, 'its own world: fine');
RESET ROLE;

------------------------------------------------------------------------------
-- markup in world, strategy and reason texts comes out escaped
------------------------------------------------------------------------------

SELECT lives_ok($$SELECT wval_world_upsert('<script>w</script>"><img onerror=x>&|`w`', actor => 'dba'),
                         wval_policy_publish('<script>w</script>"><img onerror=x>&|`w`', '{"validation_profiles": {"backtest": {"performance": {"sharpe_min": 5}}},
                             "default_profile_by_stage": {"backtest_only": "backtest"}, "live_monitoring": {"sharpe_min": 5, "windows_days": [30]}}', 'alice'),
                         wval_policy_activate('<script>w</script>"><img onerror=x>&|`w`', 1, 'bob', '<script>r</script>"><img onerror=x>&|`r`')$$,
                'a world with markup in its name and activation reason');
CREATE TEMP TABLE inj AS SELECT (wval_evaluate('<script>w</script>"><img onerror=x>&|`w`', '<script>s</script>"><img onerror=x>&|`s`', 'backtest',
                                               ARRAY(SELECT 0.004 + 0.01 * sin(i) FROM generate_series(1, 40) i))).run_id;
SELECT lives_ok($$SELECT wval_override((SELECT run_id FROM inj), 'approved', '<script>o</script>"><img onerror=x>&|`o`', 'carol'),
                         wval_set_stage('<script>w</script>"><img onerror=x>&|`w`', '<script>s</script>"><img onerror=x>&|`s`', 'paper', 'vera', 'tap'),
                         wval_record_live_returns('<script>w</script>"><img onerror=x>&|`w`', '<script>s</script>"><img onerror=x>&|`s`',
                             ARRAY(SELECT (current_date - 31 + i)::date FROM generate_series(1, 30) i),
                             ARRAY(SELECT 0.001 * sin(i) FROM generate_series(1, 30) i)),
                         wval_live_run('<script>w</script>"><img onerror=x>&|`w`', '<script>s</script>"><img onerror=x>&|`s`', current_date - 1)$$,
                'an override reason with markup, live returns');
CREATE TEMP TABLE injr AS
SELECT wval_report((SELECT run_id FROM inj), 'html') AS vh, wval_report((SELECT run_id FROM inj)) AS vm,
       wval_world_report('<script>w</script>"><img onerror=x>&|`w`', current_date - 3, current_date, 'html') AS wh,
       wval_world_report('<script>w</script>"><img onerror=x>&|`w`', current_date - 3, current_date) AS wm,
       wval_live_report('<script>w</script>"><img onerror=x>&|`w`', current_date - 1, 'html') AS lh,
       wval_live_report('<script>w</script>"><img onerror=x>&|`w`', current_date - 1) AS lm;
SELECT ok((SELECT bool_and(x !~* '<script|<img|onerror=x>' AND x LIKE '%&lt;script&gt;%&quot;&gt;&lt;img onerror=x&gt;&amp;|`%')
           FROM injr, unnest(ARRAY[vh, wh, lh]) x), 'html: no markup gets through in the validation, world and live reports');
SELECT ok((SELECT vh LIKE '%&lt;script&gt;o&lt;/script&gt;%' AND wh LIKE '%&lt;script&gt;o&lt;/script&gt;%'
                  AND wh LIKE '%&lt;script&gt;r&lt;/script&gt;%' FROM injr), 'html: the override and activation reasons are escaped');
SELECT ok((SELECT bool_and(x !~ '(^|[^\\])<(script|img)' AND x !~ '[^\\]\|`' AND x !~ '(^|[^\\])`[a-z]`') FROM injr, unnest(ARRAY[vm, wm, lm]) x),
          'markdown: no raw tag, pipe or backtick of the texts');
SELECT matches((SELECT vm FROM injr), '^# Validation report: \\<script>s\\</script>">\\<img onerror=x>&\\\|\\`s\\` / \\<script>w',
               'markdown title: escaped, readable');
SELECT matches((SELECT wm FROM injr), '\| approved \| carol \| [0-9-]+ \| \\<script>o\\</script>">\\<img onerror=x>&\\\|\\`o\\` \|',
               'markdown: the override reason is one escaped cell');

SELECT * FROM finish();
ROLLBACK;
