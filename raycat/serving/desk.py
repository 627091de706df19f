"""What the endpoints need besides the model: the label store, the catalog,
images, and turning a labeler's decisions into label events.

Nothing here imports Ray; the ingress in :mod:`raycat.serving.app` holds one
:class:`LabelDesk`.  The label store is SQLite, whose connections belong to the
thread that opened them, so every store call runs on one thread of the desk's
own (SQLite serialises writers anyway); catalog reads run on worker threads.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

import pandas as pd
import pyarrow.parquet as pq

from raycat.config import is_uri
from raycat.data import CATALOG_COLUMNS
from raycat.errors import LabelError
from raycat.labels import LabelEvent, open_label_store
from raycat.labels.events import Source
from raycat.labels.store import LabelStore
from raycat.serving.errors import RequestError
from raycat.taxonomy import Taxonomy

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Queue pages and their images are looked up again within minutes; 20 000 rows
# of text is a few tens of MB at most.
CATALOG_CACHE_ROWS = 20_000


@dataclass(frozen=True)
class Decision:
    """One labeler decision: ``value`` 1 puts the product in the category."""

    product_id: str
    category: str  # a category id
    value: int
    iteration: int | None = None


@dataclass(frozen=True)
class Submission:
    saved: int
    rows: int
    completed: int


class LabelDesk:
    """The label store, used from one thread."""

    def __init__(self, home: str | Path, taxonomy: Taxonomy):
        self.home = Path(home)
        self.taxonomy = taxonomy
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="raycat-labels")
        self._store: LabelStore | None = None

    def _run(self, fn: Callable[[LabelStore], T]) -> T:
        if self._store is None:
            self._store = open_label_store(self.home, self.taxonomy)
        return fn(self._store)

    async def call(self, fn: Callable[[LabelStore], T]) -> T:
        """Run ``fn(store)`` on the desk's thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._run, fn)

    async def reserve(self, labeler: str, size: int, ttl_s: float) -> pd.DataFrame:
        return await self.call(lambda s: s.reserve(labeler, size, ttl_s=ttl_s))

    async def submit(self, labeler: str, decisions: list[Decision]) -> Submission:
        """Store decisions as human labels and mark their queue items done."""
        return await self.call(lambda s: self._submit(s, labeler, decisions))

    def _submit(
        self, store: LabelStore, labeler: str, decisions: list[Decision]
    ) -> Submission:
        asked = _queued_products(store, {d.product_id for d in decisions})
        events = []
        for d in decisions:
            iteration, strategy = asked.get(d.product_id, (0, None))
            events.append(
                LabelEvent(
                    d.product_id,
                    d.category,
                    d.value,
                    Source.HUMAN,
                    labeler=labeler,
                    iteration=iteration if d.iteration is None else d.iteration,
                    strategy=strategy,
                )
            )
        rows = store.write(events)
        queued = [
            p for p in dict.fromkeys(d.product_id for d in decisions) if p in asked
        ]
        completed = store.complete(queued, labeler=labeler) if queued else 0
        logger.info(
            "%s: %d labels (%d rows) on %d products; %d queue items done",
            labeler,
            len(events),
            rows,
            len({d.product_id for d in decisions}),
            completed,
        )
        return Submission(saved=len(events), rows=rows, completed=completed)

    def close(self) -> None:
        if self._store is not None:
            store, self._store = self._store, None
            self._pool.submit(store.close).result()
        self._pool.shutdown(wait=False)


def _queued_products(
    store: LabelStore, product_ids: set[str]
) -> dict[str, tuple[int, str | None]]:
    """Each queued product's latest iteration and the strategy that picked it."""
    queue = store.queue()
    if queue.empty:
        return {}
    queue = queue[queue["product_id"].isin(product_ids)]
    queue = queue.sort_values("iteration").drop_duplicates("product_id", keep="last")
    return {
        str(r.product_id): (int(r.iteration), r.strategy)
        for r in queue.itertuples(index=False)
    }


def resolve_decisions(
    taxonomy: Taxonomy,
    labels: Iterable[tuple[str, str, int, int | None]],
    *,
    field: str = "labels",
) -> list[Decision]:
    """Decisions from ``(product_id, category id or path, value, iteration)``;
    an unknown category is a 422 naming its position."""
    out = []
    for i, (pid, ref, value, iteration) in enumerate(labels):
        try:
            cid = taxonomy.resolve(ref)
        except Exception as err:  # TaxonomyError, said with its field
            raise RequestError(422, f"{field}[{i}].category", str(err)) from None
        out.append(Decision(str(pid), cid, int(value), iteration))
    return out


