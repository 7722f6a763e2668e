-- pgTAP: the naming conventions of docs/development.md ("Conventions"), read
-- from the catalogue so a new object that breaks one fails here (issue 18).
--   * a C-backed SQL function has the C symbol of its SQL name:
--     public.wval_x -> wval_x, wval._x -> wval_x (so grep finds one from the
--     other); overloads share one symbol.
--   * one API convention: every function of the extension is public.wval_*
--     (an entry point) or wval._* (a helper); schema wval holds data objects.
--   * stages are the domains of src/wval.sql: every stage column of a wval
--     table has one of them, and no table repeats the list in a CHECK.
--   * row-level security is declared where each table is: every table of
--     schema wval with a world_id (wval.world_grants aside) has the world
--     policy, and its source calls wval._secure right after CREATE TABLE.
--   * every SQL source states its install-time needs in a "-- requires:"
--     header line (scripts/install-script.py orders the files by it).
--   * a C-backed function is declared in the SQL file of its C file (x.sql
--     for x.c and its parts x_*.c, or a file whose header names the C file:
--     policy.sql declares the functions of rules.c).
--   * comments point to docs/ of the repository, not to the specification.
BEGIN;
SET client_min_messages = warning;
SELECT plan(14);

CREATE TEMP VIEW tap_c_routines AS
SELECT p.oid::regprocedure AS routine, p.prosrc AS symbol,
       CASE WHEN n.nspname = 'public' THEN p.proname ELSE 'wval' || p.proname END AS expected
FROM pg_depend d
JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'wval'
JOIN pg_proc p ON d.classid = 'pg_proc'::regclass AND p.oid = d.objid
JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE d.deptype = 'e' AND p.prolang = (SELECT oid FROM pg_language WHERE lanname = 'c');

SELECT cmp_ok((SELECT count(*) FROM tap_c_routines), '>=', 50::bigint,
              'the C-backed functions of the extension are enumerated');
SELECT is_empty($$SELECT routine::text || ' -> ' || symbol FROM tap_c_routines WHERE symbol <> expected$$,
                'every C-backed function has the C symbol of its SQL name');

-- one API convention
SELECT is_empty($$
    SELECT p.oid::regprocedure::text
    FROM pg_depend d
    JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'wval'
    JOIN pg_proc p ON d.classid = 'pg_proc'::regclass AND p.oid = d.objid
    WHERE d.deptype = 'e'
      AND NOT ((p.pronamespace = 'public'::regnamespace AND p.proname LIKE 'wval\_%')
               OR (p.pronamespace = 'wval'::regnamespace AND p.proname LIKE '\_%'))$$,
    'every function is an entry point public.wval_* or a helper wval._*');
SELECT is_empty($$
    SELECT c.oid::regclass::text FROM pg_depend d
    JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'wval'
    JOIN pg_class c ON d.classid = 'pg_class'::regclass AND c.oid = d.objid
    WHERE d.deptype = 'e' AND c.relnamespace <> 'wval'::regnamespace$$,
    'every relation of the extension is in schema wval');

-- stages
SELECT set_eq($$SELECT unnest(wval._stages())$$, ARRAY['backtest', 'paper', 'shadow', 'live'],
              'wval._stages() lists the evaluation stages');
SELECT is_empty($$
    SELECT c.oid::regclass::text || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
    FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
    WHERE c.relnamespace = 'wval'::regnamespace AND c.relkind IN ('r', 'p') AND NOT a.attisdropped AND a.attnum > 0
      AND (a.attname = 'stage' OR a.attname LIKE '%\_stage')
      AND a.atttypid NOT IN ('wval.stage'::regtype, 'wval.deployment_stage'::regtype, 'wval.recommended_stage'::regtype)$$,
    'every stage column of a wval table has a stage domain');
SELECT is_empty($$
    SELECT conrelid::regclass::text || ' ' || conname FROM pg_constraint
    WHERE connamespace = 'wval'::regnamespace AND contype = 'c' AND conrelid <> 0
      AND pg_get_constraintdef(oid) ~ '''(backtest|paper_only)'''$$,
    'no table repeats a stage list in a CHECK');
