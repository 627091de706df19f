"""The label store: propagation on write, upserts, queries, errors, concurrency."""

from __future__ import annotations

import logging
import multiprocessing
import pickle
import sqlite3
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from raycat.errors import LabelError, LabelStoreError
from raycat.labels import (
    LabelEvent,
    LabelStore,
    Source,
    SQLiteLabelStore,
    open_label_store,
)
from raycat.taxonomy import Taxonomy

# Ids: a, a/b, a/c, a/c/d, e.
PATHS = [["A", "B"], ["A", "C", "D"], ["E"]]


@pytest.fixture
def taxonomy() -> Taxonomy:
    return Taxonomy.from_paths(PATHS)


@pytest.fixture
def store(tmp_path: Path, taxonomy: Taxonomy) -> Iterator[LabelStore]:
    with open_label_store(tmp_path, taxonomy) as s:
        yield s


def human(product: str, category: str, value: int, **kw: Any) -> LabelEvent:
    kw.setdefault("labeler", "ann")
    kw.setdefault("iteration", 1)
    return LabelEvent(product, category, value, Source.HUMAN, **kw)


def as_dict(frame: pd.DataFrame, key: str = "category") -> dict[str, dict[str, Any]]:
    return {row[key]: row for row in frame.to_dict("records")}


# -- propagation ----------------------------------------------------------------


def test_positive_propagates_to_ancestors(store: LabelStore) -> None:
    written = store.write([human("p1", "a/c/d", 1, strategy="uncertainty")])

    rows = as_dict(store.events())
    assert written == 3
    assert set(rows) == {"a/c/d", "a/c", "a"}
    assert {r["value"] for r in rows.values()} == {1}
    assert pd.isna(rows["a/c/d"]["derived_from"])
    assert rows["a"]["derived_from"] == rows["a/c"]["derived_from"] == "a/c/d"
    assert rows["a"]["strategy"] == "uncertainty"


def test_negative_propagates_to_descendants(store: LabelStore) -> None:
    assert store.write([human("p1", "a", 0)]) == 4

    rows = as_dict(store.events())
    assert set(rows) == {"a", "a/b", "a/c", "a/c/d"}
    assert {r["value"] for r in rows.values()} == {0}


def test_write_without_propagation_keeps_only_the_given_events(
    store: LabelStore,
) -> None:
    assert store.write([human("p1", "a/c/d", 1)], propagate=False) == 1
    assert list(store.events()["category"]) == ["a/c/d"]


def test_contradiction_raises_and_writes_nothing(store: LabelStore) -> None:
    with pytest.raises(
        LabelError,
        match=r"contradictory labels from labeler 'ann' \(iteration 1\) for product "
        r"'p1': category 'a/c' is 1 through 'a/c/d' and 0 through 'a/c'",
    ):
        store.write([human("p1", "a/c/d", 1), human("p1", "a/c", 0)])
    assert store.events().empty


@pytest.mark.parametrize("propagate", [True, False])
def test_unknown_category_raises(store: LabelStore, propagate: bool) -> None:
    with pytest.raises(
        LabelError, match=r"product 'p1': unknown category 'zzz'; use a category id"
    ):
        store.write([human("p0", "e", 1), human("p1", "zzz", 1)], propagate=propagate)
    assert store.events().empty


# -- upserts --------------------------------------------------------------------


def test_rewriting_a_key_replaces_the_row(store: LabelStore) -> None:
    store.write([human("p1", "a/b", 1, strategy="random", time=10.0)])
    store.write([human("p1", "a/b", 1, strategy="random", time=10.0)])
    assert len(store.events()) == 2  # a/b and a, once each

    store.write([human("p1", "a/b", 0, strategy="uncertainty", time=20.0)])

    rows = as_dict(store.events())
    assert len(rows) == 2
    assert rows["a/b"]["value"] == 0
    assert rows["a/b"]["strategy"] == "uncertainty"
    assert rows["a/b"]["time"] == 20.0
    assert rows["a"]["value"] == 1  # a negative does not reach the parent


def test_iterations_and_labelers_are_kept_apart(store: LabelStore) -> None:
    store.write(
        [
            human("p1", "e", 1, labeler="ann", iteration=1),
            human("p1", "e", 0, labeler="ann", iteration=2),
            human("p1", "e", 0, labeler="bob", iteration=1),
        ]
    )

    assert len(store.events()) == 3
    assert list(store.events(iteration=2)["value"]) == [0]
    assert list(store.events(labeler="bob")["iteration"]) == [1]
    assert len(store.events(labeler="ann", iteration=1)) == 1


