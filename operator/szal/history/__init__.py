"""Run history: the ExecutionStore interface and its SQLite and Postgres stores."""
