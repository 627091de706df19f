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

import json
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
    QUEUE_COLUMNS,
    QUEUE_FLOAT_COLUMNS,
    QUEUE_ITEM_COLUMNS,
    QUEUE_STATUSES,
    LabelStore,
)
from raycat.taxonomy import Taxonomy

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 2
"""The layout of the tables below; bump it (and add a migration) when they change.

Version 1: the labels.  Version 2: the labeling queue.
"""

# Writers wait for each other instead of failing: writing a million rule labels
# holds the lock for several seconds, and the workers of an active-learning
# iteration may all write at its end, so a minute leaves ample room.
BUSY_TIMEOUT_S = 60.0

# Rows per executemany call: bounds the tuples built at once, while the whole
# write stays one transaction.
CHUNK_ROWS = 50_000

_LABEL_TABLES = (
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
)

_QUEUE_TABLES = (
    f"""
    CREATE TABLE label_queue (
        seq INTEGER PRIMARY KEY,  -- queue order; an upsert keeps the row's place
        iteration INTEGER NOT NULL,
        product_id TEXT NOT NULL,
        category TEXT NOT NULL,
        strategy TEXT NOT NULL,
        score REAL,
        p_model REAL,
        p_text REAL,
        p_image REAL,
        entropy REAL,
        disagreement REAL,
        rule_positive INTEGER CHECK (rule_positive IN (0, 1)),
        also_for TEXT,  -- a JSON list of category ids
        status TEXT NOT NULL DEFAULT 'queued'
            CHECK (status IN ({", ".join(f"'{v}'" for v in QUEUE_STATUSES)})),
        reserved_by TEXT,
        reserved_until REAL,
        created_at REAL NOT NULL,
        done_at REAL,
        UNIQUE (iteration, product_id)
    )
    """,
    # reserve() looks for free items in queue order and for a labeler's own.
    "CREATE INDEX label_queue_status ON label_queue (status, seq)",
    "CREATE INDEX label_queue_holder ON label_queue (reserved_by, status)",
    "CREATE INDEX label_queue_product ON label_queue (product_id)",
)

_SCHEMA = (
    *_LABEL_TABLES,
    *_QUEUE_TABLES,
    "INSERT INTO raycat_schema (component, version) "
    f"VALUES ('labels', {SCHEMA_VERSION})",
)

# The statements that bring a store of version v to version v + 1.
_MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: _QUEUE_TABLES,
}

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

_QUEUE_DATA = ", ".join(QUEUE_ITEM_COLUMNS)

_ENQUEUE = f"""
    INSERT INTO label_queue (iteration, {_QUEUE_DATA}, status, created_at)
    VALUES (?, {", ".join("?" * len(QUEUE_ITEM_COLUMNS))}, 'queued', ?)
    ON CONFLICT (iteration, product_id) DO UPDATE SET
        {", ".join(f"{c} = excluded.{c}" for c in QUEUE_ITEM_COLUMNS[1:])}
"""

# A reservation that ended is no reservation: the item is free again.
_EXPIRED = "(status = 'reserved' AND reserved_until <= :now)"

