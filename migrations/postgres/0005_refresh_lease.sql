-- Who refreshes a provider token now: a lease taken in the store, so that of
-- several processes sharing it one refreshes at a time (a provider that
-- rotates refresh tokens would otherwise see the old one used twice). A
-- lease ends when released or at `lease_until` (Unix seconds), so a process
-- that died holding it does not block the token for long.
ALTER TABLE provider_tokens ADD COLUMN lease_holder TEXT;
ALTER TABLE provider_tokens ADD COLUMN lease_until BIGINT;
