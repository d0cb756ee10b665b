-- Version 7 of the PostgreSQL store adds the triggers that announce changes
-- to the other replicas sharing it (LISTEN/NOTIFY). A SQLite store is served
-- by one process, so there is nothing to announce: this migration changes
-- nothing and keeps the versions of the two stores in step.
SELECT 1;