# -- queries --------------------------------------------------------------------


def test_events_have_one_column_per_field_and_plain_sources(
    store: LabelStore,
) -> None:
    store.write([human("p1", "e", 1)])
    frame = store.events()

    assert list(frame.columns) == [f.name for f in fields(LabelEvent)]
    assert frame.loc[0, "source"] == "human"
    assert type(frame.loc[0, "source"]) is str
    assert frame["value"].dtype == "int64"


def test_events_filter_by_source_and_product(store: LabelStore) -> None:
    store.write(
        [
            human("p1", "e", 1),
            human("p2", "e", 0),
            LabelEvent("p1", "e", 1, Source.RULE, labeler="rule:e"),
        ]
    )

    assert len(store.events(sources="rule")) == 1
    assert len(store.events(sources=[Source.RULE, Source.HUMAN])) == 3
    assert set(store.events(product_ids=["p2", "p9"])["product_id"]) == {"p2"}
    assert store.events(product_ids=[]).empty
    assert store.events(sources=[]).empty


def test_bad_query_arguments_raise(store: LabelStore) -> None:
    with pytest.raises(LabelError, match=r"unknown source 'humans'; sources must be"):
        store.events(sources=["humans"])
    with pytest.raises(LabelError, match=r"pass \['p1'\] for one product"):
        store.events(product_ids="p1")


def test_current_picks_the_latest_label_per_source(store: LabelStore) -> None:
    store.write(
        [
            human("p1", "e", 1, labeler="ann", time=20.0),
            # Written later but labeled earlier: time decides, not write order.
            human("p1", "e", 0, labeler="bob", time=10.0),
            LabelEvent("p1", "e", 0, Source.RULE, labeler="rule:e", time=30.0),
        ]
    )
    current = store.current()

    assert list(current.columns) == [
        "product_id",
        "category",
        "source",
        "value",
        "labeler",
        "iteration",
        "strategy",
    ]
    by_source = as_dict(current, key="source")
    assert by_source["human"]["labeler"] == "ann"
    assert by_source["human"]["value"] == 1
    assert by_source["rule"]["value"] == 0
    assert len(store.current(sources="human")) == 1
    assert store.current(product_ids=["p2"]).empty


def test_current_breaks_ties_of_time_by_write_order(store: LabelStore) -> None:
    store.write([human("p1", "e", 1, labeler="ann", time=5.0)])
    store.write([human("p1", "e", 0, labeler="bob", time=5.0)])
    assert as_dict(store.current())["e"]["labeler"] == "bob"

    # Rewriting ann's key makes hers the later write.
    store.write([human("p1", "e", 1, labeler="ann", time=5.0)])
    assert as_dict(store.current())["e"]["labeler"] == "ann"


def test_counts_and_product_ids(store: LabelStore) -> None:
    store.write(
        [
            human("p1", "a/b", 1),  # + a
            human("p2", "a/c", 0),  # + a/c/d
            LabelEvent("p3", "e", 1, Source.RULE, labeler="rule:e"),
        ]
    )

    counts = store.counts()
    assert counts["human"] == {
        "events": 4,
        "products": 2,
        "positives": 2,
        "negatives": 2,
    }
    assert counts["rule"] == {
        "events": 1,
        "products": 1,
        "positives": 1,
        "negatives": 0,
    }
    assert counts["oracle"] == dict.fromkeys(counts["oracle"], 0)
    assert set(counts) == {s.value for s in Source}
    assert store.product_ids() == {"p1", "p2", "p3"}
    assert store.product_ids(Source.HUMAN) == {"p1", "p2"}
    assert store.product_ids("ground_truth") == set()


def test_write_logs_the_rows_written(
    store: LabelStore, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="raycat.labels.sqlite"):
        store.write([human("p1", "a/c/d", 1)])
    assert "wrote 3 rows from 1 events" in caplog.text


# -- the file -------------------------------------------------------------------


def test_store_persists_in_wal_mode(tmp_path: Path, taxonomy: Taxonomy) -> None:
    with open_label_store(tmp_path / "home", taxonomy) as s:
        s.write([human("p1", "e", 1)])
    path = tmp_path / "home" / "labels.sqlite"

    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with open_label_store(tmp_path / "home", taxonomy) as s:
        assert s.product_ids() == {"p1"}


