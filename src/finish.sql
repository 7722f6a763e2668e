-- finish.sql: last part of the install script.
-- Nothing of wval is granted to PUBLIC: EXECUTE on every function of the
-- extension is revoked from PUBLIC here, after each concept's file has
-- granted what its roles need.

DO $finish$
DECLARE
    f regprocedure;
BEGIN
    FOR f IN
        SELECT d.objid::regprocedure
        FROM pg_depend d
        JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'wval'
        WHERE d.classid = 'pg_proc'::regclass AND d.deptype = 'e'
    LOOP
        EXECUTE format('REVOKE ALL ON ROUTINE %s FROM PUBLIC', f);  -- ROUTINE: procedures too
    END LOOP;
END
$finish$;

-- Row-level security on every world-scoped table, caller's rights on every view.
DO $rls$
DECLARE
    t regclass;
    v regclass;
BEGIN
    FOR t IN
        SELECT c.oid::regclass FROM pg_class c
        WHERE c.relnamespace = 'wval'::regnamespace AND c.relkind IN ('r', 'p')
          AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'world_id' AND NOT a.attisdropped)
          AND c.oid <> 'wval.world_grants'::regclass
    LOOP
        PERFORM wval._secure(t);
    END LOOP;
    -- views run with the caller's rights, except those that hide columns the
    -- caller may not read (they filter by world themselves)
    FOR v IN SELECT c.oid::regclass FROM pg_class c
             WHERE c.relnamespace = 'wval'::regnamespace AND c.relkind = 'v'
               AND c.oid <> 'wval.current_producers'::regclass
    LOOP
        EXECUTE format('ALTER VIEW %s SET (security_invoker = true)', v);
    END LOOP;
END
$rls$;