SELECT throws_ok($$SELECT 'shadow'::wval.deployment_stage$$, '23514', NULL,
                 'shadow is an evaluation stage, not a deployment stage');

-- row-level security where the table is
SELECT is_empty($$
    SELECT c.oid::regclass::text FROM pg_class c
    WHERE c.relnamespace = 'wval'::regnamespace AND c.relkind IN ('r', 'p')
      AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'world_id' AND NOT a.attisdropped)
      AND c.oid <> 'wval.world_grants'::regclass
      AND NOT (c.relrowsecurity AND EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid AND p.polname = 'wval_world_read'))$$,
    'every world-scoped table has row-level security and the world policy');

-- the sources: scripts/test.sh exports WVAL_REPO (by hand: run from the checkout)
\set secured `cd "${WVAL_REPO:-.}" && awk 'FNR == 1 { t = "" } t != "" && want { if (index($0, "SELECT wval._secure(\x27wval." t "\x27);") == 1) print t; t = ""; want = 0; next } match($0, /^CREATE (UNLOGGED )?TABLE wval\.[a-z_0-9]+/) { t = substr($0, RSTART, RLENGTH); sub(/.*wval\./, "", t) } t != "" && /;[ \t]*$/ { want = 1 }' src/*.sql | sort | tr '\n' ' '`
SELECT is_empty(format($$
    SELECT c.relname::text FROM pg_class c
    WHERE c.relnamespace = 'wval'::regnamespace AND c.relkind IN ('r', 'p')
      AND c.relname !~ '_p[0-9]{6}$'
      AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'world_id' AND NOT a.attisdropped)
      AND c.oid <> 'wval.world_grants'::regclass
      AND c.relname <> ALL (%L::text[])$$, '{' || replace(btrim(:'secured'), ' ', ',') || '}'),
    'every world-scoped table calls wval._secure right after its CREATE TABLE in src/*.sql');
\set no_header `cd "${WVAL_REPO:-.}" && for f in src/*.sql; do sed -n '/^[^-]/q; /^-- requires:/p' "$f" | grep -q . || echo "$f"; done | tr '\n' ' '`
SELECT is(:'no_header'::text, ''::text, 'every src/*.sql states what it needs in a "-- requires:" header line');
\set misplaced `cd "${WVAL_REPO:-.}" && for f in src/*.sql; do b=$(basename "$f" .sql); hdr=$(sed -n '/^[^-]/q; p' "$f"); grep -o "'MODULE_PATHNAME', *'[a-z_0-9]*'" "$f" | sed "s/.*'\([a-z_0-9]*\)'$/\1/" | sort -u | while read -r sym; do c=$(grep -l "PG_FUNCTION_INFO_V1($sym)" src/*.c | head -1); c=$(basename "${c:-none}"); case "$c" in "$b.c"|"$b"_*.c) continue ;; esac; printf '%s\n' "$hdr" | grep -qF "$c" || echo "$f:$sym:$c"; done; done | tr '\n' ' '`
SELECT is(:'misplaced'::text, ''::text,
          'every C-backed function is declared in the SQL file of its C file (x.sql for x.c and x_*.c, or a C file its header names)');
\set spec_refs `cd "${WVAL_REPO:-.}" && grep -nE '\(spec[ )]|spec [A-Za-z]+\.md|spec README|the spec\b|spec.s |(^|[^/a-z-])(operations|hub|store|policy|live|bus|metrics)\.md' src/*.sql src/*.c src/*.h | cut -c1-60 | tr '\n' ' '`
SELECT is(:'spec_refs'::text, ''::text, 'comments in src/ point to docs/ of the repository, not to the specification');
SELECT is_empty($$
    SELECT d.description FROM pg_description d
    JOIN pg_depend x ON x.classid = d.classoid AND x.objid = d.objoid AND x.deptype = 'e'
    JOIN pg_extension e ON e.oid = x.refobjid AND e.extname = 'wval'
    WHERE d.description ~ '\mspec\M|(^|[^/a-z-])(operations|hub|store|policy|live|bus|metrics)\.md'$$,
    'no COMMENT ON of the extension points to the specification');

SELECT * FROM finish();
ROLLBACK;
