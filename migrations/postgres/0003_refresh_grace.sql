-- The refresh grace window (`server.refresh_reuse_grace`); see the SQLite
-- migration of the same number for what a row means. `sealed` is the
-- rotation's response encrypted under a key derived from the rotated token.
CREATE TABLE refresh_grace (
    token_hash     TEXT PRIMARY KEY NOT NULL, -- the rotated token
    successor_hash TEXT NOT NULL,             -- the token the rotation issued
    sealed         BYTEA NOT NULL,
    expires_at     BIGINT NOT NULL
);
CREATE INDEX refresh_grace_by_successor ON refresh_grace (successor_hash);
CREATE INDEX refresh_grace_by_expiry ON refresh_grace (expires_at);
