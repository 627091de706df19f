"""The labeling queue of the label store: enqueue, reserve, complete, migrate."""

from __future__ import annotations

import json
import logging
import multiprocessing
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from raycat.errors import LabelError
from raycat.labels import (
    QUEUE_COLUMNS,
    LabelEvent,
    LabelStore,
    Source,
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


def items(n: int, *, prefix: str = "p", **columns: Any) -> pd.DataFrame:
    """``n`` items in category e picked at random, with any extra columns."""
    frame = pd.DataFrame(
        {
            "product_id": [f"{prefix}{i}" for i in range(n)],
            "category": ["e"] * n,
            "strategy": ["random"] * n,
        }
    )
    for name, values in columns.items():
        frame[name] = values
    return frame


def ids(frame: pd.DataFrame) -> list[str]:
    return list(frame["product_id"])


# -- enqueue --------------------------------------------------------------------


def test_enqueue_keeps_every_column(store: LabelStore) -> None:
    frame = items(
        2,
        score=[0.9, 0.1],
        p_model=[0.6, 0.4],
        p_text=[0.7, 0.2],
        p_image=[0.5, 0.3],
        entropy=[0.97, 0.88],
        disagreement=[0.2, 0.1],
        rule_positive=[True, False],
        also_for=[["a/b", "a"], []],
    )

    assert store.enqueue(frame, iteration=3) == 2

    queue = store.queue()
    assert list(queue.columns) == list(QUEUE_COLUMNS)
    first = queue.iloc[0].to_dict()
    assert first["iteration"] == 3
    assert first["p_text"] == 0.7
    assert first["rule_positive"]
    assert first["also_for"] == ["a/b", "a"]
    assert first["status"] == "queued"
    assert pd.isna(first["reserved_by"])
    assert pd.isna(first["done_at"])
    assert queue.iloc[1]["also_for"] == []
    assert not queue.iloc[1]["rule_positive"]


def test_enqueue_defaults_missing_optional_columns_to_null(store: LabelStore) -> None:
    store.enqueue(items(1), iteration=1)

    row = store.queue().iloc[0]
    assert row[["score", "p_model", "entropy", "rule_positive"]].isna().all()
    assert row["also_for"] is None


def test_enqueue_is_idempotent(store: LabelStore) -> None:
    frame = items(3, score=[0.1, 0.2, 0.3])
    assert store.enqueue(frame, iteration=1) == 3
    before = store.queue()

    assert store.enqueue(frame, iteration=1) == 3

    pd.testing.assert_frame_equal(store.queue(), before)


def test_enqueue_again_replaces_the_item_but_keeps_its_place(
    store: LabelStore,
) -> None:
    store.enqueue(items(3), iteration=1)
    store.reserve("ann", 1, now=100.0)

    again = items(1, score=[0.5])
    again["category"] = "a/b"
    again["strategy"] = "uncertainty"
    store.enqueue(again, iteration=1)

    queue = store.queue(now=100.0)
    assert ids(queue) == ["p0", "p1", "p2"]
    first = queue.iloc[0]
    assert (first["category"], first["strategy"], first["score"]) == (
        "a/b",
        "uncertainty",
        0.5,
    )
    assert (first["status"], first["reserved_by"]) == ("reserved", "ann")


def test_a_product_twice_in_one_frame_keeps_the_last_row(store: LabelStore) -> None:
    frame = pd.concat([items(2), items(1, score=[0.4])], ignore_index=True)

    assert store.enqueue(frame, iteration=1) == 2
    assert store.queue().set_index("product_id").loc["p0", "score"] == 0.4


def test_iterations_are_kept_apart(store: LabelStore) -> None:
    store.enqueue(items(2), iteration=1)
    store.enqueue(items(1), iteration=2)

    assert len(store.queue()) == 3
    assert ids(store.queue(iteration=2)) == ["p0"]
    assert ids(store.reserve("ann", 5, iteration=2)) == ["p0"]
    assert store.queue_counts(1) == {"queued": 2, "reserved": 0, "done": 0}


def test_extra_columns_are_ignored_with_a_warning(
    store: LabelStore, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="raycat.labels.store"):
        store.enqueue(items(1, title=["red shoe"]), iteration=1)
    assert "ignoring 1 column(s) the queue does not keep: ['title']" in caplog.text
    assert "title" not in store.queue().columns


# -- reserve ----------------------------------------------------------------------


def test_two_labelers_get_distinct_pages(store: LabelStore) -> None:
    store.enqueue(items(5), iteration=1)

    ann = store.reserve("ann", 2, now=100.0)
    bob = store.reserve("bob", 2, now=100.0)
    cay = store.reserve("cay", 2, now=100.0)

    assert ids(ann) == ["p0", "p1"]
    assert ids(bob) == ["p2", "p3"]
    assert ids(cay) == ["p4"]  # the queue ran dry
    assert set(ann["reserved_by"]) == {"ann"}
    assert set(ann["reserved_until"]) == {1000.0}
    assert store.reserve("dan", 2, now=100.0).empty
    assert list(store.reserve("dan", 2).columns) == list(QUEUE_COLUMNS)


def test_a_reload_gives_the_same_page_and_renews_it(store: LabelStore) -> None:
    store.enqueue(items(6), iteration=1)
    first = store.reserve("ann", 3, ttl_s=60.0, now=100.0)
    store.reserve("bob", 1, now=100.0)

    again = store.reserve("ann", 3, ttl_s=60.0, now=130.0)

    assert ids(again) == ids(first) == ["p0", "p1", "p2"]
    assert set(again["reserved_until"]) == {190.0}
    # A bigger page keeps the held items and adds free ones after bob's.
    assert ids(store.reserve("ann", 4, now=130.0)) == ["p0", "p1", "p2", "p4"]


def test_expired_reservations_are_handed_out_again(store: LabelStore) -> None:
    store.enqueue(items(3), iteration=1)
    store.reserve("ann", 2, ttl_s=60.0, now=100.0)

    assert store.queue_counts(now=159.0) == {"queued": 1, "reserved": 2, "done": 0}
    assert store.queue_counts(now=160.0) == {"queued": 3, "reserved": 0, "done": 0}
    expired = store.queue(status="queued", now=160.0)
    assert ids(expired) == ["p0", "p1", "p2"]
    assert expired["reserved_by"].isna().all()

    bob = store.reserve("bob", 2, now=160.0)
    assert ids(bob) == ["p0", "p1"]
    assert set(bob["reserved_by"]) == {"bob"}
    # ann's page went to bob, so her reload gets what is left.
    assert ids(store.reserve("ann", 2, now=161.0)) == ["p2"]


def test_release_returns_the_items_to_the_queue(store: LabelStore) -> None:
    store.enqueue(items(3), iteration=1)
    store.reserve("ann", 2)

    assert store.release("ann") == 2
    assert store.release("ann") == 0
    assert store.queue_counts() == {"queued": 3, "reserved": 0, "done": 0}
    assert ids(store.reserve("bob", 1)) == ["p0"]


# -- complete -----------------------------------------------------------------------


def test_complete_marks_items_done_once(store: LabelStore) -> None:
    store.enqueue(items(4), iteration=1)
    store.reserve("ann", 2, now=100.0)

    assert store.complete(["p0", "p1"], labeler="ann", now=150.0) == 2
    assert store.complete(["p0", "p1"], labeler="ann", now=200.0) == 0

    assert store.queue_counts() == {"queued": 2, "reserved": 0, "done": 2}
    done = store.queue(status="done")
    assert ids(done) == ["p0", "p1"]
    assert set(done["done_at"]) == {150.0}
    assert set(done["reserved_by"]) == {"ann"}
    # Done items are never handed out again, nor kept on ann's page.
    assert ids(store.reserve("ann", 5, now=160.0)) == ["p2", "p3"]


def test_complete_takes_any_item_of_the_product(store: LabelStore) -> None:
    store.enqueue(items(2), iteration=1)
    store.enqueue(items(1), iteration=2)
    store.reserve("bob", 1, iteration=1)

    # Labels from ann settle the product even where bob holds it.
    assert store.complete(["p0"], labeler="ann", iteration=1) == 1
    assert store.complete(["p0"], labeler="ann") == 1  # iteration 2's item
    assert store.queue_counts(1) == {"queued": 1, "reserved": 0, "done": 1}


def test_complete_warns_about_products_not_in_the_queue(
    store: LabelStore, caplog: pytest.LogCaptureFixture
) -> None:
    store.enqueue(items(1), iteration=1)

    with caplog.at_level(logging.WARNING, logger="raycat.labels.sqlite"):
        assert store.complete(["p0", "zz1", "zz2"], labeler="ann") == 1
    assert "2 of 3 products completed by 'ann' are not in the queue" in caplog.text


# -- errors -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "match"),
    [
        (
            items(1).drop(columns=["strategy"]),
            r"enqueue: items lack the required column\(s\) \['strategy'\]; they have "
            r"\['product_id', 'category'\]",
        ),
        (
            items(2, strategy=["random", "uncertanity"]),
            r"row 1 \(product 'p1'\): unknown strategy 'uncertanity'; strategy must "
            r"be one of \['random', 'disagreement', 'uncertainty', 'combined'\]",
        ),
        (
            items(1, category=["shoes"]),
            r"row 0 \(product 'p0'\): unknown category 'shoes'; use a category id",
        ),
        (items(1, product_id=[""]), r"enqueue: row 0: empty product_id"),
        (
            items(2, score=[0.5, "high"]),
            r"column 'score' must hold numbers; row 1 has 'high'",
        ),
        (
            items(1, rule_positive=["yes"]),
            r"rule_positive must be true, false or null, got 'yes'",
        ),
        (
            items(1, also_for=["a/b"]),
            r"also_for must be a list of category ids \(or empty\), got 'a/b'",
        ),
        (
            items(1, also_for=[["a/x"]]),
            r"also_for names unknown category 'a/x'",
        ),
    ],
)
def test_bad_items_raise_and_queue_nothing(
    store: LabelStore, frame: pd.DataFrame, match: str
) -> None:
    with pytest.raises(LabelError, match=match):
        store.enqueue(frame, iteration=1)
    assert store.queue().empty


