-- The refresh grace window (`server.refresh_reuse_grace`): for a short time
-- after a refresh token is rotated, the rotation's response is kept here so
-- that a retry with the same token (the response was lost) gets the same new
-- pair instead of revoking the family.
--
-- `sealed` is the response encrypted (ChaCha20-Poly1305) under a key derived
-- from the rotated refresh token itself, which the store never holds in
-- clear: only that token's holder can open it. A row lives until
-- `expires_at`, and goes earlier when its successor is rotated or its family
-- revoked.
CREATE TABLE refresh_grace (
    token_hash     TEXT PRIMARY KEY NOT NULL, -- the rotated token
    successor_hash TEXT NOT NULL,             -- the token the rotation issued
    sealed         BLOB NOT NULL,
    expires_at     INTEGER NOT NULL
) STRICT;
CREATE INDEX refresh_grace_by_successor ON refresh_grace (successor_hash);
CREATE INDEX refresh_grace_by_expiry ON refresh_grace (expires_at);
