"""Text featurization + linear-model scoring of a synthetic pool: Ray Data
(an actor pool, model loaded once per actor) vs a plain single-process loop,
in one run.

    python bench/bench_text_scoring.py --products 100000

Prints both throughputs (products/s) and their ratio.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd


def synthetic_pool(
    n: int, seed: int, n_categories: int = 40
) -> tuple[pd.DataFrame, list]:
    """Product texts drawn from per-category vocabularies plus shared filler."""
    rng = np.random.default_rng(seed)
    vocab = [f"w{i}" for i in range(5000)]
    cat_words = [rng.choice(vocab, 30, replace=False) for _ in range(n_categories)]
    filler = np.array(vocab[:500])
    cats = rng.integers(0, n_categories, n)
    titles, descs = [], []
    for c in cats:
        words = rng.choice(cat_words[c], 6)
        fill = rng.choice(filler, 12)
        titles.append(" ".join(words[:3]) + " " + " ".join(fill[:2]))
        descs.append(" ".join(words[3:]) + " " + " ".join(fill[2:]))
    frame = pd.DataFrame(
        {
            "product_id": [f"p{i}" for i in range(n)],
            "title": titles,
            "description": descs,
            "extra_text": "",
            "colour": "",
            "image": None,
        }
    )
    paths = [["Top" + str(c // 8), f"Cat{c}"] for c in range(n_categories)]
    return frame, [paths[c] for c in cats], paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=100_000)
    parser.add_argument("--train", type=int, default=5_000)
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--actors", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args()

    import ray
    import ray.data

    from raycat.components import component_class
    from raycat.scoring import score_dataset
    from raycat.taxonomy import Taxonomy

    pool, product_paths, all_paths = synthetic_pool(args.products, seed=0)
    taxonomy = Taxonomy.from_paths(all_paths)
    train = pool.head(args.train).copy()
    train["targets"] = [
        sorted(taxonomy.closure([taxonomy.id_for_path(p)]))
        for p in product_paths[: args.train]
    ]
    model = component_class("linear")(taxonomy, {"text": {"features": "tfidf"}})
    model.fit(train, train.head(10))

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = model.save(Path(tmp) / "model")
        pool_path = Path(tmp) / "pool.parquet"
        pool.to_parquet(pool_path, row_group_size=args.batch_size)

        # Baseline: one process reads the same file and scores batch by batch.
        start = time.perf_counter()
        frame = pd.read_parquet(pool_path)
        scored = 0
        for lo in range(0, len(frame), args.batch_size):
            scored += len(model.predict_proba(frame.iloc[lo : lo + args.batch_size]))
        loop_s = time.perf_counter() - start
        assert scored == args.products

        ray.init(
            num_cpus=os.cpu_count(),
            include_dashboard=False,
            log_to_driver=False,
            object_store_memory=1 << 30,
        )
        ray.data.DataContext.get_current().enable_progress_bars = False
        start = time.perf_counter()
        ds = score_dataset(
            ray.data.read_parquet(str(pool_path)),
            model_dir,
            batch_size=args.batch_size,
            max_actors=args.actors,
        )
        n = 0
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            n += len(batch["product_id"])
        ray_s = time.perf_counter() - start
        assert n == args.products
        ray.shutdown()

    loop_rate, ray_rate = args.products / loop_s, args.products / ray_s
    print(
        f"products: {args.products}, categories: {len(taxonomy)}, "
        f"batch size: {args.batch_size}, cores: {os.cpu_count()}"
    )
    print(f"single-process loop: {loop_rate:10.0f} products/s ({loop_s:.1f} s)")
    print(
        f"Ray Data, {args.actors} actors: {ray_rate:10.0f} products/s ({ray_s:.1f} s,"
        " Ray start-up excluded)"
    )
    print(f"ratio Ray Data / loop: {ray_rate / loop_rate:.2f}")


if __name__ == "__main__":
    main()
