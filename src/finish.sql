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
