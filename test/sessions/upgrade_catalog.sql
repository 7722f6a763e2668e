-- upgrade_catalog.sql: a text picture of everything wval puts into a database,
-- one line per fact, without OIDs; test/sessions/upgrade.sh compares the
-- picture of an updated database with the one of a fresh install.
\pset tuples_only on
\pset format unaligned
SET client_min_messages = warning;
CREATE TEMP VIEW ext_member AS
    SELECT d.classid, d.objid FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid
    WHERE d.refclassid = 'pg_extension'::regclass AND e.extname = 'wval' AND d.deptype = 'e';
CREATE TEMP VIEW rel AS
    SELECT c.* FROM pg_class c WHERE c.relnamespace = 'wval'::regnamespace;
CREATE TEMP VIEW routine AS
    SELECT p.* FROM pg_proc p
    WHERE p.oid IN (SELECT objid FROM ext_member WHERE classid = 'pg_proc'::regclass)
       OR p.pronamespace = 'wval'::regnamespace OR p.proname LIKE 'wval\_%';
SELECT * FROM (
-- extension
SELECT 'extension|' || extname || '|version=' || extversion || ' relocatable=' || extrelocatable ||
       ' schema=' || extnamespace::regnamespace
FROM pg_extension WHERE extname = 'wval'
UNION ALL
-- members of the extension (deptype e)
SELECT 'member|' || pg_describe_object(classid, objid, 0) FROM ext_member
UNION ALL
-- config-dump registrations
SELECT 'config_dump|' || c::regclass || '|' || coalesce(cond, '<null>')
FROM pg_extension e, unnest(e.extconfig, e.extcondition) AS u(c, cond) WHERE e.extname = 'wval'
UNION ALL
-- routines: signature, result, attributes, ACL, owner, then the full definition
SELECT 'routine|' || p.oid::regprocedure || '|kind=' || p.prokind::text || ' returns=' || pg_get_function_result(p.oid) ||
       ' args=' || pg_get_function_arguments(p.oid) || ' secdef=' || p.prosecdef || ' volatile=' || p.provolatile::text ||
       ' parallel=' || p.proparallel::text || ' strict=' || p.proisstrict || ' leakproof=' || p.proleakproof ||
       ' cost=' || p.procost || ' rows=' || p.prorows || ' config=' || coalesce(p.proconfig::text, '') ||
       ' owner=' || p.proowner::regrole || ' acl=' || coalesce(p.proacl::text, '<default>')
FROM routine p
UNION ALL
SELECT 'routine_def|' || p.oid::regprocedure || '|' ||
       CASE WHEN p.prokind = 'a' THEN
           (SELECT 'sfunc=' || aggtransfn || ' stype=' || format_type(aggtranstype, NULL) || ' final=' || aggfinalfn ||
                   ' combine=' || aggcombinefn || ' init=' || coalesce(agginitval, '<null>') || ' parallel=' || p.proparallel::text
            FROM pg_aggregate WHERE aggfnoid = p.oid)
       ELSE replace(pg_get_functiondef(p.oid), E'\n', E'\n    ') END
FROM routine p
UNION ALL
-- relations: kind, persistence, partitioning, options, RLS, owner, ACL
SELECT 'relation|' || c.oid::regclass || '|kind=' || c.relkind::text || ' persistence=' || c.relpersistence::text ||
       ' partkey=' || coalesce(pg_get_partkeydef(c.oid), '') ||
       ' bound=' || coalesce(pg_get_expr(c.relpartbound, c.oid), '') ||
       ' parent=' || coalesce((SELECT string_agg(inhparent::regclass::text, ',') FROM pg_inherits WHERE inhrelid = c.oid), '') ||
       ' options=' || coalesce(c.reloptions::text, '') || ' rls=' || c.relrowsecurity || ' force_rls=' || c.relforcerowsecurity ||
       ' replident=' || c.relreplident::text || ' owner=' || c.relowner::regrole || ' acl=' || coalesce(c.relacl::text, '<default>')
FROM rel c
UNION ALL
-- columns (by name: an added column comes last in an updated table; the order is checked apart)
SELECT 'column|' || c.oid::regclass || '.' || a.attname || '|' || format_type(a.atttypid, a.atttypmod) ||
       ' notnull=' || a.attnotnull || ' default=' || coalesce(pg_get_expr(ad.adbin, ad.adrelid), '') ||
       ' identity=' || a.attidentity::text || ' generated=' || a.attgenerated::text ||
       ' collation=' || coalesce((SELECT collname FROM pg_collation WHERE oid = a.attcollation AND a.attcollation <> 0), '') ||
       ' acl=' || coalesce(a.attacl::text, '')
FROM rel c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
LEFT JOIN pg_attrdef ad ON ad.adrelid = c.oid AND ad.adnum = a.attnum
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'c', 'f')
UNION ALL
SELECT 'column_order|' || c.oid::regclass || '|' ||
       string_agg(a.attname, ',' ORDER BY a.attnum)
