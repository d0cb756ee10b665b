-- OpenID Connect logout. Per consumer: where it may send the browser after
-- RP-initiated logout (a JSON array of exact URIs) and where it takes
-- back-channel logout tokens. A code or refresh token carries the `sid` of
-- the sign-in session it came from, for the ID tokens issued with it.
ALTER TABLE consumers ADD COLUMN post_logout_redirect_uris TEXT NOT NULL DEFAULT '[]';
ALTER TABLE consumers ADD COLUMN backchannel_logout_uri TEXT;
ALTER TABLE auth_codes ADD COLUMN sid TEXT;
ALTER TABLE refresh_tokens ADD COLUMN sid TEXT;
-- Logout ends the grants made in a session.
CREATE INDEX refresh_tokens_by_sid ON refresh_tokens (sid);

-- Which consumer got an ID token in which session, until the session would
-- end anyway (`expires_at`).
CREATE TABLE session_consumers (
    sid        TEXT NOT NULL,
    client_id  TEXT NOT NULL,
    username   TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (sid, client_id)
) STRICT;
CREATE INDEX session_consumers_by_username ON session_consumers (username);
CREATE INDEX session_consumers_by_expiry ON session_consumers (expires_at);

-- Back-channel logout tokens still to deliver: one per ended session and
-- consumer, tried again at `next_attempt` until delivered or given up.
CREATE TABLE backchannel_logouts (
    sid          TEXT NOT NULL,
    client_id    TEXT NOT NULL,
    username     TEXT NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_attempt INTEGER NOT NULL,
    PRIMARY KEY (sid, client_id)
) STRICT;
CREATE INDEX backchannel_logouts_by_next_attempt ON backchannel_logouts (next_attempt);
