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
would count them in every worker that maps them), sampled every 0.5 s; its
growth over this process alone; the peaks of its two parts, the object store
(shared memory, capped at 1 GiB locally) and the rest (the processes' private
memory); and the peak in the first and in the second half of the scoring.
Flat memory means the peak does not follow the pool size (the last lines
compare the largest pool with the smallest) and the second half of a run
needs no more than the first.
Every process uses the same pyarrow allocator (``--arrow-pool``, default
``system`` as raycat's local Ray sets it).

    .venv/bin/python bench/bench_pool_scoring.py --products 100000 1000000
    .venv/bin/python bench/bench_pool_scoring.py --products 1000000 10000000 \
        --ways ray
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
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


def measure(cmd: list[str], env: dict[str, str]) -> tuple[dict, dict[str, int]]:
    """Run ``cmd``; its JSON line, and memory figures in MiB over this process
    and its whole tree: the peak PSS, its growth over this process's own PSS
    before the child started, the peaks of its shared-memory part (the object
    store) and of the rest, and the peak PSS in the first and in the second
    half of the scoring (the child's last ``seconds`` before it ended)."""
    sampler = TreeSampler(pss=True)
    sampler.start()
    time.sleep(0.6)
    before = sampler.peak_kib
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    peak = sampler.stop()
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])

    end = sampler.history[-1][0]
    start = end - result["seconds"]
    edges = np.linspace(start, end, 11)

    def peak_in(lo: float, hi: float) -> int:
        return max((t for at, t, _ in sampler.history if lo <= at < hi), default=0)

    memory = {
        "peak_pss_mib": peak,
        "growth_mib": peak - before,
        "store_mib": max(shm for _, _, shm in sampler.history),
        "private_mib": max(t - shm for _, t, shm in sampler.history),
        "first_half_mib": peak_in(start, edges[5]),
        "second_half_mib": peak_in(edges[5], end + 1),
    }
    memory = {k: v // 1024 for k, v in memory.items()}
    # Not in the table: the peak in each tenth of the scoring, to show a trend.
    memory["tenths_mib"] = [
        peak_in(lo, hi) // 1024 for lo, hi in itertools.pairwise(edges)
    ]
    return result, memory


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
                result, memory = measure(cmd, env)
                assert result["products"] == n, f"{way} scored {result} of {n}"
                seconds = result["seconds"]
                rows.append(
                    {
                        "products": n,
                        "way": way,
                        "seconds": round(seconds, 1),
                        "products_per_s": round(n / seconds),
                        **memory,
                    }
                )
                print(json.dumps(rows[-1]), flush=True)
            shutil.rmtree(home)

    print()
    print(f"arrow allocator: {args.arrow_pool}; block size: {args.block_mib} MiB")
    heads = {
        "products": "products",
        "way": "way",
        "seconds": "s",
        "products_per_s": "products/s",
        "peak_pss_mib": "peak PSS MiB",
        "growth_mib": "growth",
        "store_mib": "store",
        "private_mib": "private",
        "first_half_mib": "1st half",
        "second_half_mib": "2nd half",
    }
    widths = {k: max(len(v), 8) for k, v in heads.items()}
    print(" ".join(f"{v:>{widths[k]}}" for k, v in heads.items()))
    for r in rows:
        print(" ".join(f"{r[k]:>{widths[k]}}" for k in heads))
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