FROM rel c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'c', 'f')
GROUP BY c.oid
UNION ALL
-- constraints
SELECT 'constraint|' || con.conrelid::regclass || '|' || con.conname || ' ' || pg_get_constraintdef(con.oid) ||
       ' deferrable=' || con.condeferrable || ' validated=' || con.convalidated
FROM pg_constraint con JOIN rel c ON c.oid = con.conrelid
UNION ALL
SELECT 'domain_constraint|' || con.contypid::regtype || '|' || con.conname || ' ' || pg_get_constraintdef(con.oid)
FROM pg_constraint con JOIN pg_type t ON t.oid = con.contypid WHERE t.typnamespace = 'wval'::regnamespace
UNION ALL
-- indexes
SELECT 'index|' || i.indrelid::regclass || '|' || pg_get_indexdef(i.indexrelid)
FROM pg_index i JOIN rel c ON c.oid = i.indrelid
UNION ALL
-- sequences
SELECT 'sequence|' || s.seqrelid::regclass || '|type=' || format_type(s.seqtypid, NULL) || ' start=' || s.seqstart ||
       ' inc=' || s.seqincrement || ' min=' || s.seqmin || ' max=' || s.seqmax || ' cache=' || s.seqcache ||
       ' cycle=' || s.seqcycle ||
       ' owned_by=' || coalesce((SELECT d.refobjid::regclass || '.' || a.attname FROM pg_depend d
                                 JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
                                 WHERE d.classid = 'pg_class'::regclass AND d.objid = s.seqrelid
                                   AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')), '')
FROM pg_sequence s JOIN rel c ON c.oid = s.seqrelid
UNION ALL
-- views
SELECT 'view|' || c.oid::regclass || '|' || replace(pg_get_viewdef(c.oid), E'\n', E'\n    ')
FROM rel c WHERE c.relkind IN ('v', 'm')
UNION ALL
-- types
SELECT 'type|' || t.oid::regtype || '|type=' || t.typtype::text || ' base=' || coalesce(nullif(t.typbasetype, 0)::regtype::text, '') ||
       ' notnull=' || t.typnotnull || ' owner=' || t.typowner::regrole || ' acl=' || coalesce(t.typacl::text, '<default>') ||
       ' enum=' || coalesce((SELECT string_agg(enumlabel, ',' ORDER BY enumsortorder) FROM pg_enum WHERE enumtypid = t.oid), '')
FROM pg_type t WHERE t.typnamespace = 'wval'::regnamespace
  AND (t.typrelid = 0 OR (SELECT relkind FROM pg_class WHERE oid = t.typrelid) = 'c') AND t.typelem = 0
UNION ALL
-- triggers (with their enabled state: O origin, A always, R replica, D disabled)
SELECT 'trigger|' || t.tgrelid::regclass || '|' || pg_get_triggerdef(t.oid) || ' enabled=' || t.tgenabled::text
FROM pg_trigger t JOIN rel c ON c.oid = t.tgrelid WHERE NOT t.tgisinternal
UNION ALL
-- row-level security policies
SELECT 'policy|' || p.schemaname || '.' || p.tablename || '|' || p.policyname || ' ' || p.permissive || ' roles=' ||
       p.roles::text || ' cmd=' || p.cmd || ' using=' || coalesce(p.qual, '') || ' check=' || coalesce(p.with_check, '')
FROM pg_policies p WHERE p.schemaname = 'wval'
UNION ALL
-- event triggers
SELECT 'event_trigger|' || e.evtname || '|event=' || e.evtevent || ' function=' || e.evtfoid::regproc ||
       ' enabled=' || e.evtenabled::text || ' tags=' || coalesce(e.evttags::text, '') || ' owner=' || e.evtowner::regrole
FROM pg_event_trigger e
WHERE e.oid IN (SELECT objid FROM ext_member WHERE classid = 'pg_event_trigger'::regclass) OR e.evtname LIKE 'wval%'
UNION ALL
-- rules
SELECT 'rule|' || r.ev_class::regclass || '|' || r.rulename || ' ' || pg_get_ruledef(r.oid)
FROM pg_rewrite r JOIN rel c ON c.oid = r.ev_class WHERE c.relkind <> 'v'
UNION ALL
-- comments
SELECT 'comment|' || pg_describe_object(d.classoid, d.objoid, d.objsubid) || '|' || d.description
FROM pg_description d
WHERE pg_describe_object(d.classoid, d.objoid, d.objsubid) ~ 'wval'
UNION ALL
-- the schema, its ACL; default privileges
SELECT 'schema|' || nspname || '|owner=' || nspowner::regrole || ' acl=' || coalesce(nspacl::text, '<default>')
FROM pg_namespace WHERE nspname = 'wval'
UNION ALL
SELECT 'default_acl|' || coalesce(defaclnamespace::regnamespace::text, '') || '|' || defaclrole::regrole || ' ' ||
       defaclobjtype::text || ' ' || defaclacl::text
FROM pg_default_acl
) facts(line)
ORDER BY 1;
