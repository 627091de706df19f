"""Peak memory of one training epoch of a deep image component on catalogs of
different sizes: images stream through Ray Data, so it should stay flat.

For each ``--products`` size, a synthetic catalog is written (or reused from
``--catalog-dir``), then a fresh Python process trains the component for one
epoch in process (``trainer: local``, Ray Data decoding images in Ray tasks)
and reports:

- ``loaded``: the driver's RSS once TensorFlow is imported and the training
  frame is loaded (text and labels are held in memory by design, so this
  grows with the catalog);
- ``driver peak``: the driver's peak RSS (``ru_maxrss``) over training;
- ``all peak``: the peak, sampled every 0.5 s, of the summed RSS of the driver
  and every process it started (Ray's raylet, object store, workers); shared
  pages are counted once per process, so it overstates;
- what decoded pixels would take if they were materialized, for scale.

    .venv/bin/python bench/bench_deep_memory.py --products 10000 100000
    .venv/bin/python bench/bench_deep_memory.py --products 2000 --kind wide_deep_conv
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
HERE = Path(__file__).resolve().parent


def _proc_kib(pid: int, file: str, key: str) -> int:
    """The KiB figure on the ``key`` line of ``/proc/<pid>/<file>``, else 0."""
    try:
        with open(f"/proc/{pid}/{file}") as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _rss_kib(pid: int) -> int:
    return _proc_kib(pid, "status", "VmRSS:")


def _pss_kib(pid: int) -> int:
    """Proportional set size: shared pages (Ray's object store is shared memory
    mapped into every worker) count once in a sum, split among the processes
    that map them, where RSS would count them in each."""
    return _proc_kib(pid, "smaps_rollup", "Pss:")


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def _shmem_pss_kib(pid: int) -> int:
    """The shared-memory part of the PSS (on a local Ray instance: the object
    store, a file in /dev/shm mapped by every worker)."""
    return _proc_kib(pid, "smaps_rollup", "Pss_Shmem:")


class TreeSampler(threading.Thread):
    """Peak summed RSS (or PSS, with ``pss=True``) of this process and all its
    descendants.  ``history`` keeps every sample as (seconds since start,
    KiB, KiB of it in shared memory; the last is 0 unless ``pss``)."""

    def __init__(self, every_s: float = 0.5, *, pss: bool = False):
        super().__init__(daemon=True)
        self.every_s = every_s
        self._pss = pss
        self.peak_kib = 0
        self.history: list[tuple[float, int, int]] = []
        self._done = threading.Event()

    def run(self) -> None:
        started = time.perf_counter()
        while not self._done.is_set():
            pids = _descendants(os.getpid())
            size = _pss_kib if self._pss else _rss_kib
            total = sum(size(pid) for pid in pids)
            shmem = sum(_shmem_pss_kib(pid) for pid in pids) if self._pss else 0
            self.history.append((time.perf_counter() - started, total, shmem))
            self.peak_kib = max(self.peak_kib, total)
            self._done.wait(self.every_s)

    def stop(self) -> int:
        self._done.set()
        self.join()
        return self.peak_kib


def run_one(args: argparse.Namespace) -> None:
    """Train one epoch on the catalog in ``args.run_one``; print JSON."""
    sys.path.insert(0, str(HERE))
    from bench_image_input import load_demo_frame, start_ray

    from raycat.components import component_class
    from raycat.data import split_train_valid

    frame, taxonomy = load_demo_frame(Path(args.run_one))
    train, valid = split_train_valid(frame, 0.05, seed=0)
    frame_mib = _rss_kib(os.getpid()) / 1024
    start_ray(args.object_store_mib)

    params = {
        "trainer": "local",
        "epochs": 1,
        "image_size": args.image_size,
        "batch_size": args.batch_size,
        "weights": None,
        "fine_tune_layers": 0,
    }
    if args.kind != "image":
        params.update({"vocab_size": 5000, "sequence_length": 24})
    comp = component_class(args.kind)(taxonomy, params)
    sampler = TreeSampler()
    sampler.start()
    started = time.perf_counter()
    info = comp.fit(train, valid)
    elapsed = time.perf_counter() - started
    tree_peak = sampler.stop()
    print(
        json.dumps(
            {
                "products": len(frame),
                "train": len(train),
                "frame_mib": frame_mib,
                "driver_peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                / 1024,
                "tree_peak_mib": tree_peak / 1024,
                "fit_s": elapsed,
                "loss": info["final_loss"],
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, nargs="+", default=[10000, 100000])
    parser.add_argument(
        "--kind", default="image", choices=["image", "wide_deep_conv", "rnn_wide_conv"]
    )
    parser.add_argument("--image-size", type=int, default=48, help="model input")
    parser.add_argument("--jpeg-size", type=int, default=64, help="files' side")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--object-store-mib", type=int, default=500)
    parser.add_argument(
        "--catalog-dir", help="keep (and reuse) the catalogs here, one per size"
    )
    parser.add_argument("--run-one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run_one:
        run_one(args)
        return

    sys.path.insert(0, str(HERE))
    from raycat.demo import generate_catalog
    from raycat.demo.synthetic import PRODUCTS_FILE

    print(
        f"cpu_count={os.cpu_count()} kind={args.kind} image_size={args.image_size} "
        f"jpeg={args.jpeg_size}px batch={args.batch_size} epochs=1 "
        f"object_store={args.object_store_mib} MiB"
    )
    with tempfile.TemporaryDirectory(prefix="raycat-bench-memory-") as tmp:
        root = Path(args.catalog_dir or tmp)
        for n in args.products:
            out = root / f"demo-{n}-{args.jpeg_size}"
            if not (out / PRODUCTS_FILE).is_file():
                started = time.perf_counter()
                generate_catalog(
                    out, n, seed=0, image_size=args.jpeg_size, overwrite=True
                )
                print(
                    f"catalog of {n} written in {time.perf_counter() - started:.0f} s"
                )
            cmd = [sys.executable, __file__, "--run-one", str(out)]
            cmd += ["--kind", args.kind, "--image-size", str(args.image_size)]
            cmd += ["--batch-size", str(args.batch_size)]
            cmd += ["--object-store-mib", str(args.object_store_mib)]
            done = subprocess.run(cmd, capture_output=True, text=True)
            lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
            if done.returncode != 0 or not lines:
                print(f"{n}: the run failed:\n{done.stderr[-3000:]}")
                continue
            r = json.loads(lines[-1])
            pixels_mib = r["train"] * args.image_size**2 * 3 / 2**20
            print(
                f"{r['products']:>7d} products: loaded {r['frame_mib']:6.0f} MiB, "
                f"driver peak {r['driver_peak_mib']:7.0f} MiB, all peak "
                f"{r['tree_peak_mib']:7.0f} MiB, fit {r['fit_s']:6.0f} s "
                f"(materialized uint8 pixels would be {pixels_mib:.0f} MiB)"
            )


if __name__ == "__main__":
    main()
