"""The page step of an active-learning iteration (``raycat retrain`` after
pool scoring) on large synthetic pools: reading the scores back
(:func:`raycat.pipelines.score.read_scores`) and composing the page
(:func:`raycat.active.page.compose_page`), with wall time and peak memory.

For each pool size a score folder shaped like ``raycat score``'s output (one
list column of float32 per probability, written in several files in a
shuffled order) is written first.  Then each way runs in a fresh child
process: it reads the folder back, composes a page of ``--labels`` items with
the default strategy mix, and prints its times and peak RSS.  The ways:

- ``previous`` (the baseline): ``read_scores`` as it was before (ids sorted in
  Python, one numpy array per product, then ``np.stack``; every column);
- ``read_scores``: as it is (one sort in Arrow, one reshape of each file's
  flat values written straight into id order, only the page's columns).

Both must give the same page (compared by a digest of its items).

The page step holds the pool's (products x categories) matrices in the
driver, so its memory follows the pool; this bench says by how much.

    .venv/bin/python bench/bench_page.py --products 100000 1000000
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROLES = ("p_model", "p_text", "p_image")
# The baseline first: read_scores as it was, then as it is.
WAYS = ("previous", "read_scores")


def write_scores(folder: Path, n: int, n_cat: int, files: int, seed: int) -> None:
    """Synthetic scores: skewed probabilities (most products belong to few
    categories), rows spread over ``files`` files in a shuffled order."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    order = rng.permutation(n)
    for i, rows in enumerate(np.array_split(order, files)):
        columns = {"product_id": pa.array([f"p{r:09d}" for r in rows], pa.string())}
        for role in ROLES:
            p = rng.beta(0.3, 3.0, size=(rows.size, n_cat)).astype(np.float32)
            offsets = np.arange(0, p.size + 1, n_cat, dtype=np.int64)
            columns[role] = pa.LargeListArray.from_arrays(offsets, p.reshape(-1))
        pq.write_table(pa.table(columns), folder / f"part-{i:03d}.parquet")


def previous_read_scores(folder: Path) -> dict[str, np.ndarray]:
    """read_scores as it was before this bench (commit 899c882): ids sorted in
    Python, each list column turned into one array per product, then
    stacked."""
    import pyarrow.dataset as pads

    table = pads.dataset(str(folder), format="parquet").to_table()
    ids = np.asarray(table["product_id"].to_pylist(), dtype=object)
    order = np.argsort(ids)
    out = {"product_id": ids[order]}
    for name in table.column_names:
        if name != "product_id":
            col = table[name].combine_chunks()
            out[name] = np.stack(col.to_numpy(zero_copy_only=False))[order]
    return out


def run_one(folder: Path, way: str, labels: int, seed: int) -> dict:
    """Child process: read the scores back one way, then compose the page."""
    import hashlib

    # Imported before the clock starts, as a long-running driver has them.
    import pyarrow.compute
    import pyarrow.dataset  # noqa: F401

    from raycat.active.budget import class_budget
    from raycat.active.page import compose_page
    from raycat.pipelines.score import read_scores

    started = time.perf_counter()
    if way == "read_scores":
        scores = read_scores(folder, columns=ROLES)
    else:
        scores = previous_read_scores(folder)
    read_s = time.perf_counter() - started
    n, n_cat = scores["p_model"].shape
    cats = [f"c{j:04d}" for j in range(n_cat)]
    budgets = class_budget(np.random.default_rng(seed).uniform(0, 1, n_cat), labels)
    started = time.perf_counter()
    page = compose_page(
        scores["product_id"],
        scores["p_model"],
        categories=cats,
        budgets=budgets,
        p_text=scores["p_text"],
        p_image=scores["p_image"],
        seed=seed,
    )
    compose_s = time.perf_counter() - started
    picked = "\n".join(
        page["product_id"] + " " + page["category"] + " " + page["strategy"]
    )
    return {
        "products": n,
        "way": way,
        "categories": n_cat,
        "items": len(page),
        "read_s": round(read_s, 2),
        "compose_s": round(compose_s, 2),
        "peak_rss_mib": round(
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        ),
        "matrices_mib": round(len(ROLES) * n * n_cat * 4 / 2**20),
        "page_digest": hashlib.sha256(picked.encode()).hexdigest()[:12],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, nargs="+", default=[100_000])
    parser.add_argument("--categories", type=int, default=300)
    parser.add_argument("--labels", type=int, default=10_000, help="page size")
    parser.add_argument("--files", type=int, default=8, help="score files per pool")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--way", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(Path(args.one), args.way, args.labels, args.seed)))
        return

    rows = []
    with tempfile.TemporaryDirectory(prefix="raycat-bench-page-") as tmp:
        for n in args.products:
            folder = Path(tmp) / f"scores-{n}"
            write_scores(folder, n, args.categories, args.files, args.seed)
            for way in WAYS:
                done = subprocess.run(
                    [
                        *(sys.executable, __file__, "--one", str(folder)),
                        *("--way", way, "--labels", str(args.labels)),
                        *("--seed", str(args.seed)),
                    ],
                    capture_output=True,
                    text=True,
                )
                if done.returncode != 0:
                    sys.exit(f"{way} on {n} failed:\n{done.stderr[-3000:]}")
                rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
                print(json.dumps(rows[-1]), flush=True)
            shutil.rmtree(folder)

    print()
    heads = ("products", "way", "categories", "items", "read_s", "compose_s")
    heads += ("peak_rss_mib", "matrices_mib")
    print(" ".join(f"{h:>12}" for h in heads))
    for r in rows:
        print(" ".join(f"{r[h]:>12}" for h in heads))
    for n in args.products:
        by = {r["way"]: r for r in rows if r["products"] == n}
        before, now = by["previous"], by["read_scores"]
        same = before["page_digest"] == now["page_digest"]
        speed = before["read_s"] / now["read_s"]
        memory = now["peak_rss_mib"] / before["peak_rss_mib"]
        print(
            f"{n} products: read_scores {speed:.2f}x as fast as before, peak RSS "
            f"{memory:.2f}x of before; {'the same' if same else 'DIFFERENT'} page"
        )


if __name__ == "__main__":
    main()
