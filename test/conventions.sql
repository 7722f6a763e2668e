-- pgTAP: the naming conventions of docs/development.md ("Conventions"), read
-- from the catalogue so a new object that breaks one fails here (issue 18).
--   * a C-backed SQL function has the C symbol of its SQL name:
--     public.wval_x -> wval_x, wval._x -> wval_x (so grep finds one from the
--     other); overloads share one symbol.
BEGIN;
SET client_min_messages = warning;
SELECT plan(2);

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

SELECT * FROM finish();
ROLLBACK;
