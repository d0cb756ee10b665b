-- The admin pages and API. A user's permissions (JSON array of names; the
-- `admin` column stays: it lets the user sign in to the admin pages), and
-- API tokens for automation, stored as SHA-256 hashes only.
ALTER TABLE users ADD COLUMN permissions TEXT NOT NULL DEFAULT '[]';
UPDATE users SET permissions = '["administer oauth"]' WHERE admin;

CREATE TABLE admin_tokens (
    id          TEXT PRIMARY KEY NOT NULL,
    label       TEXT NOT NULL,
    token_hash  TEXT NOT NULL UNIQUE,
    permissions TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
