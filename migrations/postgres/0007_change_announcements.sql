-- Change announcements for replicas. After a change to a row that other
-- processes may hold a copy of, a trigger sends a notification on the
-- channel `oauth_sidecar_changes`; each sidecar listens and drops its stale
-- copy at once (see src/store/postgres/changes.rs). PostgreSQL delivers a
-- notification at commit, to every session listening in this database,
-- whichever process made the change (a replica, the CLI), and delivers
-- identical payloads of one transaction once.
--
-- The payload is JSON: the schema of the table (another schema in the same
-- database is another store), a kind, and the row's key; never a secret or
-- a hash. A key too long for a notification (8000 bytes) announces
-- "everything" instead.
--
-- The trigger's arguments: the kind, then the key column and an optional
-- second key column, read from the new row (the old one for a DELETE).
CREATE FUNCTION sidecar_announce_change() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    changed JSONB;
    payload TEXT;
BEGIN
    IF TG_LEVEL = 'ROW' THEN
        IF TG_OP = 'DELETE' THEN
            changed := to_jsonb(OLD);
        ELSE
            changed := to_jsonb(NEW);
        END IF;
    END IF;
    payload := json_build_object(
        'schema', TG_TABLE_SCHEMA,
        'kind', TG_ARGV[0],
        'id', changed ->> TG_ARGV[1],
        'tag', changed ->> TG_ARGV[2]
    )::text;
    IF octet_length(payload) > 7900 THEN
        payload := json_build_object('schema', TG_TABLE_SCHEMA, 'kind', 'everything')::text;
    END IF;
    PERFORM pg_notify('oauth_sidecar_changes', payload);
    RETURN NULL;
END
$$;

-- A revoked access token, for the gates' token caches.
CREATE TRIGGER revoked_access_tokens_announce
    AFTER INSERT OR UPDATE ON revoked_access_tokens
    FOR EACH ROW EXECUTE FUNCTION sidecar_announce_change('access_token_revoked', 'jti');

-- A revoked refresh token family (once per family and transaction).
CREATE TRIGGER refresh_tokens_announce
    AFTER UPDATE OF revoked ON refresh_tokens
    FOR EACH ROW WHEN (NEW.revoked AND NOT OLD.revoked)
    EXECUTE FUNCTION sidecar_announce_change('refresh_family_revoked', 'family_id');

-- Consumers and users, for the token endpoint's records and CORS origins.
CREATE TRIGGER consumers_announce
    AFTER INSERT OR UPDATE OR DELETE ON consumers
    FOR EACH ROW EXECUTE FUNCTION sidecar_announce_change('consumer', 'client_id');

CREATE TRIGGER users_announce
    AFTER INSERT OR UPDATE OR DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION sidecar_announce_change('user', 'username');

-- Signing keys, for the key rings (once per statement).
CREATE TRIGGER signing_keys_announce
    AFTER INSERT OR UPDATE OR DELETE ON signing_keys
    FOR EACH STATEMENT EXECUTE FUNCTION sidecar_announce_change('signing_keys');

-- The OAuth client role: registrations, and provider tokens when their
-- token or status changes (not when a refresh lease is taken or given back).
CREATE TRIGGER client_registrations_announce
    AFTER INSERT OR UPDATE OR DELETE ON client_registrations
    FOR EACH ROW EXECUTE FUNCTION sidecar_announce_change('client_registration', 'name');

CREATE TRIGGER provider_tokens_announce
    AFTER INSERT OR DELETE ON provider_tokens
    FOR EACH ROW EXECUTE FUNCTION sidecar_announce_change('provider_token', 'client', 'tag');

CREATE TRIGGER provider_tokens_announce_update
    AFTER UPDATE ON provider_tokens
    FOR EACH ROW WHEN (
        OLD.access_token IS DISTINCT FROM NEW.access_token
        OR OLD.status IS DISTINCT FROM NEW.status
        OR OLD.client IS DISTINCT FROM NEW.client
        OR OLD.tag IS DISTINCT FROM NEW.tag
    )
    EXECUTE FUNCTION sidecar_announce_change('provider_token', 'client', 'tag');