def test_bad_arguments_raise(store: LabelStore) -> None:
    with pytest.raises(LabelError, match=r"reserve: size must be at least 1 .*got 0"):
        store.reserve("ann", 0)
    with pytest.raises(LabelError, match=r"reserve: labeler must be a non-empty"):
        store.reserve(" ", 5)
    with pytest.raises(LabelError, match=r"complete: labeler must be a non-empty"):
        store.complete(["p0"], labeler="")
    with pytest.raises(LabelError, match=r"ttl_s must be a positive number"):
        store.reserve("ann", 5, ttl_s=0)
    with pytest.raises(LabelError, match=r"pass \['p0'\] for one product"):
        store.complete("p0", labeler="ann")
    with pytest.raises(LabelError, match=r"enqueue: iteration must be a whole"):
        store.enqueue(items(1), iteration=-1)
    with pytest.raises(LabelError, match=r"enqueue: items must be a pandas DataFrame"):
        store.enqueue([{"product_id": "p0"}], iteration=1)  # type: ignore[arg-type]
    with pytest.raises(LabelError, match=r"unknown status 'open'; status must be"):
        store.queue(status="open")


# -- the v1 -> v2 migration ---------------------------------------------------------

# The tables of a version-1 store, as raycat wrote them before the queue.
V1_SCHEMA = """
CREATE TABLE raycat_schema (component TEXT PRIMARY KEY, version INTEGER NOT NULL);
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
    seq INTEGER NOT NULL,
    PRIMARY KEY (labeler, product_id, category, iteration)
);
CREATE INDEX labels_product ON labels (product_id, category, source);
CREATE INDEX labels_source ON labels (source);
CREATE TABLE label_counter (last_seq INTEGER NOT NULL);
INSERT INTO label_counter (last_seq) VALUES (1);
INSERT INTO raycat_schema (component, version) VALUES ('labels', 1);
INSERT INTO labels VALUES ('ann', 'p1', 'e', 1, 1, 'human', NULL, 5.0, NULL, 1);
"""


