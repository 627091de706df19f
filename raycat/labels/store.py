"""The label store: every label event raycat knows, kept where it came from.

:class:`LabelStore` is the interface; :func:`open_label_store` returns the one
implementation shipped today, an SQLite file at ``<home>/labels.sqlite``
(:mod:`raycat.labels.sqlite`).  A server database can implement the same
interface later without changing the callers.

A row is identified by ``(labeler, product_id, category, iteration)``: writing
an event with the same key again replaces the row's value, source, strategy,
time and ``derived_from``, so a rewrite is idempotent and a correction by the
same labeler in the same iteration overrides the earlier answer.

The store also keeps the labeling queue: the products an active-learning
iteration asks about, one row per ``(iteration, product_id)``.  Labelers fetch
pages of it with :meth:`LabelStore.reserve`, which hands each queued item to one
labeler at a time for a while (a reservation); :meth:`LabelStore.complete` marks
the items whose labels came back.
"""

from __future__ import annotations

import json
import logging
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import fields
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import numpy as np
import pandas as pd

from raycat.errors import LabelError, LabelStoreError
from raycat.labels.events import LabelEvent, Source
from raycat.labels.events import propagate as propagate_events
from raycat.taxonomy import Taxonomy

logger = logging.getLogger(__name__)

LABEL_STORE_FILENAME = "labels.sqlite"
"""The name of the SQLite label store inside a raycat home directory."""

EVENT_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(LabelEvent))
"""The columns of :meth:`LabelStore.events`, one per :class:`LabelEvent` field."""

CURRENT_COLUMNS: tuple[str, ...] = (
    "product_id",
    "category",
    "source",
    "value",
    "labeler",
    "iteration",
    "strategy",
)
"""The columns of :meth:`LabelStore.current`."""

COUNT_KEYS: tuple[str, ...] = ("events", "products", "positives", "negatives")
"""The keys of each per-source entry of :meth:`LabelStore.counts`."""

QUEUE_REQUIRED_COLUMNS: tuple[str, ...] = ("product_id", "category", "strategy")
"""The columns every frame passed to :meth:`LabelStore.enqueue` must have."""

QUEUE_FLOAT_COLUMNS: tuple[str, ...] = (
    "score",
    "p_model",
    "p_text",
    "p_image",
    "entropy",
    "disagreement",
)
"""Optional numeric columns of a queued item (null when not given)."""

QUEUE_ITEM_COLUMNS: tuple[str, ...] = (
    *QUEUE_REQUIRED_COLUMNS,
    *QUEUE_FLOAT_COLUMNS,
    "rule_positive",  # whether the old rule system put the product in `category`
    "also_for",  # other categories the product was picked for (a list of ids)
)
"""The columns :meth:`LabelStore.enqueue` reads; any other column is ignored."""

QUEUE_STATUSES: tuple[str, ...] = ("queued", "reserved", "done")
"""The states of a queued item, in the order of its life."""

QUEUE_COLUMNS: tuple[str, ...] = (
    "iteration",
    *QUEUE_ITEM_COLUMNS,
    "status",
    "reserved_by",
    "reserved_until",
    "created_at",
    "done_at",
)
"""The columns of :meth:`LabelStore.queue` and :meth:`LabelStore.reserve`."""

QUEUE_STRATEGIES: tuple[str, ...] = (
    "random",
    "disagreement",
    "uncertainty",
    "combined",  # disagreement and uncertainty merged, by product or by average
)
"""The strategies that may pick a queued product."""

DEFAULT_RESERVATION_TTL_S = 900.0
"""How long a labeler holds a page: 15 minutes covers labeling one page, and an
abandoned page returns to the queue within a quarter of an hour."""


