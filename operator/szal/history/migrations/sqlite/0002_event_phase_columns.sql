-- Szál history schema, version 2 (SQLite): the event log's phase columns get
-- the names they have in Postgres (old_phase, new_phase), so both stores'
-- event tables have the same columns and one query text reads either.
--
-- Append-only: this file may already be applied in users' databases.
-- Never edit it; add 0003_*.sql instead.
--
-- RENAME COLUMN (SQLite 3.25+) also rewrites the UNIQUE constraint and the
-- index that name the column; no row is copied.

ALTER TABLE events RENAME COLUMN old TO old_phase;
ALTER TABLE events RENAME COLUMN new TO new_phase;
