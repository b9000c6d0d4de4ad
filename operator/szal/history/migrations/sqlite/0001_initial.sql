-- Szál history schema, version 1 (SQLite).
-- Append-only: this file may already be applied in users' databases.
-- Never edit it; add 0002_*.sql instead.

CREATE TABLE workflows (
    namespace   TEXT    NOT NULL,
    name        TEXT    NOT NULL,
    spec_hash   TEXT    NOT NULL,
    version     INTEGER NOT NULL,
    spec        TEXT    NOT NULL,          -- JSON
    stored_at   REAL    NOT NULL,
    PRIMARY KEY (namespace, name, spec_hash)
);

CREATE TABLE runs (
    uid              TEXT    PRIMARY KEY,
    name             TEXT    NOT NULL,
    namespace        TEXT    NOT NULL,
    workflow         TEXT    NOT NULL,
    workflow_version INTEGER NOT NULL,
    spec_hash        TEXT    NOT NULL,
    params           TEXT    NOT NULL,     -- JSON object
    phase            TEXT    NOT NULL,
    created_at       REAL    NOT NULL,
    started_at       REAL,
    finished_at      REAL,
    message          TEXT,
    progress         TEXT,
    -- The process that last wrote this run, to tell a live run from one
    -- whose runner was killed (see SqliteStore: "interrupted").
    runner_host      TEXT,
    runner_pid       INTEGER,
    runner_start     TEXT
);
CREATE INDEX runs_by_created  ON runs (created_at DESC, uid DESC);
CREATE INDEX runs_by_workflow ON runs (namespace, workflow, created_at DESC);
CREATE INDEX runs_by_name     ON runs (namespace, name, created_at DESC);

CREATE TABLE attempts (
    run_uid      TEXT    NOT NULL REFERENCES runs (uid) ON DELETE CASCADE,
    step         TEXT    NOT NULL,
    attempt      INTEGER NOT NULL,
    rollback     INTEGER NOT NULL,         -- 0 or 1
    phase        TEXT    NOT NULL,
    started_at   REAL,
    finished_at  REAL,
    exit_code    INTEGER,
    message      TEXT,
    outputs      TEXT,                     -- JSON object
    node         TEXT,
    seq          INTEGER NOT NULL,         -- insertion order, for "start order"
    PRIMARY KEY (run_uid, step, attempt, rollback)
);

CREATE TABLE events (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    run_uid  TEXT    NOT NULL REFERENCES runs (uid) ON DELETE CASCADE,
    step     TEXT    NOT NULL,             -- '' for the run itself
    attempt  INTEGER NOT NULL,
    rollback INTEGER NOT NULL,
    old      TEXT,
    new      TEXT    NOT NULL,
    event    TEXT    NOT NULL,
    at       REAL    NOT NULL,
    message  TEXT    NOT NULL,
    UNIQUE (run_uid, step, attempt, rollback, new, at)
);
CREATE INDEX events_by_run ON events (run_uid, id);

CREATE TABLE logs (
    run_uid  TEXT    NOT NULL REFERENCES runs (uid) ON DELETE CASCADE,
    step     TEXT    NOT NULL,
    attempt  INTEGER NOT NULL,
    rollback INTEGER NOT NULL,
    chunk    INTEGER NOT NULL,
    text     TEXT    NOT NULL,
    PRIMARY KEY (run_uid, step, attempt, rollback, chunk)
);