class LabelStore(ABC):
    """Where label events are written and read back.

    Subclasses implement the storage (:meth:`_write_events` and the queries);
    this class does the propagation through the taxonomy and checks the
    arguments, so every store applies the same rules.  A store is a context
    manager that closes itself on exit.
    """

    def __init__(self, taxonomy: Taxonomy):
        self.taxonomy = taxonomy

    # -- writing ----------------------------------------------------------------

    def write(self, events: Iterable[LabelEvent], *, propagate: bool = True) -> int:
        """Write label events in one transaction; return the number of rows written.

        With ``propagate`` (the default) a positive label is also written for
        every ancestor of its category and a negative one for every descendant
        (see :func:`raycat.labels.events.propagate`), and the count includes
        those implied rows.  A row whose key ``(labeler, product_id, category,
        iteration)`` is already stored is replaced, never duplicated.

        Raises :class:`LabelError` for an unknown category or for labels that
        contradict each other through the tree; nothing is written then.
        """
        batch = list(events)
        if propagate:
            rows = propagate_events(batch, self.taxonomy)
        else:
            for ev in batch:
                self._check_category(ev)
            rows = batch
        if not rows:
            return 0
        return self._write_events(rows, given=len(batch))

    @abstractmethod
    def _write_events(self, events: list[LabelEvent], *, given: int) -> int:
        """Upsert already propagated and checked events atomically.

        ``given`` is how many events the caller passed before propagation, for
        the log.  Returns the number of rows written.
        """

    # -- reading ----------------------------------------------------------------

    @abstractmethod
    def events(
        self,
        *,
        sources: Iterable[Source | str] | Source | str | None = None,
        product_ids: Iterable[str] | None = None,
        iteration: int | None = None,
        labeler: str | None = None,
    ) -> pd.DataFrame:
        """Every stored event that matches all the given filters, in write order.

        One column per :class:`LabelEvent` field (:data:`EVENT_COLUMNS`);
        ``source`` holds plain strings such as ``"human"``.  A filter left at
        ``None`` matches everything.
        """

    @abstractmethod
    def current(
        self,
        *,
        sources: Iterable[Source | str] | Source | str | None = None,
        product_ids: Iterable[str] | None = None,
    ) -> pd.DataFrame:
        """The current label of each (product, category, source).

        The current label is the event with the latest ``time``; among events
        with the same time, the one written last wins (a rewrite of a key counts
        as a new write).  Labels from different sources are kept apart, so a
        product can have a rule label and a human label for the same category.
        Columns: :data:`CURRENT_COLUMNS`, sorted by product, category, source.
        """

    @abstractmethod
    def counts(self) -> dict[str, dict[str, int]]:
        """Per source (every :class:`Source`, zeros included): the number of
        events, distinct products, positives and negatives (:data:`COUNT_KEYS`).
        """

    @abstractmethod
    def product_ids(self, source: Source | str | None = None) -> set[str]:
        """The products with at least one label (from ``source`` if given)."""

    # -- the labeling queue -----------------------------------------------------

    def enqueue(self, items: pd.DataFrame, *, iteration: int) -> int:
        """Queue products to be labeled in ``iteration``; return the items queued.

        ``items`` has the columns :data:`QUEUE_REQUIRED_COLUMNS` (the product,
        the category to ask about, and the strategy that picked it, one of
        :data:`QUEUE_STRATEGIES`) and optionally the rest of
        :data:`QUEUE_ITEM_COLUMNS`; a missing optional column is null.  One
        call is one transaction.

        An item is identified by ``(iteration, product_id)``: queueing a product
        again in the same iteration (in this call or a later one) replaces what
        is asked about it (category, strategy, scores) and keeps where it is in
        the queue and its status, so enqueueing the same frame twice changes
        nothing.  New items start ``queued``.

        Raises :class:`LabelError` for a missing column, an unknown category or
        strategy, or a malformed value; nothing is queued then.
        """
        iteration = self._check_iteration(iteration, "enqueue", required=True)
        rows = self._queue_rows(items, iteration)
        if not rows:
            return 0
        return self._enqueue(rows, iteration=iteration)

    def queue(
        self,
        *,
        iteration: int | None = None,
        status: str | None = None,
        now: float | None = None,
    ) -> pd.DataFrame:
        """The queued items (of ``iteration``, with ``status``) in queue order.

        Columns: :data:`QUEUE_COLUMNS`.  A reservation that ended before
        ``now`` (default: the current time) shows as ``queued`` with no holder,
        as :meth:`reserve` would hand the item out again.
        """
        iteration = self._check_iteration(iteration, "queue")
        if status is not None and status not in QUEUE_STATUSES:
            raise LabelError(
                f"label queue: unknown status {status!r}; status must be one of "
                f"{list(QUEUE_STATUSES)} or None for all"
            )
        return self._queue(iteration=iteration, status=status, now=self._now(now))

    def reserve(
        self,
        labeler: str,
        size: int,
        *,
        ttl_s: float = DEFAULT_RESERVATION_TTL_S,
        iteration: int | None = None,
        now: float | None = None,
    ) -> pd.DataFrame:
        """Hand up to ``size`` queued items to ``labeler`` for ``ttl_s`` seconds.

        The page holds first the items this labeler already holds (so reloading
        a page shows the same items, and renews their reservation), then items
        nobody holds: ``queued`` ones and those whose reservation ended before
        ``now``, in queue order.  The reservation is atomic: two labelers asking
        at once never get the same item.  Fewer than ``size`` items (or none)
        come back when the queue runs dry.  Columns: :data:`QUEUE_COLUMNS`.
        """
        labeler = self._check_labeler(labeler, "reserve")
        if isinstance(size, bool) or not isinstance(size, int | np.integer):
            raise LabelError(
                f"reserve: size must be a whole number of items, got {size!r}"
            )
        if size < 1:
            raise LabelError(
                f"reserve: size must be at least 1 (the items on one page), got {size}"
            )
        if not isinstance(ttl_s, int | float) or not (
            math.isfinite(ttl_s) and ttl_s > 0
        ):
            raise LabelError(
                f"reserve: ttl_s must be a positive number of seconds, got {ttl_s!r}"
            )
        iteration = self._check_iteration(iteration, "reserve")
        return self._reserve(
            labeler,
            int(size),
            ttl_s=float(ttl_s),
            iteration=iteration,
            now=self._now(now),
        )

    def complete(
        self,
        product_ids: Iterable[str],
        *,
        labeler: str,
        iteration: int | None = None,
        now: float | None = None,
    ) -> int:
        """Mark the items of ``product_ids`` done once their labels are stored.

        Every item of these products (in ``iteration`` if given) that is not
        done yet becomes ``done``, whoever held it; ``reserved_by`` then names
        ``labeler``.  Returns the number of items newly done, so calling it again
        returns 0.  Products not in the queue are skipped with a warning.
        """
        labeler = self._check_labeler(labeler, "complete")
        if isinstance(product_ids, str):
            raise LabelError(
                f"complete: product_ids must be a collection of ids, got the string "
                f"{product_ids!r}; pass [{product_ids!r}] for one product"
            )
        ids = list(dict.fromkeys(str(p) for p in product_ids))
        iteration = self._check_iteration(iteration, "complete")
        if not ids:
            return 0
        return self._complete(
            ids, labeler=labeler, iteration=iteration, now=self._now(now)
        )

    def release(self, labeler: str, *, iteration: int | None = None) -> int:
        """Return ``labeler``'s reserved items to the queue; return how many."""
        labeler = self._check_labeler(labeler, "release")
        iteration = self._check_iteration(iteration, "release")
        return self._release(labeler, iteration=iteration)

    def queue_counts(
        self, iteration: int | None = None, *, now: float | None = None
    ) -> dict[str, int]:
        """The number of items per status (every :data:`QUEUE_STATUSES`, zeros
        included); expired reservations count as ``queued``, as in :meth:`queue`.
        """
        iteration = self._check_iteration(iteration, "queue_counts")
        return self._queue_counts(iteration=iteration, now=self._now(now))

    @abstractmethod
    def _enqueue(self, rows: list[tuple[Any, ...]], *, iteration: int) -> int:
        """Upsert checked items (tuples in :data:`QUEUE_ITEM_COLUMNS` order, one
        per product) in one transaction; return their number."""

    @abstractmethod
    def _queue(
        self, *, iteration: int | None, status: str | None, now: float
    ) -> pd.DataFrame:
        """The rows of :meth:`queue`, arguments checked."""

    @abstractmethod
    def _reserve(
        self,
        labeler: str,
        size: int,
        *,
        ttl_s: float,
        iteration: int | None,
        now: float,
    ) -> pd.DataFrame:
        """Reserve atomically, as described in :meth:`reserve`."""

    @abstractmethod
    def _complete(
        self,
        product_ids: list[str],
        *,
        labeler: str,
        iteration: int | None,
        now: float,
    ) -> int:
        """Mark items done atomically, as described in :meth:`complete`."""

    @abstractmethod
    def _release(self, labeler: str, *, iteration: int | None) -> int:
        """Drop the labeler's reservations; return how many."""

    @abstractmethod
    def _queue_counts(self, *, iteration: int | None, now: float) -> dict[str, int]:
        """The counts of :meth:`queue_counts`, arguments checked."""

    # -- lifetime ---------------------------------------------------------------

    @abstractmethod
    def close(self) -> None:
        """Release the connection; calling it twice is harmless."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- argument checks shared by implementations --------------------------------

    def _check_category(self, ev: LabelEvent) -> None:
        if ev.category not in self.taxonomy:
            raise LabelError(
                f"label for product {ev.product_id!r}: unknown category "
                f"{ev.category!r}; use a category id of the taxonomy, such as "
                f"{self.taxonomy.ids[0]!r}"
            )

    @staticmethod
    def _source_values(
        sources: Iterable[Source | str] | Source | str | None,
    ) -> list[str] | None:
        """The ``sources`` filter as a list of plain strings, checked."""
        if sources is None:
            return None
        # A single string is one source, not an iterable of characters.
        items = [sources] if isinstance(sources, str) else list(sources)
        out = []
        for s in items:
            try:
                out.append(Source(s).value)
            except ValueError:
                raise LabelError(
                    f"label store query: unknown source {s!r}; sources must be "
                    f"among {[v.value for v in Source]}"
                ) from None
        return out

    @staticmethod
    def _product_id_values(product_ids: Iterable[str] | None) -> list[str] | None:
        if product_ids is None:
            return None
        if isinstance(product_ids, str):
            raise LabelError(
                f"label store query: product_ids must be a collection of ids, got "
                f"the string {product_ids!r}; pass [{product_ids!r}] for one product"
            )
        return list(dict.fromkeys(str(p) for p in product_ids))

    @staticmethod
    def _now(now: float | None) -> float:
        if now is None:
            return time.time()
        if isinstance(now, bool) or not isinstance(now, int | float | np.number):
            raise LabelError(
                f"label queue: now must be a POSIX time in seconds, got {now!r}"
            )
        return float(now)

    @staticmethod
    def _check_labeler(labeler: str, action: str) -> str:
        if not isinstance(labeler, str) or not labeler.strip():
            raise LabelError(
                f"{action}: labeler must be a non-empty name (who labels the "
                f"items), got {labeler!r}"
            )
        return labeler

    @staticmethod
    def _check_iteration(
        iteration: int | None, action: str, *, required: bool = False
    ) -> int | None:
        if iteration is None and not required:
            return None
        if (
            isinstance(iteration, bool)
            or not isinstance(iteration, int | np.integer)
            or iteration < 0
        ):
            allowed = "a whole number >= 0" + ("" if required else " or None")
            raise LabelError(
                f"{action}: iteration must be {allowed}, got {iteration!r}"
            )
        return int(iteration)

    def _queue_rows(self, items: pd.DataFrame, iteration: int) -> list[tuple[Any, ...]]:
        """The items as tuples in :data:`QUEUE_ITEM_COLUMNS` order, checked, the
        last of each product kept."""
        if not isinstance(items, pd.DataFrame):
            raise LabelError(
                f"enqueue: items must be a pandas DataFrame with the columns "
                f"{list(QUEUE_REQUIRED_COLUMNS)}, got {type(items).__name__}"
            )
        missing = [c for c in QUEUE_REQUIRED_COLUMNS if c not in items.columns]
        if missing:
            raise LabelError(
                f"enqueue: items lack the required column(s) {missing}; they have "
                f"{[str(c) for c in items.columns]}. Give each row the product_id, "
                "the category id to ask about and the strategy that picked it"
            )
        ignored = [str(c) for c in items.columns if c not in QUEUE_ITEM_COLUMNS]
        if ignored:
            logger.warning(
                "enqueue: ignoring %d column(s) the queue does not keep: %s",
                len(ignored),
                ignored,
            )

        columns: dict[str, Sequence[Any]] = {}
        for name in QUEUE_FLOAT_COLUMNS:
            columns[name] = (
                _float_column(items[name], name, items.index)
                if name in items.columns
                else [None] * len(items)
            )
        # Plain lists: indexing a Series row by row is slow for 10^5 items.
        products = items["product_id"].tolist()
        categories = items["category"].tolist()
        strategies = items["strategy"].tolist()
        rule_col = _optional_list(items, "rule_positive")
        also_col = _optional_list(items, "also_for")

        rows: dict[str, tuple[Any, ...]] = {}
        for i, label in enumerate(items.index):
            where = f"enqueue: row {label!r}"
            product = products[i]
            if _is_null(product) or not str(product):
                raise LabelError(f"{where}: empty product_id; every item needs one")
            product = str(product)
            where = f"{where} (product {product!r})"
            category = categories[i]
            if category not in self.taxonomy:
                raise LabelError(
                    f"{where}: unknown category {category!r}; use a category id of "
                    f"the taxonomy, such as {self.taxonomy.ids[0]!r}"
                )
            strategy = strategies[i]
            if strategy not in QUEUE_STRATEGIES:
                raise LabelError(
                    f"{where}: unknown strategy {strategy!r}; strategy must be one of "
                    f"{list(QUEUE_STRATEGIES)}"
                )
            rule_positive = (
                None if rule_col is None else _rule_positive(rule_col[i], where)
            )
            also_for = None if also_col is None else self._also_for(also_col[i], where)
            floats = tuple(columns[name][i] for name in QUEUE_FLOAT_COLUMNS)
            # A product given twice keeps its last row, as a later call would.
            rows.pop(product, None)
            rows[product] = (
                product,
                str(category),
                str(strategy),
                *floats,
                rule_positive,
                also_for,
            )
        return list(rows.values())

    def _also_for(self, value: Any, where: str) -> str | None:
        """``also_for`` as JSON text of a list of category ids (None if null)."""
        if isinstance(value, list | tuple | set | frozenset | np.ndarray):
            ids = list(value)
        elif _is_null(value):
            return None
        else:
            raise LabelError(
                f"{where}: also_for must be a list of category ids (or empty), got "
                f"{value!r}"
            )
        for cid in ids:
            if cid not in self.taxonomy:
                raise LabelError(
                    f"{where}: also_for names unknown category {cid!r}; use "
                    "category ids of the taxonomy"
                )
        return json.dumps([str(c) for c in ids])


def _is_null(value: Any) -> bool:
    """Whether a cell is missing (None or NaN); lists and arrays are not."""
    if isinstance(value, list | tuple | set | frozenset | np.ndarray):
        return False
    return bool(pd.isna(value))


def _optional_list(items: pd.DataFrame, name: str) -> list[Any] | None:
    return items[name].tolist() if name in items.columns else None


def _float_column(column: pd.Series, name: str, index: pd.Index) -> list[Any]:
    """A numeric column as floats with None for nulls, or a LabelError."""
    values = pd.to_numeric(column, errors="coerce")
    bad = values.isna() & column.notna()
    if bad.any():
        at = int(np.argmax(bad.to_numpy()))
        raise LabelError(
            f"enqueue: column {name!r} must hold numbers; row {index[at]!r} has "
            f"{column.iat[at]!r}"
        )
    return [None if pd.isna(v) else float(v) for v in values.astype("float64")]


def _rule_positive(value: Any, where: str) -> int | None:
    if _is_null(value):
        return None
    if isinstance(value, bool | np.bool_) or value in (0, 1):
        return int(value)
    raise LabelError(
        f"{where}: rule_positive must be true, false or null, got {value!r}"
    )


def open_label_store(home: str | Path, taxonomy: Taxonomy) -> LabelStore:
    """Open (creating it if needed) the label store of a raycat home directory.

    Returns the SQLite store at ``<home>/labels.sqlite``.  Every process opens
    its own store; several processes may write to the same file at once.
    """
    from raycat.labels.sqlite import SQLiteLabelStore

    home = Path(home)
    try:
        home.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LabelStoreError(
            f"cannot create the raycat home directory {str(home)!r} for the label "
            f"store: {exc}; point the home at a writable directory"
        ) from exc
    return SQLiteLabelStore(home / LABEL_STORE_FILENAME, taxonomy)
