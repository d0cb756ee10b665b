-- The admin pages and API. A user's permissions (JSON array of names; the
-- `admin` column stays: it lets the user sign in to the admin pages), and
-- API tokens for automation, stored as SHA-256 hashes only. And the access
-- token issued with each refresh token, so that revoking a grant (from the
-- Grants page, /oauth/revoke or reuse detection) revokes it too.
ALTER TABLE users ADD COLUMN permissions TEXT NOT NULL DEFAULT '[]';
UPDATE users SET permissions = '["administer oauth"]' WHERE admin;

CREATE TABLE admin_tokens (
    id          TEXT PRIMARY KEY NOT NULL,
    label       TEXT NOT NULL,
    token_hash  TEXT NOT NULL UNIQUE,
    permissions TEXT NOT NULL,
    created_at  INTEGER NOT NULL
) STRICT;

ALTER TABLE refresh_tokens ADD COLUMN access_jti TEXT;
ALTER TABLE refresh_tokens ADD COLUMN access_exp INTEGER;
