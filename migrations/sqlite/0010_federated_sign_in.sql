-- Version 10: sign-in through outside OpenID providers (server.login).
-- A local user signed in by a provider is linked to the provider's name
-- and the ID token's `sub`; role_sources says which rule gave each of the
-- user's roles at the last sign-in (JSON: [{"role": ..., "source": ...}]).
CREATE TABLE federated_identities (
    provider     TEXT NOT NULL,
    subject      TEXT NOT NULL,
    username     TEXT NOT NULL,
    email        TEXT,
    role_sources TEXT NOT NULL DEFAULT '[]',
    last_sign_in INTEGER NOT NULL,
    PRIMARY KEY (provider, subject)
) STRICT;
CREATE INDEX federated_identities_by_username ON federated_identities (username);
-- A sign-in started at a provider, until its return (one use): the hash of
-- the state, the hash of the browser's binding cookie, and what the return
-- needs (JSON: provider, PKCE verifier, nonce, session kind, where to go).
CREATE TABLE login_states (
    state_hash   TEXT PRIMARY KEY NOT NULL,
    browser_hash TEXT NOT NULL,
    data         TEXT NOT NULL,
    expires_at   INTEGER NOT NULL
) STRICT;
CREATE INDEX login_states_by_expiry ON login_states (expires_at);
