"""The batch lane's tables and their migrations (component `batch`).

Files, jobs, lines and provider batches live in the same store as the ledger (SQLite or
PostgreSQL), so that any replica or process that can read the ledger can pick up a job,
and a job's state survives a crash. Money is integer picodollars, as in the ledger.
"""

from __future__ import annotations

from thrifty.migrations import Dialect, Migration

__all__ = ["MIGRATIONS"]


def _initial(dialect: Dialect) -> list[str]:
    big = "INTEGER" if dialect == "sqlite" else "BIGINT"
    real = "REAL" if dialect == "sqlite" else "DOUBLE PRECISION"
    return [
        f"""CREATE TABLE IF NOT EXISTS batch_files (
            id TEXT PRIMARY KEY,
            purpose TEXT NOT NULL,
            filename TEXT NOT NULL,
            bytes {big} NOT NULL,
            created_at {real} NOT NULL,
            content TEXT NOT NULL
        )""",
        f"""CREATE TABLE IF NOT EXISTS batch_jobs (
            id TEXT PRIMARY KEY,
            protocol TEXT NOT NULL,
            endpoint TEXT NOT NULL,
            input_file_id TEXT,
            status TEXT NOT NULL,
            target TEXT NOT NULL,
            created_at {real} NOT NULL,
            deadline_at {real} NOT NULL,
            started_at {real},
            finished_at {real},
            cancel_requested INTEGER NOT NULL DEFAULT 0,
            key_name TEXT,
            tenant TEXT NOT NULL,
            metadata TEXT NOT NULL,
            lines INTEGER NOT NULL,
            reserved_pico {big} NOT NULL DEFAULT 0,
            output_file_id TEXT,
            error_file_id TEXT
        )""",
        f"""CREATE TABLE IF NOT EXISTS batch_lines (
            job_id TEXT NOT NULL,
            idx INTEGER NOT NULL,
            custom_id TEXT NOT NULL,
            body TEXT NOT NULL,
            state TEXT NOT NULL,
            lease_owner TEXT,
            lease_until {real},
            attempts INTEGER NOT NULL DEFAULT 0,
            answered_by TEXT,
            executed_where TEXT,
            served_model TEXT,
            status INTEGER,
            result TEXT,
            error TEXT,
            cost_pico {big} NOT NULL DEFAULT 0,
            list_pico {big} NOT NULL DEFAULT 0,
            ledger TEXT,
            provisional TEXT,
            billed INTEGER NOT NULL DEFAULT 0,
            settled_at {real},
            PRIMARY KEY (job_id, idx),
            UNIQUE (job_id, custom_id)
        )""",
        "CREATE INDEX IF NOT EXISTS batch_lines_state ON batch_lines (job_id, state)",
        f"""CREATE TABLE IF NOT EXISTS batch_provider (
            job_id TEXT NOT NULL,
            chunk INTEGER NOT NULL,
            model TEXT NOT NULL,
            tag TEXT NOT NULL,
            provider_batch_id TEXT,
            state TEXT NOT NULL,
            line_idx TEXT NOT NULL,
            created_at {real} NOT NULL,
            PRIMARY KEY (job_id, chunk)
        )""",
    ]


#: Oldest first; add steps at the end, never edit one that has shipped.
MIGRATIONS = (Migration("batch_0001_initial", _initial),)
