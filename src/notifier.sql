-- notifier.sql: the SQL side of the bus's wake-up worker (notifier.c,
-- docs/bus.md, "Wake-ups and the notifier").  wval._emit (bus.sql) calls
-- wval._wake() in the writing transaction; the worker sends the NOTIFY.
--
-- requires: wval

-- wval._wake(): asks for a NOTIFY wval_events (empty payload) once the
-- calling transaction commits.  The notifier background worker of the
-- database sends it (src/notifier.c), so that writing transactions do not
-- take NOTIFY's cluster-wide commit lock; without a notifier the
-- transaction NOTIFYs itself.
CREATE FUNCTION wval._wake() RETURNS void
LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'wval_wake';
COMMENT ON FUNCTION wval._wake() IS 'internal: wake wval_events listeners after the calling transaction commits, through the notifier worker (at most one NOTIFY per wval.notify_interval) or, without one, by NOTIFY in the transaction; nothing on rollback';

