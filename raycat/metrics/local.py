"""The metrics store as files under the run's home.

Layout (``<home>/metrics/records/``):

* ``jsonl``: ``<pipeline>.jsonl``, one JSON object per record and line.  Each
  :meth:`LocalMetricsStore.write` appends all its lines with one ``write`` call
  on a descriptor opened with ``O_APPEND``, under an exclusive ``flock`` of the
  file, so the Tune driver, Ray workers and notebooks may append to the same
  file at once without interleaving or losing lines.  The data reaches the
  operating system at once (no user-space buffer); it is not ``fsync``-ed.
* ``parquet``: ``<pipeline>/part-<time_ns>-<pid>-<n>.parquet``, one file per
  write call, written under a temporary name and renamed, so a reader never
  sees half a file.

:meth:`LocalMetricsStore.read` reads both layouts, whichever the store writes.
A line or file that cannot be parsed is skipped with a warning naming it.
Like SQLite's locks, ``flock`` needs a local file system, not a network mount.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from raycat.metrics.store import (
    MetricRecord,
    MetricsStore,
    MetricsStoreError,
    check_pipeline_name,
    record_matches,
    records_to_frame,
)

try:  # POSIX only; elsewhere O_APPEND alone keeps whole small lines together.
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

RECORDS_DIR = Path("metrics") / "records"

# Lines named one by one in warnings; beyond that, only their count.
MAX_LINE_WARNINGS = 5

_PARQUET_SCHEMA = pa.schema(
    [
        ("run", pa.string()),
        ("pipeline", pa.string()),
        ("component", pa.string()),
        ("trial", pa.string()),
        ("iteration", pa.int64()),
        ("split", pa.string()),
        ("kind", pa.string()),
        ("metrics", pa.map_(pa.string(), pa.float64())),
        # Hyperparameters mix types across records; JSON keeps them exact.
        ("params_json", pa.string()),
        ("time", pa.float64()),
    ]
)

_write_counter = itertools.count()


class LocalMetricsStore(MetricsStore):
    """Metric records in JSON Lines or Parquet files under ``<home>/metrics``."""

    def __init__(
        self, home: str | os.PathLike, *, format: Literal["jsonl", "parquet"] = "jsonl"
    ) -> None:
        if format not in ("jsonl", "parquet"):
            raise MetricsStoreError(
                f"metrics.format must be jsonl or parquet; got {format!r}"
            )
        self.format = format
        self.root = Path(home) / RECORDS_DIR
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise MetricsStoreError(
                f"cannot create the metrics folder {self.root}: {err}; check that "
                "the run's home is writable"
            ) from None

    def write(self, records: Iterable[MetricRecord]) -> int:
        by_pipeline: dict[str, list[MetricRecord]] = {}
        for record in records:
            by_pipeline.setdefault(record.pipeline, []).append(record)

        for pipeline, group in by_pipeline.items():
            try:
                if self.format == "jsonl":
                    self._append_jsonl(self.root / f"{pipeline}.jsonl", group)
                else:
                    self._write_parquet(self.root / pipeline, group)
            except OSError as err:
                raise MetricsStoreError(
                    f"cannot write {len(group)} metric records under {self.root}: "
                    f"{err}; check free disk space and permissions"
                ) from None
        return sum(len(g) for g in by_pipeline.values())

    def read(
        self,
        *,
        pipeline: str | None = None,
        component: str | None = None,
        kind: str | None = None,
        run: str | None = None,
    ) -> pd.DataFrame:
        if pipeline is not None:
            check_pipeline_name(pipeline)
            jsonl_files = [self.root / f"{pipeline}.jsonl"]
            parquet_dirs = [self.root / pipeline]
        else:
            jsonl_files = sorted(self.root.glob("*.jsonl"))
            parquet_dirs = sorted(p for p in self.root.iterdir() if p.is_dir())

        records: list[MetricRecord] = []
        for path in jsonl_files:
            records.extend(_read_jsonl(path))
        for folder in parquet_dirs:
            for path in sorted(folder.glob("part-*.parquet")):
                records.extend(_read_parquet(path))
        wanted = [
            r
            for r in records
            if record_matches(
                r, run=run, pipeline=pipeline, component=component, kind=kind
            )
        ]
        return records_to_frame(wanted)

    # -- jsonl --------------------------------------------------------------

    @staticmethod
    def _append_jsonl(path: Path, records: list[MetricRecord]) -> None:
        data = "".join(
            json.dumps(r.to_dict(), allow_nan=False) + "\n" for r in records
        ).encode()
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            with _locked(fd):
                # A writer killed mid-line leaves no newline at the end; start on
                # a fresh line so only that broken line is lost, not ours too.
                size = os.fstat(fd).st_size
                if size and os.pread(fd, 1, size - 1) != b"\n":
                    data = b"\n" + data
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
        finally:
            os.close(fd)

    # -- parquet ------------------------------------------------------------

    @staticmethod
    def _write_parquet(folder: Path, records: list[MetricRecord]) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        columns: dict[str, list[Any]] = {name: [] for name in _PARQUET_SCHEMA.names}
        for r in records:
            row = r.to_dict()
            row["metrics"] = list(row["metrics"].items())
            row["params_json"] = json.dumps(row.pop("params"), allow_nan=False)
            for name in columns:
                columns[name].append(row[name])
        table = pa.table(columns, schema=_PARQUET_SCHEMA)

        # The counter tells apart two writes of one process in the same tick.
        name = f"part-{time.time_ns()}-{os.getpid()}-{next(_write_counter)}"
        tmp = folder / f".{name}.tmp"
        pq.write_table(table, tmp)
        os.replace(tmp, folder / f"{name}.parquet")


@contextmanager
def _locked(fd: int) -> Iterator[None]:
    if fcntl is None:
        yield
        return
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


def _read_jsonl(path: Path) -> Iterator[MetricRecord]:
    if not path.is_file():
        return
    skipped = 0
    with path.open("rb") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                yield MetricRecord.from_dict(json.loads(line))
            except (ValueError, TypeError, MetricsStoreError) as err:
                skipped += 1
                if skipped <= MAX_LINE_WARNINGS:
                    logger.warning(
                        "skipped corrupt metric record at %s line %d: %s",
                        path,
                        lineno,
                        str(err)[:200],
                    )
    if skipped > MAX_LINE_WARNINGS:
        logger.warning("skipped %d corrupt metric records in %s in all", skipped, path)


def _read_parquet(path: Path) -> Iterator[MetricRecord]:
    try:
        rows = pq.read_table(path).to_pylist()
    except (OSError, pa.ArrowException) as err:
        logger.warning("skipped unreadable metrics file %s: %s", path, err)
        return
    for i, row in enumerate(rows):
        try:
            row["metrics"] = dict(row.get("metrics") or [])
            row["params"] = json.loads(row.pop("params_json", None) or "{}")
            yield MetricRecord.from_dict(row)
        except (ValueError, TypeError, MetricsStoreError) as err:
            logger.warning(
                "skipped corrupt metric record at %s row %d: %s", path, i, err
            )