def test_version_1_store_is_upgraded_on_open(
    tmp_path: Path, taxonomy: Taxonomy, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "labels.sqlite"
    with sqlite3.connect(path) as conn:
        conn.executescript(V1_SCHEMA)
    conn.close()

    with (
        caplog.at_level(logging.INFO, logger="raycat.labels.sqlite"),
        open_label_store(tmp_path, taxonomy) as store,
    ):
        assert store.product_ids() == {"p1"}
        store.write([LabelEvent("p2", "e", 0, Source.HUMAN, labeler="ann")])
        assert store.enqueue(items(2), iteration=2) == 2
        assert ids(store.reserve("ann", 1)) == ["p0"]
    assert "from schema version 1 to 2" in caplog.text

    with sqlite3.connect(path) as conn:
        (version,) = conn.execute("SELECT version FROM raycat_schema").fetchone()
    conn.close()
    assert version == 2
    with open_label_store(tmp_path, taxonomy) as store:  # opens without upgrading
        assert store.queue_counts() == {"queued": 1, "reserved": 1, "done": 0}
        assert len(store.events()) == 2


# -- several processes ------------------------------------------------------------

N_LABELERS = 4
N_ITEMS = 60
PAGE = 5


def _label_until_empty(home: str, labeler: str, out: str, barrier: Any) -> None:
    """One labeler: fetch pages until the queue is dry, completing each page."""
    taxonomy = Taxonomy.from_paths(PATHS)
    pages = []
    with open_label_store(home, taxonomy) as store:
        barrier.wait(timeout=60)
        while True:
            page = ids(store.reserve(labeler, PAGE))
            if not page:
                break
            pages.append(page)
            store.complete(page, labeler=labeler)
    Path(out).write_text(json.dumps(pages))


def test_labelers_in_several_processes_never_share_an_item(
    tmp_path: Path, taxonomy: Taxonomy
) -> None:
    with open_label_store(tmp_path, taxonomy) as store:
        store.enqueue(items(N_ITEMS), iteration=1)

    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(N_LABELERS)
    outs = [tmp_path / f"labeler{i}.json" for i in range(N_LABELERS)]
    procs = [
        ctx.Process(
            target=_label_until_empty,
            args=(str(tmp_path), f"labeler{i}", str(out), barrier),
        )
        for i, out in enumerate(outs)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0] * N_LABELERS

    pages = [page for out in outs for page in json.loads(out.read_text())]
    handed = [pid for page in pages for pid in page]
    assert len(handed) == len(set(handed)) == N_ITEMS
    assert all(1 <= len(page) <= PAGE for page in pages)
    with open_label_store(tmp_path, taxonomy) as store:
        assert store.queue_counts() == {"queued": 0, "reserved": 0, "done": N_ITEMS}
        done = store.queue()
    # Whoever was handed an item completed it.
    by_labeler = {
        pid: f"labeler{i}"
        for i, out in enumerate(outs)
        for page in json.loads(out.read_text())
        for pid in page
    }
    assert dict(zip(done["product_id"], done["reserved_by"], strict=True)) == (
        by_labeler
    )
