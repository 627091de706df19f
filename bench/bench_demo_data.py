"""Throughput of ``raycat demo-data``: one worker against all cores.

Generates the same catalog twice into temporary folders, with 1 worker and with
``--workers`` (default: every core), and prints products/s for each, the
speed-up, whether the two Parquet files are byte-identical, the CPU time per
product (a figure that other load on the machine disturbs less than wall time),
and peak RSS of this process and of its worker processes.

    .venv/bin/python bench/bench_demo_data.py --products 20000
    .venv/bin/python bench/bench_demo_data.py --products 100000 --skip-serial
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import tempfile
from pathlib import Path

from raycat.demo import DemoSummary, generate_catalog


def _peak_rss_mib(who: int) -> float:
    # ru_maxrss is in KiB on Linux; for RUSAGE_CHILDREN it is the largest child.
    return resource.getrusage(who).ru_maxrss / 1024


def _cpu_s() -> float:
    """CPU seconds used so far by this process and its finished children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _run(out: Path, args: argparse.Namespace, workers: int) -> DemoSummary:
    cpu_before = _cpu_s()
    summary = generate_catalog(
        out,
        args.products,
        seed=args.seed,
        image_size=args.image_size,
        workers=workers,
        chunk_size=args.chunk_size,
    )
    cpu_us = (_cpu_s() - cpu_before) / summary.n_products * 1e6
    images_mib = (
        sum(p.stat().st_size for p in summary.images_dir.rglob("*.jpg")) / 2**20
    )
    print(
        f"workers={summary.workers:<3d} {summary.n_products} products in "
        f"{summary.elapsed_s:7.1f} s = {summary.products_per_s:8.0f} products/s "
        f"({cpu_us:.0f} CPU us/product; {images_mib:.0f} MiB of images)"
    )
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=20000)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--chunk-size", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--skip-serial", action="store_true", help="only run with --workers"
    )
    parser.add_argument("--verbose", action="store_true", help="log every chunk")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)

    print(f"cpu_count={os.cpu_count()} products={args.products}")
    with tempfile.TemporaryDirectory(prefix="raycat-bench-demo-") as tmp:
        serial = None
        if not args.skip_serial:
            serial = _run(Path(tmp) / "serial", args, 1)
        parallel = _run(Path(tmp) / "parallel", args, args.workers)
        if serial is not None:
            same = (
                serial.products_path.read_bytes() == parallel.products_path.read_bytes()
            )
            ratio = parallel.products_per_s / serial.products_per_s
            print(f"speed-up {ratio:.2f}x; byte-identical products.parquet: {same}")
    print(
        f"peak RSS: parent {_peak_rss_mib(resource.RUSAGE_SELF):.0f} MiB, "
        f"largest worker {_peak_rss_mib(resource.RUSAGE_CHILDREN):.0f} MiB"
    )


if __name__ == "__main__":
    main()