class CatalogLookup:
    """Catalog rows by product id from the run's ``catalog.parquet``, cached.

    A lookup reads only the rows asked for (a filtered Parquet scan), so the
    catalog never sits whole in memory; recent rows stay in an LRU cache.
    """

    def __init__(self, path: str | Path, cache_rows: int = CATALOG_CACHE_ROWS):
        self.path = Path(path)
        self.cache_rows = cache_rows
        self._cache: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def rows(self, product_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        ids = list(dict.fromkeys(str(p) for p in product_ids))
        found: dict[str, dict[str, Any]] = {}
        with self._lock:
            for pid in ids:
                if pid in self._cache:
                    self._cache.move_to_end(pid)
                    found[pid] = self._cache[pid]
        missing = [p for p in ids if p not in found]
        if missing:
            read = self._read(missing)
            with self._lock:
                for pid, row in read.items():
                    self._cache[pid] = row
                while len(self._cache) > self.cache_rows:
                    self._cache.popitem(last=False)
            found.update(read)
        return found

    async def rows_async(self, product_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        return await asyncio.to_thread(self.rows, list(product_ids))

    def _read(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        if not self.path.is_file():
            logger.warning("no catalog at %s: queue items show no text", self.path)
            return {}
        schema = pq.read_schema(self.path)
        columns = [c for c in CATALOG_COLUMNS if c in schema.names]
        table = pq.read_table(
            self.path, columns=columns, filters=[("product_id", "in", ids)]
        )
        out = {}
        for row in table.to_pylist():
            out[str(row["product_id"])] = {c: row.get(c) for c in CATALOG_COLUMNS}
        return out


# -- images ---------------------------------------------------------------------


def image_under_root(root: str | None, relative: str, field: str) -> str:
    """The location of ``relative`` under the image root; refuses a path that
    leaves the root (``..``, an absolute path) or names no file."""
    if not root:
        raise RequestError(
            422,
            field,
            "image paths are not accepted: the config sets no "
            "dataset.catalog.image_root; send the image as url or base64",
        )
    rel = PurePosixPath(relative.replace("\\", "/"))
    if rel.is_absolute() or ".." in rel.parts or not rel.parts:
        raise RequestError(
            422,
            field,
            f"{relative!r} escapes the image root; give a path relative to it "
            "without '..'",
        )
    if is_uri(root):
        return f"{root.rstrip('/')}/{rel.as_posix()}"
    base = Path(root).resolve()
    target = (base / rel).resolve()
    # A symlink inside the root may still point outside it.
    if not target.is_relative_to(base):
        raise RequestError(
            422, field, f"{relative!r} escapes the image root through a link"
        )
    if not target.is_file():
        raise RequestError(422, field, f"no image at {relative!r} under the image root")
    return str(target)


def decode_base64_image(data: str, max_bytes: int, field: str) -> bytes:
    # 4 characters carry 3 bytes: refuse before decoding what is too large.
    if len(data) * 3 // 4 > max_bytes + 3:
        raise RequestError(
            413,
            field,
            f"the image is about {len(data) * 3 // 4} bytes; the limit is "
            f"serving.max_image_bytes = {max_bytes}",
        )
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as err:
        raise RequestError(422, field, f"not valid base64 ({err})") from None
    if len(raw) > max_bytes:
        raise RequestError(
            413,
            field,
            f"the image is {len(raw)} bytes; the limit is serving.max_image_bytes "
            f"= {max_bytes}",
        )
    return raw


async def fetch_image(client: Any, url: str, max_bytes: int, field: str) -> bytes:
    """Download an image with an ``httpx.AsyncClient``, at most ``max_bytes``."""
    import httpx

    try:
        async with client.stream("GET", url) as response:
            if response.status_code >= 400:
                raise RequestError(
                    422, field, f"fetching {url} answered HTTP {response.status_code}"
                )
            declared = int(response.headers.get("content-length") or 0)
            if declared > max_bytes:
                raise RequestError(
                    413,
                    field,
                    f"{url} is {declared} bytes; the limit is "
                    f"serving.max_image_bytes = {max_bytes}",
                )
            chunks, size = [], 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > max_bytes:
                    raise RequestError(
                        413,
                        field,
                        f"{url} is over serving.max_image_bytes = {max_bytes} bytes",
                    )
                chunks.append(chunk)
            return b"".join(chunks)
    except httpx.HTTPError as err:
        raise RequestError(422, field, f"cannot fetch {url}: {err}") from None


def label_error(err: LabelError) -> RequestError:
    return RequestError(422, "labels", str(err))
