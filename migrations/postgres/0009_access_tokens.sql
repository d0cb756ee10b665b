-- Every access token issued, until it expires: the consumer it was issued
-- to and the user it acts for. Deleting the consumer, or disabling the user
-- or resetting their password, puts the jtis of its live tokens on the
-- revocation list (revoked_access_tokens), which the gate reads. Later
-- token kinds (sender-constrained, exchanged) record theirs here too.
CREATE TABLE access_tokens (
    jti       TEXT PRIMARY KEY NOT NULL,
    client_id TEXT NOT NULL,
    username  TEXT,
    exp       BIGINT NOT NULL
);
CREATE INDEX access_tokens_by_client ON access_tokens (client_id);
CREATE INDEX access_tokens_by_username ON access_tokens (username);
CREATE INDEX access_tokens_by_exp ON access_tokens (exp);
