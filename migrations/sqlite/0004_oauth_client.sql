-- The OAuth client role. Times are Unix seconds; lists are JSON arrays.
-- Client secrets, access and refresh tokens, raw provider responses and PKCE
-- verifiers are stored only encrypted (XChaCha20-Poly1305 with the key of
-- client.token_key; nonce prepended), never in clear.

-- Client registrations made with the CLI (those in the file are not stored).
CREATE TABLE client_registrations (
    name           TEXT PRIMARY KEY NOT NULL,
    provider       TEXT NOT NULL,
    label          TEXT NOT NULL,
    client_id      TEXT NOT NULL,
    client_secret  BLOB,
    tenant         TEXT,
    scopes         TEXT,
    created_at     INTEGER NOT NULL
) STRICT;

-- Tokens from providers; one per client and tag.
CREATE TABLE provider_tokens (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    client        TEXT NOT NULL,
    tag           TEXT NOT NULL,
    grant_type    TEXT NOT NULL,
    scopes        TEXT NOT NULL,
    token_type    TEXT NOT NULL,
    access_token  BLOB NOT NULL,
    refresh_token BLOB,
    expires_at    INTEGER,
    owner_id      TEXT,
    owner_name    TEXT,
    owner_email   TEXT,
    raw           BLOB NOT NULL,
    status        TEXT NOT NULL,
    last_error    TEXT,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    UNIQUE (client, tag)
) STRICT;
CREATE INDEX provider_tokens_by_expiry ON provider_tokens (expires_at);

-- Authorizations started at /oauth/start, waiting for /oauth/return.
CREATE TABLE client_states (
    state_hash   TEXT PRIMARY KEY NOT NULL,
    client       TEXT NOT NULL,
    browser_hash TEXT NOT NULL,
    verifier     BLOB NOT NULL,
    nonce        TEXT NOT NULL,
    tag          TEXT,
    scopes       TEXT NOT NULL,
    return_to    TEXT,
    expires_at   INTEGER NOT NULL
) STRICT;
CREATE INDEX client_states_by_expiry ON client_states (expires_at);
