-- Szál history schema, version 1 (PostgreSQL).
--
-- WARNING: append-only. This file may already be applied in production
-- databases (the operator mirrors every run here). Never edit, reorder or
-- delete it: a change here is silently skipped where version 1 is applied and
-- makes fresh databases differ from upgraded ones. Add 0003_*.sql instead.
--
-- The same logical schema as migrations/sqlite/0001_initial.sql: normalized
-- rows, never one JSON blob per run. Times are timestamptz (microseconds);
-- the store converts to and from float epoch seconds.

CREATE TABLE workflows (
    namespace   text        NOT NULL,
    name        text        NOT NULL,
    spec_hash   text        NOT NULL,
    version     integer     NOT NULL,
    spec        jsonb       NOT NULL,
    stored_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (namespace, name, spec_hash)
);

CREATE TABLE runs (
    uid              text        PRIMARY KEY,
    name             text        NOT NULL,
    namespace        text        NOT NULL,
    workflow         text        NOT NULL,
    workflow_version integer     NOT NULL,
    spec_hash        text        NOT NULL,
    params           jsonb       NOT NULL DEFAULT '{}'::jsonb,
    phase            text        NOT NULL,
    created_at       timestamptz NOT NULL,
    started_at       timestamptz,
    finished_at      timestamptz,
    message          text,
    progress         text,
    updated_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE attempts (
    run_uid      text        NOT NULL REFERENCES runs (uid) ON DELETE CASCADE,
    step         text        NOT NULL,
    attempt      integer     NOT NULL,
    rollback     boolean     NOT NULL,
    phase        text        NOT NULL,
    started_at   timestamptz,
    finished_at  timestamptz,
    exit_code    integer,
    message      text,
    outputs      jsonb,
    node         text,
    -- First-insert order: the tie-break for "start order".
    seq          bigint      GENERATED ALWAYS AS IDENTITY,
    PRIMARY KEY (run_uid, step, attempt, rollback)
);

-- The ordered event log. ``id`` only grows: live streams resume from it.
-- step is NULL for run-level events; NULLS NOT DISTINCT makes the natural
-- key unique for them too.
CREATE TABLE events (
    id        bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_uid   text        NOT NULL REFERENCES runs (uid) ON DELETE CASCADE,
    step      text,
    attempt   integer     NOT NULL,
    rollback  boolean     NOT NULL,
    old_phase text,
    new_phase text        NOT NULL,
    event     text        NOT NULL,
    at        timestamptz NOT NULL,
    message   text        NOT NULL DEFAULT '',
    CONSTRAINT events_natural_key
        UNIQUE NULLS NOT DISTINCT (run_uid, step, attempt, rollback, new_phase, at)
);

CREATE TABLE logs (
    run_uid  text    NOT NULL REFERENCES runs (uid) ON DELETE CASCADE,
    step     text    NOT NULL,
    attempt  integer NOT NULL,
    rollback boolean NOT NULL,
    chunk    bigint  GENERATED ALWAYS AS IDENTITY,
    text     text    NOT NULL,
    PRIMARY KEY (run_uid, step, attempt, rollback, chunk)
);