def test_closed_store_raises(tmp_path: Path, taxonomy: Taxonomy) -> None:
    s = open_label_store(tmp_path, taxonomy)
    with s:
        pass
    s.close()  # harmless twice
    with pytest.raises(LabelStoreError, match=r"labels.sqlite' is closed; open it"):
        s.events()


def test_pickled_store_reopens_the_file(store: LabelStore) -> None:
    store.write([human("p1", "e", 1)])
    with pickle.loads(pickle.dumps(store)) as copy:
        assert isinstance(copy, SQLiteLabelStore)
        assert copy.product_ids() == {"p1"}


def test_text_file_is_not_a_label_store(tmp_path: Path, taxonomy: Taxonomy) -> None:
    (tmp_path / "labels.sqlite").write_text("product_id,category\np1,e\n" * 100)
    with pytest.raises(
        LabelStoreError,
        match=r"labels.sqlite' is not a raycat label store: SQLite cannot read it "
        r"\(file is not a database\); move the file away",
    ):
        open_label_store(tmp_path, taxonomy)


def test_other_sqlite_database_is_not_a_label_store(
    tmp_path: Path, taxonomy: Taxonomy
) -> None:
    with sqlite3.connect(tmp_path / "labels.sqlite") as conn:
        conn.execute("CREATE TABLE products (id TEXT)")
    with pytest.raises(
        LabelStoreError,
        match=r"is an SQLite database but not a raycat label store \(it has tables "
        r"\['products'\]",
    ):
        open_label_store(tmp_path, taxonomy)


def test_newer_schema_version_raises(tmp_path: Path, taxonomy: Taxonomy) -> None:
    open_label_store(tmp_path, taxonomy).close()
    with sqlite3.connect(tmp_path / "labels.sqlite") as conn:
        conn.execute("UPDATE raycat_schema SET version = 99")
    with pytest.raises(
        LabelStoreError, match=r"schema version 99, but this raycat reads version 1"
    ):
        open_label_store(tmp_path, taxonomy)


def test_missing_directory_raises(tmp_path: Path, taxonomy: Taxonomy) -> None:
    with pytest.raises(
        LabelStoreError, match=r"cannot open the label store .*check that its directory"
    ):
        SQLiteLabelStore(tmp_path / "nowhere" / "labels.sqlite", taxonomy)


# -- several processes ------------------------------------------------------------

N_WORKERS = 4
N_DISTINCT = 200
N_SHARED = 50


def _write_concurrently(home: str, worker: int, barrier: Any) -> None:
    """One process: open the (fresh) store together with the others, then write
    its own events and the shared keys in several small transactions."""
    taxonomy = Taxonomy.from_paths(PATHS)
    barrier.wait(timeout=60)
    with open_label_store(home, taxonomy) as store:
        own = [
            human(f"w{worker}-p{i}", "a/b", 1, labeler=f"w{worker}")
            for i in range(N_DISTINCT)
        ]
        shared = [
            human(f"shared-{i}", "e", worker % 2, labeler="team")
            for i in range(N_SHARED)
        ]
        step = N_DISTINCT // 4
        for lo in range(0, N_DISTINCT, step):
            store.write(own[lo : lo + step] + shared)


def test_processes_write_to_one_store_at_once(
    tmp_path: Path, taxonomy: Taxonomy
) -> None:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(N_WORKERS)
    procs = [
        ctx.Process(target=_write_concurrently, args=(str(tmp_path), w, barrier))
        for w in range(N_WORKERS)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0] * N_WORKERS

    with open_label_store(tmp_path, taxonomy) as store:
        events = store.events()
    key = ["labeler", "product_id", "category", "iteration"]
    assert not events.duplicated(key).any()

    own = events[events["labeler"] != "team"]
    assert len(own) == N_WORKERS * N_DISTINCT * 2  # a/b and its parent a
    for w in range(N_WORKERS):
        mine = own[own["labeler"] == f"w{w}"]
        assert set(mine["product_id"]) == {f"w{w}-p{i}" for i in range(N_DISTINCT)}

    shared = events[events["labeler"] == "team"]
    assert sorted(shared["product_id"]) == sorted(
        f"shared-{i}" for i in range(N_SHARED)
    )
    assert set(shared["category"]) == {"e"}

    # Every write got its own slice of the sequence.
    with sqlite3.connect(tmp_path / "labels.sqlite") as conn:
        n, distinct = conn.execute(
            "SELECT COUNT(*), COUNT(DISTINCT seq) FROM labels"
        ).fetchone()
    assert n == distinct == len(events)
