-- uninstall.sql: DROP EXTENSION wval is deliberate (uninstall.c).
-- While history exists the drop is refused with WV003 unless a superuser
-- has set wval.allow_drop = on; an allowed drop removes wval's pg_cron jobs.
--
-- requires: wval

CREATE FUNCTION wval._guard_drop() RETURNS event_trigger
    AS 'MODULE_PATHNAME', 'wval_guard_drop' LANGUAGE C;
COMMENT ON FUNCTION wval._guard_drop() IS 'event trigger: refuses DROP EXTENSION wval / DROP SCHEMA wval while history exists unless wval.allow_drop is on (superuser); removes wval''s pg_cron jobs of an allowed drop';

CREATE EVENT TRIGGER wval_guard_drop ON ddl_command_start
    WHEN TAG IN ('DROP EXTENSION', 'DROP SCHEMA')
    EXECUTE FUNCTION wval._guard_drop();
COMMENT ON EVENT TRIGGER wval_guard_drop IS 'keeps DROP EXTENSION wval from deleting the history by accident (see docs/install.md, "Uninstalling")';
