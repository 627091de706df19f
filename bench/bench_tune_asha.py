"""One deep component tuned with ASHA early stopping vs without, same number
of trials, one run: wall time, results reported (one per epoch, plus a final
one per trial that was not stopped: the cost) and the best score.

    python bench/bench_tune_asha.py --products 1000 --trials 6 --epochs 8
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import yaml


def space(scheduler: str, trials: int, epochs: int) -> dict:
    return {
        "trials": trials,
        "max_concurrent": 2,
        "scheduler": scheduler,
        "asha": {"max_t": epochs, "grace_period": 1, "reduction_factor": 2},
        "metric": "val_loss",
        "mode": "min",
        "seed": 0,
        "space": {
            "learning_rate": {"type": "float", "low": 1e-4, "high": 3e-2, "log": True},
            "embedding_dim": {"type": "int", "low": 8, "high": 64, "log": True},
            "dropout": {"type": "float", "low": 0.0, "high": 0.5},
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=1000)
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--kind", default="embed_mean")
    args = parser.parse_args()

    import ray

    from raycat.config import load_config
    from raycat.demo import generate_catalog
    from raycat.ray_runtime import init_ray
    from raycat.tuning.runner import run_tune

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        summary = generate_catalog(
            Path(tmp) / "demo", args.products, seed=1, image_size=32
        )
        data = yaml.safe_load(summary.config_path.read_text())
        data["components"] = {
            "deep": {
                "kind": args.kind,
                "params": {
                    "epochs": args.epochs,
                    "patience": args.epochs,
                    "vocab_size": 5000,
                    "sequence_length": 32,
                },
            }
        }
        data["tuning"] = {"spaces_dir": "spaces"}
        spaces = summary.config_path.parent / "spaces"
        spaces.mkdir()
        summary.config_path.write_text(yaml.safe_dump(data))
        init_ray(quiet=True)
        for scheduler in ("none", "asha"):
            (spaces / "deep.yaml").write_text(
                yaml.safe_dump(
                    space(scheduler, args.trials, args.epochs), sort_keys=False
                )
            )
            os.environ["RAYCAT_HOME"] = str(Path(tmp) / scheduler)
            config = load_config(summary.config_path)
            start = time.perf_counter()
            result = run_tune(config, ["deep"])
            wall = time.perf_counter() - start
            search = result["components"][0]
            epochs = sum(h["iterations"] or 0 for h in search["history"])
            final = search.get("final", {})
            rows.append(
                (
                    scheduler,
                    wall,
                    epochs,
                    search["best_metric"],
                    final.get("metrics", {}).get("test", {}).get("hierarchical_f1"),
                )
            )
        ray.shutdown()

    print(
        f"{args.kind}: {args.trials} trials of up to {args.epochs} epochs, "
        f"{args.products} products, {os.cpu_count()} cores"
    )
    print(
        f"{'scheduler':10} {'wall s':>8} {'reports':>7} {'best val_loss':>14} "
        f"{'test h-F1':>10}"
    )
    for name, wall, epochs, best, test in rows:
        test_text = f"{test:.4f}" if test is not None else "n/a"
        print(f"{name:10} {wall:8.1f} {epochs:7d} {best:14.4f} {test_text:>10}")
    print(
        f"ASHA cost: {rows[1][2] / max(rows[0][2], 1):.2f}x the reports, "
        f"{rows[1][1] / rows[0][1]:.2f}x the wall time"
    )


if __name__ == "__main__":
    main()
