"""Tuning 3 components: all searches in parallel (as `raycat tune` runs them)
vs one component after another, one trial at a time; same trials, one run.

    python bench/bench_tune_parallel.py --products 1500 --trials 4

Prints both wall times and the speed-up.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import yaml

COMPONENTS = {
    "tfidf": {"kind": "linear", "params": {"text": {"features": "tfidf"}}},
    "hist": {"kind": "linear", "params": {"text": {"features": "histogram"}}},
    "xgboost": {"kind": "xgboost", "params": {"n_jobs": 1}},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=1500)
    parser.add_argument("--trials", type=int, default=4)
    args = parser.parse_args()

    import ray

    from raycat.config import load_config
    from raycat.demo import generate_catalog
    from raycat.ray_runtime import init_ray
    from raycat.tuning.runner import run_tune

    with tempfile.TemporaryDirectory() as tmp:
        summary = generate_catalog(
            Path(tmp) / "demo", args.products, seed=1, image_size=32
        )
        data = yaml.safe_load(summary.config_path.read_text())
        data["components"] = COMPONENTS
        data["tuning"] = {"trials": args.trials}
        summary.config_path.write_text(yaml.safe_dump(data))
        init_ray(quiet=True)

        os.environ["RAYCAT_HOME"] = str(Path(tmp) / "parallel")
        config = load_config(summary.config_path)
        config.tuning.max_concurrent = 2
        start = time.perf_counter()
        run_tune(config)
        parallel_s = time.perf_counter() - start

        os.environ["RAYCAT_HOME"] = str(Path(tmp) / "sequential")
        config = load_config(summary.config_path)
        config.tuning.max_concurrent = 1
        start = time.perf_counter()
        run_tune(config, sequential=True)
        sequential_s = time.perf_counter() - start
        ray.shutdown()

    print(
        f"3 components x {args.trials} trials on {args.products} products, "
        f"{os.cpu_count()} cores"
    )
    print(f"one after another, one trial at a time: {sequential_s:7.1f} s")
    print(f"all in parallel (raycat tune):          {parallel_s:7.1f} s")
    print(f"speed-up: {sequential_s / parallel_s:.2f}x")


if __name__ == "__main__":
    main()
