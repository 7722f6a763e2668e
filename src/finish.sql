-- finish.sql: last part of the install script.
-- Nothing of wval is granted to PUBLIC: EXECUTE on every function of the
-- extension is revoked from PUBLIC here, after each concept's file has
-- granted what its roles need.
--
-- requires: *  (every other file: this one comes last)

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

-- Row-level security is declared where each table is created (SELECT
-- wval._secure('wval.t') right after its CREATE TABLE): check that no
-- world-scoped table was left without it (wval.world_grants is exempt: the
-- policies read it).  Views run with the caller's rights.
DO $rls$
DECLARE
    missing text;
    v regclass;
BEGIN
    SELECT string_agg(c.oid::regclass::text, ', ' ORDER BY c.oid::regclass::text) INTO missing
    FROM pg_class c
    WHERE c.relnamespace = 'wval'::regnamespace AND c.relkind IN ('r', 'p')
      AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'world_id' AND NOT a.attisdropped)
      AND c.oid <> 'wval.world_grants'::regclass
      AND NOT (c.relrowsecurity AND EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid AND p.polname = 'wval_world_read'));
    IF missing IS NOT NULL THEN
        RAISE EXCEPTION 'world-scoped tables without row-level security: %', missing
            USING ERRCODE = 'XX000',
                  HINT = 'Add SELECT wval._secure(''wval.<table>''); right after the CREATE TABLE (docs/development.md, "Conventions").';
    END IF;
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
