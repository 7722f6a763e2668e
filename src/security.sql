-- security.sql: row-level security per world (docs/roles.md, "Row-level
-- security per world"), next to access.c (the cached world checks). A role
-- sees and writes only the worlds granted to it in wval.world_grants. Every
-- world-scoped table gets its policy right after its CREATE TABLE (SELECT
-- wval._secure('wval.t'), src/store.sql); finish.sql checks that none was
-- forgotten and gives every view the caller's rights.
--
-- Reads: every table of schema wval with a world_id column gets a row-level
-- security policy, and every view runs with the caller's rights
-- (security_invoker), so an analyst of world A sees no row of world B in any
-- table or view. The SECURITY DEFINER read functions check the caller through
-- wval._world() and wval._run() (an invisible world or run "does not exist").
-- Writes: the chain trigger refuses (42501) a history row for a world the
-- calling role may not write.
--
-- The extension grants '*' (every world) to its four roles, so nothing is
-- restricted until a site narrows it: revoke the '*' grant of a role and
-- grant worlds to the roles that need them.
--
-- requires: store

CREATE TABLE wval.world_grants (
    role_name  name NOT NULL,
    world_id   text NOT NULL,
    privilege  text NOT NULL CHECK (privilege IN ('read', 'write', 'none')),
    granted_by text NOT NULL,
    granted_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (role_name, world_id, granted_at)
);
COMMENT ON TABLE wval.world_grants IS 'append-only history of world grants: the latest row per (role, world) is in force; privilege read, write (includes read) or none (revoked); world_id ''*'' means every world; membership counts (a grant to wval_analyst covers its members)';
COMMENT ON COLUMN wval.world_grants.role_name IS 'the role granted; its members are covered too';
COMMENT ON COLUMN wval.world_grants.world_id IS 'a world_id, or * for every world';
COMMENT ON COLUMN wval.world_grants.privilege IS 'read | write (includes read) | none (revokes an earlier grant)';
COMMENT ON COLUMN wval.world_grants.granted_by IS 'who granted: the actor given to wval_world_grant (default the calling role); wval for the extension''s own grants';
COMMENT ON COLUMN wval.world_grants.granted_at IS 'when the grant was recorded; -infinity for the extension''s own * grants, so that any later row of a site wins';
-- the extension's own '*' grants date from -infinity: any later row of a site
-- wins, also after a dump is restored (CREATE EXTENSION re-creates these rows,
-- the dump brings back the site's rows)
INSERT INTO wval.world_grants (role_name, world_id, privilege, granted_by, granted_at) VALUES
    ('wval_analyst', '*', 'read', 'wval', '-infinity'), ('wval_producer', '*', 'write', 'wval', '-infinity'),
    ('wval_validator', '*', 'write', 'wval', '-infinity'), ('wval_admin', '*', 'write', 'wval', '-infinity');
SELECT wval._protect('wval.world_grants');
CREATE FUNCTION wval._grants_changed() RETURNS trigger
    AS 'MODULE_PATHNAME', 'wval_grants_changed' LANGUAGE C;
COMMENT ON FUNCTION wval._grants_changed() IS 'statement trigger of wval.world_grants: every backend forgets the world grants it cached (access.c) when the writing transaction commits';
CREATE TRIGGER world_grants_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON wval.world_grants
    FOR EACH STATEMENT EXECUTE FUNCTION wval._grants_changed();
-- also when a grant arrives by logical replication (session_replication_role = replica)
ALTER TABLE wval.world_grants ENABLE ALWAYS TRIGGER world_grants_changed;
-- no world policy here: the policies of every other table read this one
-- (through wval._visible_worlds, SECURITY DEFINER); finish.sql exempts it
SELECT pg_catalog.pg_extension_config_dump('wval.world_grants', 'WHERE granted_at <> ''-infinity''');

CREATE VIEW wval.current_world_grants AS
SELECT DISTINCT ON (g.role_name, g.world_id) g.role_name, g.world_id, g.privilege, g.granted_by, g.granted_at
FROM wval.world_grants g
ORDER BY g.role_name, g.world_id, g.granted_at DESC;
COMMENT ON VIEW wval.current_world_grants IS 'the grants in force: the latest row per (role, world) of wval.world_grants (privilege none = revoked)';
COMMENT ON COLUMN wval.current_world_grants.role_name IS 'the role granted; its members are covered too';
COMMENT ON COLUMN wval.current_world_grants.world_id IS 'a world_id, or * for every world';
COMMENT ON COLUMN wval.current_world_grants.privilege IS 'read | write (includes read) | none (revokes an earlier grant)';
COMMENT ON COLUMN wval.current_world_grants.granted_by IS 'who granted: the actor given to wval_world_grant (default the calling role); wval for the extension''s own grants';
COMMENT ON COLUMN wval.current_world_grants.granted_at IS 'when the grant was recorded; -infinity for the extension''s own * grants, so that any later row of a site wins';

-- wval._world_access(role, world, privilege): may role read/write the world?
-- Superusers may do everything. C (access.c): the grants in force for a role
-- are cached per backend until wval.world_grants, a role or a membership
-- changes (the trigger below, syscache callbacks).
CREATE FUNCTION wval._world_access(p_role oid, p_world_id text, p_privilege text) RETURNS boolean
    AS 'MODULE_PATHNAME', 'wval_world_access' LANGUAGE C STABLE;
COMMENT ON FUNCTION wval._world_access(oid, text, text) IS 'true when the role (or a role it is a member of) was granted the world (or *) with the privilege (write includes read)';

-- wval._can_read(world): may the calling role (outside SECURITY DEFINER) read
-- the world?  The one question every read path asks first; a world it may not
-- read is answered as a world that does not exist.  C (access.c), cached per
-- backend.
CREATE FUNCTION wval._can_read(p_world_id text) RETURNS boolean
    AS 'MODULE_PATHNAME', 'wval_can_read' LANGUAGE C STABLE;
COMMENT ON FUNCTION wval._can_read(text) IS 'true when the calling role may read the world (wval.world_grants); what it may not read does not exist for it';

-- wval._require_world_access(world, privilege): 42501 unless the calling role
-- (outside SECURITY DEFINER) may read/write the world.
CREATE FUNCTION wval._require_world_access(p_world_id text, p_privilege text DEFAULT 'read') RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, wval, pg_temp AS $$
BEGIN
    IF NOT wval._world_access((SELECT oid FROM pg_roles WHERE rolname = wval._invoker()), p_world_id, p_privilege) THEN
        RAISE EXCEPTION 'role "%" may not % world "%"', wval._invoker(), p_privilege, p_world_id
            USING ERRCODE = '42501',
                  HINT = 'A wval_admin grants worlds with wval_world_grant(role, world_id, privilege).';
    END IF;
END
$$;
COMMENT ON FUNCTION wval._require_world_access(text, text) IS 'raises 42501 unless the calling role may read (or write) the world';

CREATE FUNCTION public.wval_world_grant(role_name name, world_id text, privilege text DEFAULT 'read', actor text DEFAULT NULL)
RETURNS wval.world_grants
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    p_actor text := wval._ident('actor', coalesce(actor, wval._invoker()));
    g wval.world_grants;
BEGIN
    -- nulls are 22023 naming the argument (not 23502 from the table, nor "role null does not exist")
    PERFORM wval._require_text('role_name', role_name, '22023', 'Pass the name of an existing role.');
    PERFORM wval._require_text('world_id', world_id, '22023', 'Pass a world_id, or * for every world.');
    PERFORM wval._one_of('privilege', privilege, ARRAY['read', 'write']);
    IF NOT EXISTS (SELECT 1 FROM pg_roles r WHERE r.rolname = wval_world_grant.role_name) THEN
        RAISE EXCEPTION 'role "%" does not exist', role_name USING ERRCODE = 'WV010',
            HINT = 'Create the role first (CREATE ROLE).';
    END IF;
    IF world_id <> '*' THEN
        PERFORM wval._world(wval._ident('world_id', world_id));
    END IF;
    INSERT INTO wval.world_grants (role_name, world_id, privilege, granted_by, granted_at)
    VALUES (role_name, world_id, privilege, p_actor, clock_timestamp())
    RETURNING * INTO g;
    PERFORM wval._audit(nullif(world_id, '*'), 'world_granted', p_actor,
                        jsonb_build_object('role', role_name, 'world_id', world_id, 'privilege', privilege));
    RETURN g;
END
$$;
COMMENT ON FUNCTION public.wval_world_grant(name, text, text, text) IS 'lets a role read (or write) a world (* = every world); audited';

CREATE FUNCTION public.wval_world_revoke(role_name name, world_id text, actor text DEFAULT NULL) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    p_actor text := wval._ident('actor', coalesce(actor, wval._invoker()));
    found_grant boolean;
BEGIN
    PERFORM wval._require_text('role_name', role_name, '22023', 'Pass the name of a role.');
    PERFORM wval._require_text('world_id', world_id, '22023', 'Pass a world_id, or * for every world.');
    SELECT g.privilege <> 'none' INTO found_grant FROM wval.current_world_grants g
    WHERE g.role_name = wval_world_revoke.role_name AND g.world_id = wval_world_revoke.world_id;
    found_grant := coalesce(found_grant, false);
    IF found_grant THEN
        INSERT INTO wval.world_grants (role_name, world_id, privilege, granted_by, granted_at)
        VALUES (role_name, world_id, 'none', p_actor, clock_timestamp());
    END IF;
    IF found_grant THEN
        PERFORM wval._audit(nullif(world_id, '*'), 'world_revoked', p_actor,
                            jsonb_build_object('role', role_name, 'world_id', world_id));
    END IF;
    RETURN found_grant;
END
$$;
COMMENT ON FUNCTION public.wval_world_revoke(name, text, text) IS 'revokes a role''s grant of a world (or of *) with a row of privilege none; audited; false when there was none in force';


GRANT SELECT ON wval.world_grants, wval.current_world_grants TO wval_analyst;
GRANT EXECUTE ON FUNCTION wval._visible_worlds(), wval._world_access(oid, text, text), wval._invoker(), wval._can_read(text) TO wval_analyst;
GRANT EXECUTE ON FUNCTION public.wval_world_grant(name, text, text, text), public.wval_world_revoke(name, text, text) TO wval_admin;
