"""The semantic cache's vector index in PostgreSQL with pgvector, shared by every replica.

The same contract as `InProcessIndex` (partitions by tenant and namespace, TTL, delete), so
the semantic cache and its verifier work unchanged on top of it; what changes is that an
answer cached through one replica is found by every other. Vectors live in one table with an
HNSW index (cosine); a search filters by tenant and namespace and uses pgvector's iterative
index scan, so a filter that rejects most of the graph's neighbours still returns the k
nearest entries of the partition. Expired entries are skipped at search and deleted on
writes now and then.

Connections come from one small pool per process (`psycopg_pool`), so a replica's use of the
database is bounded and constant whatever the load.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson

from thrifty.cache.index import Clock, Entry, Hit
from thrifty.errors import ConfigError
from thrifty.migrations import Migration, migrate

__all__ = ["PGVECTOR_MIGRATIONS", "PgVectorIndex"]

log = logging.getLogger(__name__)


def _schema(dim: int) -> Migration:
    def statements(dialect: str) -> list[str]:
        return [
            "CREATE EXTENSION IF NOT EXISTS vector",
            f"""CREATE TABLE IF NOT EXISTS semantic_entries (
                id BIGSERIAL PRIMARY KEY,
                tenant TEXT NOT NULL,
                namespace TEXT NOT NULL,
                question TEXT NOT NULL,
                embedding vector({dim}) NOT NULL,
                payload JSONB NOT NULL,
                created DOUBLE PRECISION NOT NULL,
                expires DOUBLE PRECISION
            )""",
            "CREATE INDEX IF NOT EXISTS semantic_entries_partition ON semantic_entries (tenant, namespace, id)",
            "CREATE INDEX IF NOT EXISTS semantic_entries_hnsw ON semantic_entries "
            "USING hnsw (embedding vector_cosine_ops) WITH (m = 16, ef_construction = 128)",
            "CREATE INDEX IF NOT EXISTS semantic_entries_expires ON semantic_entries (expires) WHERE expires IS NOT NULL",
        ]

    return Migration(f"semantic_entries_0001_initial_{dim}", statements)


#: The table's schema history, for the 384-dimensional MiniLM the semantic cache ships with.
PGVECTOR_MIGRATIONS = (_schema(384),)


_SEARCH = (
    "SELECT id, question, payload, created, expires, embedding::text, embedding <=> %s::vector AS distance "
    "FROM semantic_entries WHERE tenant = %s AND namespace = %s AND (expires IS NULL OR expires > %s) "
    "ORDER BY embedding <=> %s::vector LIMIT %s"
)


def _literal(vector: np.ndarray) -> str:
    return "[" + ",".join(f"{x:.7g}" for x in np.asarray(vector, dtype=np.float32).ravel()) + "]"


class PgVectorIndex:
    """Vectors by (tenant, namespace) in PostgreSQL + pgvector. Thread-safe, blocking (the
    semantic cache calls it from worker threads)."""

    def __init__(
        self,
        url: str,
        dim: int = 384,
        max_entries: int = 100_000,
        clock: Clock = time.time,
        pool_size: int = 4,
        ef_search: int = 64,
    ) -> None:
        import psycopg
        from psycopg_pool import ConnectionPool

        self.dim = dim
        self.max_entries = max_entries
        self.clock = clock
        self._writes = 0
        steps = PGVECTOR_MIGRATIONS if dim == 384 else (_schema(dim),)
        try:
            with psycopg.connect(url, autocommit=False, connect_timeout=10) as conn:
                migrate(conn, "postgresql", "semantic_index", steps, where=url.rpartition("@")[2])
        except psycopg.errors.FeatureNotSupported as exc:  # pragma: no cover - depends on the server
            raise ConfigError(f"the semantic cache's index needs the pgvector extension on {url.rpartition('@')[2]}: {exc}") from None
        except psycopg.Error as exc:
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            if "vector" in msg and ("extension" in msg or "control file" in msg):
                raise ConfigError(
                    f"the semantic cache's index needs the pgvector extension on {url.rpartition('@')[2]} ({msg}); "
                    "install it there, or set semantic_cache.index: memory"
                ) from None
            raise

        def configure(conn: Any) -> None:
            conn.execute(f"SET hnsw.ef_search = {int(ef_search)}")
            conn.execute("SET hnsw.iterative_scan = relaxed_order")
            conn.commit()

        self._pool = ConnectionPool(url, min_size=1, max_size=pool_size, configure=configure,
                                    kwargs={"autocommit": False}, open=True)

    def close(self) -> None:
        self._pool.close()

    def __len__(self) -> int:
        with self._pool.connection() as conn:
            return int(conn.execute("SELECT count(*) FROM semantic_entries").fetchone()[0])

    def has(self, tenant: str, namespace: str) -> bool:
        """Whether the tenant has any live entry under the namespace."""
        with self._pool.connection() as conn:
            row = conn.execute(
                "SELECT 1 FROM semantic_entries WHERE tenant = %s AND namespace = %s "
                "AND (expires IS NULL OR expires > %s) LIMIT 1",
                (tenant, namespace, self.clock()),
            ).fetchone()
        return row is not None

    def add(
        self,
        tenant: str,
        namespace: str,
        question: str,
        vector: np.ndarray,
        payload: dict[str, Any],
        ttl: float | None = None,
    ) -> Entry:
        now = self.clock()
        vec = np.asarray(vector, dtype=np.float32).reshape(self.dim)
        expires = None if ttl is None else now + ttl
        with self._pool.connection() as conn:
            row = conn.execute(
                "INSERT INTO semantic_entries (tenant, namespace, question, embedding, payload, created, expires) "
                "VALUES (%s, %s, %s, %s::vector, %s::jsonb, %s, %s) RETURNING id",
                (tenant, namespace, question, _literal(vec), orjson.dumps(payload).decode(), now, expires),
            ).fetchone()
            self._trim(conn, tenant, namespace)
        self._writes += 1
        if self._writes % 1024 == 0:
            self.sweep()
        assert row is not None
        return Entry(int(row[0]), tenant, namespace, question, vec, payload, now, expires)

    def add_many(
        self,
        tenant: str,
        namespace: str,
        questions: Sequence[str],
        vectors: np.ndarray,
        payloads: Sequence[dict[str, Any]],
        ttl: float | None = None,
        threads: int = 0,
    ) -> None:
        """Bulk insert (a warm start, a benchmark) with COPY."""
        now = self.clock()
        expires = None if ttl is None else now + ttl
        vecs = np.asarray(vectors, dtype=np.float32).reshape(len(questions), self.dim)
        with self._pool.connection() as conn:
            with conn.cursor().copy(
                "COPY semantic_entries (tenant, namespace, question, embedding, payload, created, expires) FROM STDIN"
            ) as copy:
                for q, v, p in zip(questions, vecs, payloads, strict=True):
                    copy.write_row((tenant, namespace, q, _literal(v), orjson.dumps(p).decode(), now, expires))
            self._trim(conn, tenant, namespace)

    def _trim(self, conn: Any, tenant: str, namespace: str) -> None:
        """The oldest entries of a partition give way past `max_entries`."""
        conn.execute(
            "DELETE FROM semantic_entries WHERE id IN (SELECT id FROM semantic_entries "
            "WHERE tenant = %s AND namespace = %s ORDER BY id DESC OFFSET %s)",
            (tenant, namespace, self.max_entries),
        )
        conn.commit()

    def search(self, tenant: str, namespace: str, vector: np.ndarray, k: int = 5, min_score: float = 0.0) -> list[Hit]:
        """The `k` most similar live entries of this tenant and namespace, best first."""
        literal = _literal(np.asarray(vector, dtype=np.float32).reshape(self.dim))
        params = (literal, tenant, namespace, self.clock(), literal, k)
        with self._pool.connection() as conn:
            rows = conn.execute(_SEARCH, params).fetchall()
            if len(rows) < k:
                # Fewer than k: a small partition, where the graph's approximate walk may miss
                # entries. Scan the partition exactly (it is small, through its own index).
                conn.execute("SET LOCAL enable_indexscan = off")
                conn.execute("SET LOCAL enable_bitmapscan = on")
                rows = conn.execute(_SEARCH, params).fetchall()
            conn.commit()
        hits = []
        for key, question, payload, created, expires, embedding, distance in rows:
            score = 1.0 - float(distance)
            if score >= min_score:
                data = payload if isinstance(payload, dict) else orjson.loads(payload)
                vec = np.asarray(orjson.loads(embedding), dtype=np.float32)  # pgvector's text form is a JSON array
                entry = Entry(int(key), tenant, namespace, question, vec, data, created, expires)
                hits.append(Hit(entry, score))
        return hits

    def delete(self, tenant: str, namespace: str | None = None, key: int | None = None) -> int:
        """Remove one entry (`key`), a namespace, or everything of `tenant`; returns how many."""
        sql = "DELETE FROM semantic_entries WHERE tenant = %s"
        params: list[Any] = [tenant]
        if namespace is not None:
            sql += " AND namespace = %s"
            params.append(namespace)
        if key is not None:
            sql += " AND id = %s"
            params.append(key)
        with self._pool.connection() as conn:
            n = conn.execute(sql, params).rowcount
            conn.commit()
        return int(n)

    def clear(self) -> int:
        with self._pool.connection() as conn:
            n = conn.execute("DELETE FROM semantic_entries").rowcount
            conn.commit()
        return int(n)

    def sweep(self) -> int:
        """Delete every expired entry now; returns how many."""
        with self._pool.connection() as conn:
            n = conn.execute("DELETE FROM semantic_entries WHERE expires <= %s", (self.clock(),)).rowcount
            conn.commit()
        return int(n)
