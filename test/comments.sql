-- pgTAP: every user-facing object of the extension explains itself in \d+ and
-- \df+ (docs/development.md, "Conventions"; issue 14, "comment every
-- user-facing column").
--
-- The objects are enumerated from the catalogue, so a new table, view, column
-- or function without a COMMENT fails this file, which lists what lacks one:
--   * every column of a table or view of schema wval that one of the four wval
--     roles may read (table or column privilege), except the partitions of
--     the partitioned history tables (*_pYYYYMM, *_default: their parent has
--     the comments) and the unlogged work_* tables (no role reads them);
--   * every such table and view itself;
--   * every function, procedure and aggregate that belongs to the extension.
-- The last tests plant an uncommented column and function and check that
-- they are listed.
BEGIN;
SET client_min_messages = warning;
SELECT plan(9);

CREATE TEMP VIEW tap_user_relations AS
SELECT c.oid, c.oid::regclass AS rel, c.relkind
FROM pg_class c
WHERE c.relnamespace = 'wval'::regnamespace
  AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
  AND NOT c.relispartition
  AND c.relname !~ '^work_'
  AND EXISTS (SELECT 1 FROM pg_attribute a, unnest(ARRAY['wval_analyst', 'wval_producer', 'wval_validator', 'wval_admin']) r(role)
              WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                AND has_column_privilege(r.role, c.oid, a.attnum, 'SELECT'));

CREATE TEMP VIEW tap_user_columns AS
SELECT format('%s.%I', u.rel, a.attname) AS col, col_description(u.oid, a.attnum) AS comment
FROM tap_user_relations u
JOIN pg_attribute a ON a.attrelid = u.oid AND a.attnum > 0 AND NOT a.attisdropped
WHERE EXISTS (SELECT 1 FROM unnest(ARRAY['wval_analyst', 'wval_producer', 'wval_validator', 'wval_admin']) r(role)
              WHERE has_column_privilege(r.role, u.oid, a.attnum, 'SELECT'));

CREATE TEMP VIEW tap_extension_routines AS
SELECT p.oid::regprocedure AS routine, obj_description(p.oid, 'pg_proc') AS comment
FROM pg_depend d
JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'wval'
JOIN pg_proc p ON p.oid = d.objid
WHERE d.classid = 'pg_proc'::regclass AND d.deptype = 'e';

-- the enumeration is not vacuous: it finds the tables, views and columns
-- analysts read, including the column-level grants of wval.producers
SELECT cmp_ok((SELECT count(*)::int FROM tap_user_relations), '>=', 50, 'at least 50 user-facing tables and views');
SELECT cmp_ok((SELECT count(*)::int FROM tap_user_columns), '>=', 450, 'at least 450 user-facing columns');
SELECT ok(EXISTS (SELECT 1 FROM tap_user_columns WHERE col = 'wval.producers.actor')
          AND NOT EXISTS (SELECT 1 FROM tap_user_columns WHERE col = 'wval.producers.hmac_key'),
          'column privileges count: producers.actor is user-facing, producers.hmac_key is not');

-- what every user-facing object must have
SELECT is_empty($$SELECT col FROM tap_user_columns WHERE comment IS NULL OR btrim(comment) = '' ORDER BY 1$$,
                'every column a wval role can read has a COMMENT (the uncommented ones are listed)');
SELECT is_empty($$SELECT rel::text FROM tap_user_relations
                  WHERE coalesce(btrim(obj_description(oid, 'pg_class')), '') = '' ORDER BY 1$$,
                'every table and view a wval role can read has a COMMENT');
SELECT is_empty($$SELECT routine::text FROM tap_extension_routines
                  WHERE comment IS NULL OR btrim(comment) = '' ORDER BY 1$$,
                'every function, procedure and aggregate of the extension has a COMMENT');

-- the check fails for a new column or function without a comment
CREATE VIEW wval.tap_comment_probe AS SELECT 1 AS described, 2 AS undescribed;
COMMENT ON VIEW wval.tap_comment_probe IS 'probe';
COMMENT ON COLUMN wval.tap_comment_probe.described IS 'probe';
SELECT is_empty($$SELECT col FROM tap_user_columns WHERE col LIKE 'wval.tap_comment_probe.%'$$,
                'a relation no wval role can read is not user-facing');
GRANT SELECT ON wval.tap_comment_probe TO wval_analyst;
SELECT is(ARRAY(SELECT col FROM tap_user_columns WHERE comment IS NULL ORDER BY 1),
          ARRAY['wval.tap_comment_probe.undescribed'],
          'a granted column without a COMMENT is listed');
CREATE FUNCTION wval.tap_comment_probe() RETURNS int LANGUAGE sql AS 'SELECT 1';
ALTER EXTENSION wval ADD FUNCTION wval.tap_comment_probe();
SELECT is(ARRAY(SELECT routine::text FROM tap_extension_routines WHERE comment IS NULL ORDER BY 1),
          ARRAY['wval.tap_comment_probe()'],
          'an extension function without a COMMENT is listed');

SELECT * FROM finish();
ROLLBACK;