# The queue as callers see it, expired reservations shown as queued.
_QUEUE_VIEW = f"""
    SELECT seq, iteration, {_QUEUE_DATA},
        CASE WHEN {_EXPIRED} THEN 'queued' ELSE status END AS status,
        CASE WHEN {_EXPIRED} THEN NULL ELSE reserved_by END AS reserved_by,
        CASE WHEN {_EXPIRED} THEN NULL ELSE reserved_until END AS reserved_until,
        created_at, done_at
    FROM label_queue
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
        if self._check_schema(conn) == SCHEMA_VERSION:
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Another process may have created or upgraded it while we waited.
            version = self._check_schema(conn)
            if version is None:
                for statement in _SCHEMA:
                    conn.execute(statement)
                logger.info("created label store %s", self.path)
            elif version < SCHEMA_VERSION:
                for v in range(version, SCHEMA_VERSION):
                    for statement in _MIGRATIONS[v]:
                        conn.execute(statement)
                conn.execute(
                    "UPDATE raycat_schema SET version = ? WHERE component = 'labels'",
                    (SCHEMA_VERSION,),
                )
                logger.info(
                    "upgraded label store %s from schema version %d to %d",
                    self.path,
                    version,
                    SCHEMA_VERSION,
                )
            conn.execute("COMMIT")
        except BaseException:
            conn.rollback()
            raise

    def _check_schema(self, conn: sqlite3.Connection) -> int | None:
        """The schema version of the file, None when it is empty (raises when it
        holds something else or a version this raycat cannot read)."""
        tables = {
            name
            for (name,) in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'"
            )
        }
        if not tables:
            return None
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
        version = row[0]
        if version != SCHEMA_VERSION and version not in _MIGRATIONS:
            *older, newest = map(str, sorted({*_MIGRATIONS, SCHEMA_VERSION}))
            versions = f"{', '.join(older)} or {newest}" if older else newest
            raise LabelStoreError(
                f"{str(self.path)!r} is a raycat label store of schema version "
                f"{version}, but this raycat reads version {versions} (upgrading "
                "older ones on open); open it with the raycat version that wrote "
                "it, or move it away to start a fresh store"
            )
        return int(version)

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

    @contextmanager
    def _writing(self, action: str) -> Iterator[sqlite3.Connection]:
        """A write transaction, taken at once and rolled back on any error."""
        conn = self._connection()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise LabelStoreError(
                f"label store {str(self.path)!r}: cannot start to {action} ({exc}); "
                f"other processes held the write lock for over {BUSY_TIMEOUT_S:.0f} "
                "s. Retry, or have fewer processes write at once"
            ) from exc
        try:
            yield conn
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            conn.rollback()
            raise LabelStoreError(
                f"label store {str(self.path)!r}: failed to {action} ({exc}); "
                "nothing was changed. Check the disk space and that the file is "
                "writable, then retry"
            ) from exc
        except BaseException:
            conn.rollback()
            raise

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
            _fill_query_products(conn, ids)
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

    # -- the labeling queue -----------------------------------------------------

    def _enqueue(self, rows: list[tuple[Any, ...]], *, iteration: int) -> int:
        created_at = time.time()
        with self._writing(f"queue {len(rows)} items") as conn:
            for lo in range(0, len(rows), CHUNK_ROWS):
                conn.executemany(
                    _ENQUEUE,
                    (
                        (iteration, *row, created_at)
                        for row in rows[lo : lo + CHUNK_ROWS]
                    ),
                )
        logger.info(
            "label store %s: queued %d items for iteration %d",
            self.path,
            len(rows),
            iteration,
        )
        return len(rows)

    def _queue(
        self, *, iteration: int | None, status: str | None, now: float
    ) -> pd.DataFrame:
        clauses, params = _queue_filter(iteration)
        if status is not None:
            clauses.append("status = :status")
            params["status"] = status
        params["now"] = now
        with self._reading() as conn:
            rows = conn.execute(
                f"SELECT {', '.join(QUEUE_COLUMNS)} FROM ({_QUEUE_VIEW}) "
                f"{_where_sql(clauses)} ORDER BY seq",
                params,
            ).fetchall()
        return _queue_frame(rows)

    def _reserve(
        self,
        labeler: str,
        size: int,
        *,
        ttl_s: float,
        iteration: int | None,
        now: float,
    ) -> pd.DataFrame:
        clauses, params = _queue_filter(iteration)
        params.update(labeler=labeler, now=now, until=now + ttl_s)
        scope = "".join(f" AND {c}" for c in clauses)
        with self._writing(f"reserve items for {labeler!r}") as conn:
            # The labeler's own page first, so that a reload shows it again.
            own = conn.execute(
                "SELECT seq FROM label_queue WHERE status = 'reserved' "
                f"AND reserved_by = :labeler AND reserved_until > :now{scope} "
                "ORDER BY seq LIMIT :size",
                {**params, "size": size},
            ).fetchall()
            free = []
            if len(own) < size:
                free = conn.execute(
                    f"SELECT seq FROM label_queue WHERE (status = 'queued' OR "
                    f"{_EXPIRED}){scope} ORDER BY seq LIMIT :size",
                    {**params, "size": size - len(own)},
                ).fetchall()
            seqs = [seq for (seq,) in own + free]
            conn.executemany(
                "UPDATE label_queue SET status = 'reserved', reserved_by = ?, "
                "reserved_until = ? WHERE seq = ?",
                ((labeler, params["until"], seq) for seq in seqs),
            )
            _fill_query_seqs(conn, seqs)
            rows = conn.execute(
                f"SELECT {', '.join(QUEUE_COLUMNS)} FROM label_queue "
                "WHERE seq IN (SELECT seq FROM temp.query_seqs) ORDER BY seq"
            ).fetchall()
        logger.debug(
            "label store %s: reserved %d items for %r (%d already held)",
            self.path,
            len(seqs),
            labeler,
            len(own),
        )
        return _queue_frame(rows)

    def _complete(
        self,
        product_ids: list[str],
        *,
        labeler: str,
        iteration: int | None,
        now: float,
    ) -> int:
        clauses, params = _queue_filter(iteration)
        params.update(labeler=labeler, now=now)
        scope = "".join(f" AND {c}" for c in clauses)
        with self._writing(f"complete {len(product_ids)} products") as conn:
            _fill_query_products(conn, product_ids)
            in_ids = "product_id IN (SELECT product_id FROM temp.query_products)"
            done = conn.execute(
                "UPDATE label_queue SET status = 'done', done_at = :now, "
                "reserved_by = :labeler, reserved_until = NULL "
                f"WHERE status != 'done' AND {in_ids}{scope}",
                params,
            ).rowcount
            (unknown,) = conn.execute(
                "SELECT COUNT(*) FROM temp.query_products WHERE product_id NOT IN "
                f"(SELECT product_id FROM label_queue {_where_sql(clauses)})",
                params,
            ).fetchone()
        if unknown:
            where = "" if iteration is None else f" of iteration {iteration}"
            logger.warning(
                "label store %s: %d of %d products completed by %r are not in the "
                "queue%s; skipped them",
                self.path,
                unknown,
                len(product_ids),
                labeler,
                where,
            )
        return int(done)

    def _release(self, labeler: str, *, iteration: int | None) -> int:
        clauses, params = _queue_filter(iteration)
        params["labeler"] = labeler
        scope = "".join(f" AND {c}" for c in clauses)
        with self._writing(f"release the items of {labeler!r}") as conn:
            released = conn.execute(
                "UPDATE label_queue SET status = 'queued', reserved_by = NULL, "
                "reserved_until = NULL "
                f"WHERE status = 'reserved' AND reserved_by = :labeler{scope}",
                params,
            ).rowcount
        return int(released)

    def _queue_counts(self, *, iteration: int | None, now: float) -> dict[str, int]:
        clauses, params = _queue_filter(iteration)
        params["now"] = now
        with self._reading() as conn:
            rows = conn.execute(
                f"SELECT status, COUNT(*) FROM ({_QUEUE_VIEW}) "
                f"{_where_sql(clauses)} GROUP BY status",
                params,
            ).fetchall()
        out = dict.fromkeys(QUEUE_STATUSES, 0)
        out.update({status: int(n) for status, n in rows})
        return out


def _fill_query_products(conn: sqlite3.Connection, ids: Iterable[str]) -> None:
    """Put ``ids`` in ``temp.query_products``.

    A temporary table rather than `IN (?, ?, ...)`: the ids may be many more
    than SQLite's limit on parameters.
    """
    conn.execute(
        "CREATE TEMP TABLE IF NOT EXISTS query_products (product_id TEXT PRIMARY KEY)"
    )
    conn.execute("DELETE FROM temp.query_products")
    conn.executemany(
        "INSERT INTO temp.query_products (product_id) VALUES (?)",
        ((p,) for p in ids),
    )


def _fill_query_seqs(conn: sqlite3.Connection, seqs: Iterable[int]) -> None:
    """Put queue positions in ``temp.query_seqs`` (see :func:`_fill_query_products`)."""
    conn.execute("CREATE TEMP TABLE IF NOT EXISTS query_seqs (seq INTEGER PRIMARY KEY)")
    conn.execute("DELETE FROM temp.query_seqs")
    conn.executemany(
        "INSERT INTO temp.query_seqs (seq) VALUES (?)", ((s,) for s in seqs)
    )


def _queue_filter(iteration: int | None) -> tuple[list[str], dict[str, Any]]:
    """The WHERE clauses and named parameters that select one iteration."""
    if iteration is None:
        return [], {}
    return ["iteration = :iteration"], {"iteration": iteration}


def _where_sql(clauses: list[str]) -> str:
    return f"WHERE {' AND '.join(clauses)}" if clauses else ""


def _queue_frame(rows: list[tuple[Any, ...]]) -> pd.DataFrame:
    """Queue rows as a frame: numbers as floats, rule_positive as a nullable
    boolean and also_for decoded into lists (None where not given)."""
    frame = pd.DataFrame.from_records(rows, columns=list(QUEUE_COLUMNS))
    floats = [*QUEUE_FLOAT_COLUMNS, "reserved_until", "created_at", "done_at"]
    frame = frame.astype({"iteration": "int64", **dict.fromkeys(floats, "float64")})
    frame["rule_positive"] = frame["rule_positive"].astype("boolean")
    # Missing texts may read back as None or NaN, depending on pandas' string dtype.
    frame["also_for"] = pd.Series(
        [json.loads(t) if isinstance(t, str) else None for t in frame["also_for"]],
        index=frame.index,
        dtype=object,
    )
    return frame


def _frame(rows: list[tuple[Any, ...]], columns: tuple[str, ...]) -> pd.DataFrame:
    """Rows as a frame with numeric dtypes fixed (an empty result included)."""
    frame = pd.DataFrame.from_records(rows, columns=list(columns))
    numeric = {"value": "int64", "iteration": "int64", "time": "float64"}
    return frame.astype({c: t for c, t in numeric.items() if c in frame.columns})
