"""The label store as one SQLite file, safe to share between processes.

Each process (a Ray worker, the labeling server, a notebook) opens its own
:class:`SQLiteLabelStore` on the same file.  The file is in WAL journal mode,
so readers never block the one writer; writers take the write lock up front
(``BEGIN IMMEDIATE``) and queue behind each other for up to
:data:`BUSY_TIMEOUT_S`.  WAL needs a local file system: SQLite's locks do not
work over NFS and similar network shares, so keep the raycat home on a local
disk (or a cluster's shared block volume), not on a network mount.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from raycat.errors import LabelStoreError
from raycat.labels.events import LabelEvent, Source
from raycat.labels.store import (
    COUNT_KEYS,
    CURRENT_COLUMNS,
    EVENT_COLUMNS,
    LabelStore,
)
from raycat.taxonomy import Taxonomy

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
"""The layout of the tables below; bump it (and migrate) when they change."""

# Writers wait for each other instead of failing: writing a million rule labels
# holds the lock for several seconds, and the workers of an active-learning
# iteration may all write at its end, so a minute leaves ample room.
BUSY_TIMEOUT_S = 60.0

# Rows per executemany call: bounds the tuples built at once, while the whole
# write stays one transaction.
CHUNK_ROWS = 50_000

_SCHEMA = (
    """
    CREATE TABLE raycat_schema (
        component TEXT PRIMARY KEY,
        version INTEGER NOT NULL
    )
    """,
    """
    CREATE TABLE labels (
        labeler TEXT NOT NULL,
        product_id TEXT NOT NULL,
        category TEXT NOT NULL,
        iteration INTEGER NOT NULL,
        value INTEGER NOT NULL CHECK (value IN (0, 1)),
        source TEXT NOT NULL,
        strategy TEXT,
        time REAL NOT NULL,
        derived_from TEXT,
        seq INTEGER NOT NULL,  -- write order: ties of `time` go to the later write
        PRIMARY KEY (labeler, product_id, category, iteration)
    )
    """,
    # Leading with product_id serves lookups by product, and the full key is the
    # partition of current().
    "CREATE INDEX labels_product ON labels (product_id, category, source)",
    "CREATE INDEX labels_source ON labels (source)",
    # The last `seq` handed out; a counter row is cheaper than MAX(seq) over
    # millions of rows on every write.
    "CREATE TABLE label_counter (last_seq INTEGER NOT NULL)",
    "INSERT INTO label_counter (last_seq) VALUES (0)",
    "INSERT INTO raycat_schema (component, version) "
    f"VALUES ('labels', {SCHEMA_VERSION})",
)

_UPSERT = """
    INSERT INTO labels (
        labeler, product_id, category, iteration,
        value, source, strategy, time, derived_from, seq
    ) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (labeler, product_id, category, iteration) DO UPDATE SET
        value = excluded.value,
        source = excluded.source,
        strategy = excluded.strategy,
        time = excluded.time,
        derived_from = excluded.derived_from,
        seq = excluded.seq
