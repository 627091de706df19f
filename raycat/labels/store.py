"""The label store: every label event raycat knows, kept where it came from.

:class:`LabelStore` is the interface; :func:`open_label_store` returns the one
implementation shipped today, an SQLite file at ``<home>/labels.sqlite``
(:mod:`raycat.labels.sqlite`).  A server database can implement the same
interface later without changing the callers.

A row is identified by ``(labeler, product_id, category, iteration)``: writing
an event with the same key again replaces the row's value, source, strategy,
time and ``derived_from``, so a rewrite is idempotent and a correction by the
same labeler in the same iteration overrides the earlier answer.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import fields
from pathlib import Path
from types import TracebackType
from typing import Self

import pandas as pd

from raycat.errors import LabelError, LabelStoreError
from raycat.labels.events import LabelEvent, Source
from raycat.labels.events import propagate as propagate_events
from raycat.taxonomy import Taxonomy

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
