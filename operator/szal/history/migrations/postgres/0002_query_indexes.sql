-- Szál history schema, version 2 (PostgreSQL): indexes for the queries.
--
-- WARNING: append-only. This file may already be applied in production
-- databases. Never edit, reorder or delete it; add 0003_*.sql instead.
--
-- Every listing is newest first with keyset pagination on (created_at, uid),
-- so each filter gets an index ending in (created_at DESC, uid DESC): the
-- planner walks it in order and stops after LIMIT rows, however deep the
-- page (see bench/history.py and docs/benchmarks.md).

CREATE INDEX runs_by_created   ON runs (created_at DESC, uid DESC);
CREATE INDEX runs_by_workflow  ON runs (workflow, created_at DESC, uid DESC);
CREATE INDEX runs_by_namespace ON runs (namespace, created_at DESC, uid DESC);
CREATE INDEX runs_by_phase     ON runs (phase, created_at DESC, uid DESC);
-- `szal show NAME`: the newest run of that name.
CREATE INDEX runs_by_name      ON runs (name, created_at DESC);
-- A run's events in id order (`szal show`, per-run streams).
CREATE INDEX events_by_run     ON events (run_uid, id);
