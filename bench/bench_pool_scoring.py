"""Pool scoring (``raycat score``'s pipeline) on large synthetic pools: Ray Data
with an actor pool vs a plain single-process loop, in one run.

A small demo catalog trains a TF-IDF linear model (the current and text-only
model); its products' texts are then tiled into pools of the sizes asked for.
For each size, both ways score the whole pool with the same ``PoolScorer`` and
write Parquet:

- ``ray``: :func:`raycat.pipelines.score.score_pool` itself (the catalog
  streamed past the test ids, the actor pool, the streamed Parquet writer);
- ``loop``: pyarrow batches from the catalog file, scored and written one after
  another in one process.

Each (size, way) runs in a fresh child process, the Ray way with its own fresh
local Ray instance (started before the clock starts), so no run inherits
what an earlier one left resident.  Printed per size and way: products/s, and
peak memory: the summed PSS of this process and every process under it (Ray's
included; PSS counts the object store's shared pages once, where summed RSS
would count them in every worker that maps them), sampled every 0.5 s, and its
growth over this process alone.  Flat memory means the peak does not follow
the pool size: the last lines compare the largest pool with the smallest.
Every process uses the same pyarrow allocator (``--arrow-pool``, default
``system`` as raycat's local Ray sets it).

    .venv/bin/python bench/bench_pool_scoring.py --products 100000 1000000
    .venv/bin/python bench/bench_pool_scoring.py --products 1000000 10000000 \
        --ways ray
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_deep_memory import TreeSampler  # noqa: E402

logger = logging.getLogger("bench_pool_scoring")


def train_base(tmp: Path, products: int):
    """A demo catalog, prepared, with one linear model trained on it."""
    from raycat.config import ComponentSpec, load_config
    from raycat.demo import generate_catalog
    from raycat.pipelines.train_pred import run_train_pred

    demo = generate_catalog(tmp / "demo", products, seed=3, image_size=32)
    config = load_config(demo.config_path)
    config = config.model_copy(
        update={
            "home": str(tmp / "base"),
            "components": {
                "linear": ComponentSpec.model_validate(
                    {
                        "kind": "linear",
                        "params": {"text": {"features": "tfidf", "colour": "remove"}},
                    }
                )
            },
        }
    )
    run_train_pred(config)
    return config


def tile_pool(base_home: Path, home: Path, n: int) -> None:
    """A run home whose pool is ``n`` products: the base catalog's rows repeated
    under new ids (text only), and a snapshot listing them all, unlabeled."""
    catalog = pq.read_table(base_home / "catalog.parquet")
    catalog = catalog.set_column(
        catalog.schema.get_field_index("image"),
        "image",
        pa.nulls(len(catalog), catalog.schema.field("image").type),
    )
    snapshot = home / "snapshots" / "iter-000"
    snapshot.mkdir(parents=True)
    base_dev = pq.read_table(
        sorted((base_home / "snapshots").glob("iter-*"))[-1] / "dev.parquet"
    )
    list_columns = [c for c in base_dev.column_names if c != "product_id"]
    rows = len(catalog)
    with (
        pq.ParquetWriter(home / "catalog.parquet", catalog.schema) as cat_out,
        pq.ParquetWriter(snapshot / "dev.parquet", base_dev.schema) as dev_out,
    ):
        for start in range(0, n, rows):
            take = min(rows, n - start)
            ids = pa.array([f"t{start + i:08d}" for i in range(take)], pa.string())
            part = catalog.slice(0, take)
            part = part.set_column(
                part.schema.get_field_index("product_id"), "product_id", ids
            )
            cat_out.write_table(part)
            empty = [
                pa.array([[]] * take, base_dev.schema.field(c).type)
                for c in list_columns
            ]
            dev_out.write_table(pa.table([ids, *empty], schema=base_dev.schema))
    base_test = pq.read_table(
        sorted((base_home / "snapshots").glob("iter-*"))[-1] / "test.parquet"
    )
    pq.write_table(base_test.slice(0, 0), snapshot / "test.parquet")
    (home / "taxonomy.json").write_text((base_home / "taxonomy.json").read_text())


def score_with_loop(home: Path, roles: dict, out: Path, batch_size: int) -> int:
    from raycat.data import CATALOG_COLUMNS
    from raycat.pipelines.score import PoolScorer

    scorer = PoolScorer(roles)
    source = pq.ParquetFile(home / "catalog.parquet")
    writer = None
    n = 0
    out.mkdir(parents=True)
    for batch in source.iter_batches(batch_size=batch_size, columns=CATALOG_COLUMNS):
        arrays = {
            name: col.to_numpy(zero_copy_only=False)
            for name, col in zip(batch.schema.names, batch.columns, strict=True)
        }
        scored = scorer(arrays)
        table = pa.table(
            {
                k: pa.FixedSizeListArray.from_arrays(v.reshape(-1), v.shape[1])
                if v.ndim == 2
                else pa.array(v)
                for k, v in scored.items()
            }
        )
        if writer is None:
            writer = pq.ParquetWriter(out / "scores.parquet", table.schema)
        writer.write_table(table)
        n += len(table)
    if writer is not None:
        writer.close()
    return n


def run_one(args: argparse.Namespace) -> None:
    """Child process: score one pool one way; print its JSON line."""
    from raycat.config import load_config
    from raycat.pipelines.score import choose_models, score_pool

    home, models = Path(args.home), Path(args.models)
    if args.one == "ray":
        from raycat.ray_runtime import init_ray

        init_ray()  # its start-up is not timed (one per session, not per pool)
    started = time.perf_counter()
    if args.one == "loop":
        roles = choose_models(home, models_root=models)
        done = score_with_loop(home, roles, home / "scores-loop", args.batch_size)
    else:
        config = load_config(args.config).model_copy(update={"home": str(home)})
        done = score_pool(
            config,
            out_dir=home / "scores-ray",
            batch_size=args.batch_size,
            max_actors=args.actors,
            models_root=models,
            block_mib=args.block_mib,
        )["products"]
    print(json.dumps({"products": done, "seconds": time.perf_counter() - started}))


def measure(cmd: list[str], env: dict[str, str]) -> tuple[dict, int, int]:
    """Run ``cmd``; (its JSON line, peak PSS of this process and its whole
    tree in MiB, growth over this process's own PSS before it started)."""
    sampler = TreeSampler(pss=True)
    sampler.start()
    time.sleep(0.6)
    before = sampler.peak_kib
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    peak = sampler.stop()
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return result, peak // 1024, (peak - before) // 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, nargs="+", default=[100_000])
    parser.add_argument("--base", type=int, default=3000, help="demo catalog size")
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--actors", type=int, default=None)
    parser.add_argument(
        "--block-mib", type=int, default=16, help="Ray Data block size (score_pool)"
    )
    parser.add_argument(
        "--arrow-pool",
        choices=["system", "mimalloc", "jemalloc"],
        default="system",
        help="pyarrow's allocator in every process (raycat's local default: system)",
    )
    parser.add_argument(
        "--ways", nargs="+", choices=["loop", "ray"], default=["loop", "ray"]
    )
    parser.add_argument("--one", choices=["loop", "ray"], help=argparse.SUPPRESS)
    parser.add_argument("--home", help=argparse.SUPPRESS)
    parser.add_argument("--models", help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("RAYCAT_QUIET", "1")
    if args.one:
        run_one(args)
        return

    env = {**os.environ, "ARROW_DEFAULT_MEMORY_POOL": args.arrow_pool}
    rows = []
    with tempfile.TemporaryDirectory(prefix="raycat-bench-score-") as tmp_:
        tmp = Path(tmp_)
        config = train_base(tmp, args.base)
        import ray

        ray.shutdown()
        base_home = Path(config.home)
        for n in args.products:
            home = tmp / f"pool-{n}"
            tile_pool(base_home, home, n)
            for way in args.ways:
                cmd = [
                    sys.executable,
                    __file__,
                    "--one",
                    way,
                    "--home",
                    str(home),
                    "--models",
                    str(base_home / "models"),
                    "--config",
                    str(config.source_path),
                    "--batch-size",
                    str(args.batch_size),
                    "--block-mib",
                    str(args.block_mib),
                ]
                if args.actors:
                    cmd += ["--actors", str(args.actors)]
                result, peak, growth = measure(cmd, env)
                assert result["products"] == n, f"{way} scored {result} of {n}"
                seconds = result["seconds"]
                rows.append(
                    {
                        "products": n,
                        "way": way,
                        "seconds": round(seconds, 1),
                        "products_per_s": round(n / seconds),
                        "peak_pss_mib": peak,
                        "growth_mib": growth,
                    }
                )
                print(json.dumps(rows[-1]), flush=True)
            shutil.rmtree(home)

    print()
    print(f"arrow allocator: {args.arrow_pool}; block size: {args.block_mib} MiB")
    print(
        f"{'products':>10} {'way':>5} {'s':>8} {'products/s':>11} "
        f"{'peak PSS MiB':>13} {'growth MiB':>11}"
    )
    for r in rows:
        print(
            f"{r['products']:>10} {r['way']:>5} {r['seconds']:>8} "
            f"{r['products_per_s']:>11} {r['peak_pss_mib']:>13} {r['growth_mib']:>11}"
        )
    for n in args.products:
        by = {r["way"]: r for r in rows if r["products"] == n}
        if len(by) < 2:
            continue
        print(
            f"{n} products: Ray Data / loop throughput "
            f"{by['ray']['products_per_s'] / by['loop']['products_per_s']:.2f}x"
        )
    for way in args.ways:
        mine = [r for r in rows if r["way"] == way]
        if len(mine) > 1:
            small, large = mine[0], mine[-1]
            print(
                f"{way}: {large['products'] / small['products']:.0f}x the products, "
                f"{large['peak_pss_mib'] / small['peak_pss_mib']:.2f}x the peak PSS"
            )


if __name__ == "__main__":
    main()
