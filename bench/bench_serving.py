"""Load on the scoring app over loopback HTTP: latency and throughput of
``POST /v1/score`` with Serve's batching on and off.

    python bench/bench_serving.py [--config CONFIG] [--seconds 8]

Without ``--config`` it builds a small demo run (a linear text model as the
current model) in a temporary folder.  It starts the app on a local Ray
instance, then measures, for each batching mode:

- p50 / p99 latency of sequential requests of 1 and of 50 products;
- throughput (requests/s, products/s) of 1-product requests at 1, 16 and 64
  concurrent clients.

Each measurement stops after ``--requests`` requests or ``--seconds``
seconds, whichever comes first.  Batching is switched on the running replica
(``Scorer.set_batching``), so both modes share one deployment.  Prints a table.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def demo_config(folder: Path, n_products: int) -> Path:
    """A demo run with a trained linear text model marked current."""
    from raycat.components import component_class
    from raycat.config import load_config
    from raycat.demo import generate_catalog
    from raycat.ensembles.selection import write_current
    from raycat.run import prepare_run

    summary = generate_catalog(folder, n_products, seed=1, image_size=32, workers=1)
    run, _ = prepare_run(load_config(summary.config_path))
    closed = run.ground_truth.closed(run.taxonomy)
    frame = run.catalog.products.copy()
    frame["targets"] = [sorted(closed.get(p, ())) for p in frame["product_id"]]
    frame = frame[frame["targets"].map(len) > 0]
    model = component_class("linear")(run.taxonomy, {}, name="tfidf")
    cut = int(len(frame) * 0.8)
    model.fit(frame.iloc[:cut], frame.iloc[cut:])
    path = model.save(run.paths.home / "models" / "tfidf")
    write_current(run.paths.home, "tfidf", path, "micro_f1", 0.0)
    return summary.config_path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def measure(
    client, bodies: list[dict], clients: int, max_requests: int, seconds: float
) -> dict[str, float]:
    """Send requests from ``clients`` concurrent loops until either bound."""
    latencies: list[float] = []
    errors = 0
    sent = 0
    deadline = time.perf_counter() + seconds

    async def loop(worker: int) -> None:
        nonlocal sent, errors
        i = worker
        while sent < max_requests and time.perf_counter() < deadline:
            sent += 1
            body = bodies[i % len(bodies)]
            i += clients
            started = time.perf_counter()
            response = await client.post("/v1/score", json=body)
            latencies.append(time.perf_counter() - started)
            if response.status_code != 200:
                errors += 1

    started = time.perf_counter()
    await asyncio.gather(*(loop(w) for w in range(clients)))
    wall = time.perf_counter() - started
    lat = np.array(latencies) * 1000
    n_products = len(bodies[0]["products"])
    return {
        "requests": len(latencies),
        "errors": errors,
        "p50_ms": float(np.percentile(lat, 50)),
        "p99_ms": float(np.percentile(lat, 99)),
        "req_s": len(latencies) / wall,
        "products_s": len(latencies) * n_products / wall,
    }


async def run_scenarios(base_url: str, titles: list[str], args) -> list[dict]:
    import httpx

    def bodies(size: int) -> list[dict]:
        out = []
        for start in range(0, 20 * size, size):
            chunk = [titles[(start + k) % len(titles)] for k in range(size)]
            out.append({"products": [{"title": t} for t in chunk], "top_k": 5})
        return out

    limits = httpx.Limits(max_connections=80, max_keepalive_connections=80)
    rows = []
    async with httpx.AsyncClient(base_url=base_url, timeout=120, limits=limits) as c:
        await measure(c, bodies(1), 4, 40, 10)  # warm up
        for name, size, clients in [
            ("latency, 1 product", 1, 1),
            ("latency, 50 products", 50, 1),
            ("throughput, 1 client", 1, 1),
            ("throughput, 16 clients", 1, 16),
            ("throughput, 64 clients", 1, 64),
        ]:
            requests = args.requests if size == 1 else max(args.requests // 5, 20)
            result = await measure(c, bodies(size), clients, requests, args.seconds)
            rows.append({"scenario": name, "products": size, "clients": clients})
            rows[-1].update(result)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, help="a served run's config")
    parser.add_argument("--products", type=int, default=300, help="demo catalog size")
    parser.add_argument("--seconds", type=float, default=8.0, help="per measurement")
    parser.add_argument("--requests", type=int, default=400, help="per measurement")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--batch-wait-ms", type=float, default=5.0)
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the Ray instance")
    args = parser.parse_args(argv)

    import pandas as pd
    import ray
    from ray import serve

    from raycat.config import load_config
    from raycat.serving.app import APP_NAME, start

    tmp = tempfile.TemporaryDirectory(prefix="bench-serving-")
    config_path = args.config or demo_config(Path(tmp.name), args.products)
    config = load_config(config_path)
    s = config.serving
    s.port = free_port()
    s.auth = "none"
    s.max_products_per_request = max(s.max_products_per_request, 50)
    s.batch_max_size = args.batch_size
    s.batch_wait_s = args.batch_wait_ms / 1000
    s.model_num_cpus = 1.0
    s.ingress_num_cpus = 0.5
    titles = (
        pd.read_parquet(Path(config.home) / "catalog.parquet", columns=["title"])[
            "title"
        ]
        .astype(str)
        .tolist()
    )

    ray.init(
        address="local",
        num_cpus=args.cpus,
        include_dashboard=False,
        object_store_memory=300 * 1024 * 1024,
        log_to_driver=False,
        configure_logging=False,
    )
    started = time.perf_counter()
    start(config)
    print(f"app started in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    scorer = serve.get_deployment_handle("Scorer", app_name=APP_NAME)
    base_url = f"http://127.0.0.1:{s.port}"

    table = []
    try:
        for mode, size, wait_s in [
            ("on", args.batch_size, args.batch_wait_ms / 1000),
            ("off", 1, 0.0),
        ]:
            scorer.set_batching.remote(size, wait_s).result()
            scorer.reset_stats.remote().result()
            rows = asyncio.run(run_scenarios(base_url, titles, args))
            stats = scorer.info.remote(refresh=False).result()["stats"]
            mean_calls = stats["calls"] / max(stats["batches"], 1)
            for row in rows:
                row["batching"] = mode
            rows[-1]["calls_per_batch"] = mean_calls
            table.extend(rows)
    finally:
        serve.shutdown()
        ray.shutdown()
        tmp.cleanup()

    header = (
        f"{'batching':8} {'scenario':24} {'req':>5} {'err':>4} {'p50 ms':>8} "
        f"{'p99 ms':>8} {'req/s':>7} {'prod/s':>8}"
    )
    print(header)
    print("-" * len(header))
    for r in table:
        print(
            f"{r['batching']:8} {r['scenario']:24} {r['requests']:5d} "
            f"{r['errors']:4d} {r['p50_ms']:8.1f} {r['p99_ms']:8.1f} "
            f"{r['req_s']:7.1f} {r['products_s']:8.1f}"
        )
    for r in table:
        if "calls_per_batch" in r:
            print(
                f"batching {r['batching']}: {r['calls_per_batch']:.2f} calls per "
                "model batch on average over its runs"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