"""

_FIX_PATH = (
    "move the file away (raycat then creates a fresh store there) or point the "
    "raycat home at another directory"
)


class SQLiteLabelStore(LabelStore):
    """A :class:`LabelStore` in the SQLite file ``path``, created if missing.

    Raises :class:`LabelStoreError` when the file cannot be opened or is not a
    raycat label store.  A store belongs to the process (and thread) that opened
    it; pickling one (for a Ray task, say) reopens the file on the other side.
    """

    def __init__(self, path: str | Path, taxonomy: Taxonomy):
        super().__init__(taxonomy)
        self.path = Path(path)
        self._conn: sqlite3.Connection | None = self._open()
        self._pid = os.getpid()

    def __repr__(self) -> str:
        return f"SQLiteLabelStore({str(self.path)!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.path, self.taxonomy))

    # -- connection -------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        try:
            # isolation_level=None: no implicit transactions; write() opens its
            # own with BEGIN IMMEDIATE.
            conn = sqlite3.connect(
                self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None
            )
        except sqlite3.Error as exc:
            raise self._open_error(exc) from exc
        try:
            self._enable_wal(conn)
            self._ensure_schema(conn)
        except sqlite3.Error as exc:
            conn.close()
            raise self._open_error(exc) from exc
        except BaseException:
            conn.close()
            raise
        return conn

    def _open_error(self, exc: sqlite3.Error) -> LabelStoreError:
        if getattr(exc, "sqlite_errorname", "") == "SQLITE_NOTADB":
            return LabelStoreError(
                f"{str(self.path)!r} is not a raycat label store: SQLite cannot "
                f"read it ({exc}); {_FIX_PATH}"
            )
        return LabelStoreError(
            f"cannot open the label store {str(self.path)!r}: {exc}; check that "
            "its directory exists and is writable (SQLite also writes "
            f"{self.path.name}-wal and {self.path.name}-shm next to it)"
        )

    def _enable_wal(self, conn: sqlite3.Connection) -> None:
        (mode,) = conn.execute("PRAGMA journal_mode").fetchone()
        if mode == "wal":
            return
        # Switching to WAL needs a moment of exclusive access, which processes
        # opening a fresh store together contend for; retry within the timeout.
        deadline = time.monotonic() + BUSY_TIMEOUT_S
        while True:
            try:
                (mode,) = conn.execute("PRAGMA journal_mode = WAL").fetchone()
                break
            except sqlite3.OperationalError as exc:
                busy = getattr(exc, "sqlite_errorname", "").startswith("SQLITE_BUSY")
                if not busy or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        if mode != "wal":
            logger.warning(
                "label store %s: SQLite kept journal mode %r instead of WAL; "
                "concurrent writers will block readers",
                self.path,
                mode,
            )

    def _ensure_schema(self, conn: sqlite3.Connection) -> None:
        if not self._check_schema(conn):
            conn.execute("BEGIN IMMEDIATE")
            try:
                # Another process may have created it while we waited.
                if not self._check_schema(conn):
                    for statement in _SCHEMA:
                        conn.execute(statement)
                    logger.info("created label store %s", self.path)
                conn.execute("COMMIT")
            except BaseException:
                conn.rollback()
                raise

    def _check_schema(self, conn: sqlite3.Connection) -> bool:
        """Whether the schema exists (raises when the file holds something else)."""
        tables = {
            name
            for (name,) in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'"
            )
        }
        if not tables:
            return False
        row = None
        if "raycat_schema" in tables:
            row = conn.execute(
                "SELECT version FROM raycat_schema WHERE component = 'labels'"
            ).fetchone()
        if row is None:
            raise LabelStoreError(
                f"{str(self.path)!r} is an SQLite database but not a raycat label "
                f"store (it has tables {sorted(tables)} and no label-store schema "
                f"version); {_FIX_PATH}"
            )
        if row[0] != SCHEMA_VERSION:
            raise LabelStoreError(
                f"{str(self.path)!r} is a raycat label store of schema version "
                f"{row[0]}, but this raycat reads version {SCHEMA_VERSION}; open it "
                "with the raycat version that wrote it, or move it away to start a "
                "fresh store"
            )
        return True

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise LabelStoreError(
                f"label store {str(self.path)!r} is closed; open it again with "
                "open_label_store(home, taxonomy)"
            )
        if os.getpid() != self._pid:
            # An SQLite connection must not cross fork(); leave the parent's alone
            # and open our own.
            self._conn = self._open()
            self._pid = os.getpid()
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            if os.getpid() == self._pid:
                self._conn.close()
            self._conn = None

    # -- writing ----------------------------------------------------------------

    def _write_events(self, events: list[LabelEvent], *, given: int) -> int:
        conn = self._connection()
        start = time.perf_counter()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise LabelStoreError(
                f"label store {str(self.path)!r}: cannot start a write ({exc}); "
                f"other processes held the write lock for over {BUSY_TIMEOUT_S:.0f} "
                "s. Retry, or have fewer processes write at once"
            ) from exc
        try:
            (last_seq,) = conn.execute("SELECT last_seq FROM label_counter").fetchone()
            for lo in range(0, len(events), CHUNK_ROWS):
                chunk = events[lo : lo + CHUNK_ROWS]
                conn.executemany(
                    _UPSERT,
                    (
                        (
                            ev.labeler,
                            ev.product_id,
                            ev.category,
                            ev.iteration,
                            ev.value,
                            ev.source.value,
                            ev.strategy,
                            ev.time,
                            ev.derived_from,
                            last_seq + lo + i + 1,
                        )
                        for i, ev in enumerate(chunk)
                    ),
                )
            conn.execute(
                "UPDATE label_counter SET last_seq = ?", (last_seq + len(events),)
            )
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            conn.rollback()
            raise LabelStoreError(
                f"label store {str(self.path)!r}: writing {len(events)} rows failed "
                f"({exc}); nothing was written. Check the disk space and that the "
                "file is writable, then retry"
            ) from exc
        except BaseException:
            conn.rollback()
            raise

        logger.info(
            "label store %s: wrote %d rows from %d events in %.2f s",
            self.path,
            len(events),
            given,
            time.perf_counter() - start,
        )
        return len(events)

    # -- reading ----------------------------------------------------------------

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: one snapshot for the query and its helper table."""
        conn = self._connection()
        try:
            conn.execute("BEGIN")
            yield conn
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            conn.rollback()
            raise LabelStoreError(
                f"label store {str(self.path)!r}: reading failed ({exc}); check "
                "that the file is intact and readable"
            ) from exc
        except BaseException:
            conn.rollback()
            raise

    def _where(
        self,
        conn: sqlite3.Connection,
        *,
        sources: Iterable[Source | str] | Source | str | None = None,
        product_ids: Iterable[str] | None = None,
        iteration: int | None = None,
        labeler: str | None = None,
    ) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        source_values = self._source_values(sources)
        if source_values is not None:
            clauses.append(f"source IN ({', '.join('?' * len(source_values))})")
            params.extend(source_values)
        ids = self._product_id_values(product_ids)
        if ids is not None:
            # A temporary table rather than `IN (?, ?, ...)`: the ids may be many
            # more than SQLite's limit on parameters.
            conn.execute(
                "CREATE TEMP TABLE IF NOT EXISTS query_products "
                "(product_id TEXT PRIMARY KEY)"
            )
            conn.execute("DELETE FROM temp.query_products")
            conn.executemany(
                "INSERT INTO temp.query_products (product_id) VALUES (?)",
                ((p,) for p in ids),
            )
            clauses.append("product_id IN (SELECT product_id FROM temp.query_products)")
        if iteration is not None:
            clauses.append("iteration = ?")
            params.append(int(iteration))
        if labeler is not None:
            clauses.append("labeler = ?")
            params.append(str(labeler))
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        return where, params

    def events(
        self,
        *,
        sources: Iterable[Source | str] | Source | str | None = None,
        product_ids: Iterable[str] | None = None,
        iteration: int | None = None,
        labeler: str | None = None,
    ) -> pd.DataFrame:
        with self._reading() as conn:
            where, params = self._where(
                conn,
                sources=sources,
                product_ids=product_ids,
                iteration=iteration,
                labeler=labeler,
            )
            rows = conn.execute(
                f"SELECT {', '.join(EVENT_COLUMNS)} FROM labels {where} ORDER BY seq",
                params,
            ).fetchall()
        return _frame(rows, EVENT_COLUMNS)

    def current(
        self,
        *,
        sources: Iterable[Source | str] | Source | str | None = None,
        product_ids: Iterable[str] | None = None,
    ) -> pd.DataFrame:
        columns = ", ".join(CURRENT_COLUMNS)
        with self._reading() as conn:
            # Both filters act on columns of the partition, so filtering before
            # ranking gives the same winners as ranking everything.
            where, params = self._where(conn, sources=sources, product_ids=product_ids)
            rows = conn.execute(
                f"""
                SELECT {columns} FROM (
                    SELECT {columns}, ROW_NUMBER() OVER (
                        PARTITION BY product_id, category, source
                        ORDER BY time DESC, seq DESC
                    ) AS rank
                    FROM labels {where}
                )
                WHERE rank = 1
                ORDER BY product_id, category, source
                """,
                params,
            ).fetchall()
        return _frame(rows, CURRENT_COLUMNS)

    def counts(self) -> dict[str, dict[str, int]]:
        out = {s.value: dict.fromkeys(COUNT_KEYS, 0) for s in Source}
        with self._reading() as conn:
            rows = conn.execute(
                """
                SELECT source, COUNT(*), COUNT(DISTINCT product_id),
                       SUM(value), COUNT(*) - SUM(value)
                FROM labels GROUP BY source
                """
            ).fetchall()
        for source, *numbers in rows:
            out[source] = dict(zip(COUNT_KEYS, map(int, numbers), strict=True))
        return out

    def product_ids(self, source: Source | str | None = None) -> set[str]:
        with self._reading() as conn:
            where, params = self._where(conn, sources=source)
            rows = conn.execute(
                f"SELECT DISTINCT product_id FROM labels {where}", params
            ).fetchall()
        return {p for (p,) in rows}


def _frame(rows: list[tuple[Any, ...]], columns: tuple[str, ...]) -> pd.DataFrame:
    """Rows as a frame with numeric dtypes fixed (an empty result included)."""
    frame = pd.DataFrame.from_records(rows, columns=list(columns))
    numeric = {"value": "int64", "iteration": "int64", "time": "float64"}
    return frame.astype({c: t for c, t in numeric.items() if c in frame.columns})
