-- The authorization server's state. Times are Unix seconds; booleans are
-- 0/1; lists of strings are JSON arrays. Secrets, codes, refresh tokens and
-- session ids appear only as hashes (signing keys excepted).

-- Server-wide values created once (keys for hashing, cookies...), as bytes.
CREATE TABLE sidecar_secrets (
    key   TEXT PRIMARY KEY NOT NULL,
    value BLOB NOT NULL
) STRICT;

CREATE TABLE consumers (
    client_id              TEXT PRIMARY KEY NOT NULL,
    label                  TEXT NOT NULL,
    secret_hash            TEXT,
    confidential           INTEGER NOT NULL,
    user_id                TEXT,
    redirect_uris          TEXT NOT NULL,
    allowed_origins        TEXT NOT NULL,
    third_party            INTEGER NOT NULL,
    scopes                 TEXT NOT NULL,
    grant_types            TEXT NOT NULL,
    access_token_ttl       INTEGER,
    refresh_token_ttl      INTEGER,
    grant_user_access      INTEGER NOT NULL,
    limit_requested_access INTEGER NOT NULL,
    limit_user_access      INTEGER NOT NULL,
    managed_by_config      INTEGER NOT NULL
) STRICT;

CREATE TABLE users (
    username      TEXT PRIMARY KEY NOT NULL,
    password_hash TEXT NOT NULL,
    roles         TEXT NOT NULL,
    admin         INTEGER NOT NULL,
    disabled      INTEGER NOT NULL
) STRICT;

CREATE TABLE signing_keys (
    kid         TEXT PRIMARY KEY NOT NULL,
    alg         TEXT NOT NULL,
    private_der BLOB NOT NULL,
    created_at  INTEGER NOT NULL
) STRICT;

-- `used` flips once, on the first redemption; `issued_*` record what that
-- redemption issued (`issued_access` is a JSON array of [jti, exp] pairs), and
-- `reuse_seen` that a later redemption was attempted.
CREATE TABLE auth_codes (
    code_hash        TEXT PRIMARY KEY NOT NULL,
    client_id        TEXT NOT NULL,
    username         TEXT NOT NULL,
    redirect_uri     TEXT NOT NULL,
    scope            TEXT NOT NULL,
    code_challenge   TEXT,
    nonce            TEXT,
    auth_time        INTEGER NOT NULL,
    expires_at       INTEGER NOT NULL,
    used             INTEGER NOT NULL DEFAULT 0,
    reuse_seen       INTEGER NOT NULL DEFAULT 0,
    issued_family_id TEXT,
    issued_access    TEXT NOT NULL DEFAULT '[]'
) STRICT;
CREATE INDEX auth_codes_by_client ON auth_codes (client_id);
CREATE INDEX auth_codes_by_expiry ON auth_codes (expires_at);

-- A token is current while `rotated_at` is NULL and `revoked` is 0.
CREATE TABLE refresh_tokens (
    token_hash TEXT PRIMARY KEY NOT NULL,
    family_id  TEXT NOT NULL,
    client_id  TEXT NOT NULL,
    username   TEXT,
    scope      TEXT NOT NULL,
    auth_time  INTEGER,
    expires_at INTEGER NOT NULL,
    rotated_at INTEGER,
    revoked    INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE INDEX refresh_tokens_by_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_by_client ON refresh_tokens (client_id);
CREATE INDEX refresh_tokens_by_expiry ON refresh_tokens (expires_at);

CREATE TABLE login_sessions (
    id_hash    TEXT PRIMARY KEY NOT NULL,
    username   TEXT NOT NULL,
    auth_time  INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
) STRICT;
CREATE INDEX login_sessions_by_expiry ON login_sessions (expires_at);

-- Revoked access tokens, kept until the token would have expired anyway.
CREATE TABLE revoked_access_tokens (
    jti TEXT PRIMARY KEY NOT NULL,
    exp INTEGER NOT NULL
) STRICT;
CREATE INDEX revoked_access_tokens_by_exp ON revoked_access_tokens (exp);
