-- Version 8 keeps the sign-in sessions of the admin pages and of /oauth/
-- apart: each session records the sign-in that made it (`admin` or
-- `oauth`), and counts only there, so one cookie's value is refused as the
-- other's. Sessions made before cannot be told apart: they end, and their
-- users sign in again.
DELETE FROM login_sessions;
ALTER TABLE login_sessions ADD COLUMN kind TEXT NOT NULL DEFAULT '';
