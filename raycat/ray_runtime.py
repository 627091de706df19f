"""Connecting to Ray: the cluster a job was submitted to, or a local instance."""

from __future__ import annotations

import logging
import os

logger = logging.getLogger(__name__)

# The object store defaults to 30% of RAM; a local run of raycat needs far less,
# and a smaller store leaves memory to the models.
LOCAL_OBJECT_STORE_BYTES = 1 << 30

# pyarrow's default allocator (mimalloc) keeps what a worker has freed: a Ray
# Data worker that read, scored or wrote a few hundred MiB blocks stays that size
# for the rest of the run (measured by bench/bench_pool_scoring.py).  The system
# allocator hands large frees back.  Set before the local instance starts, so
# the raylet and every worker inherit it; cluster.yaml sets it on each node.
ARROW_POOL_ENV = "ARROW_DEFAULT_MEMORY_POOL"


def init_ray(
    address: str | None = None, *, num_cpus: int | None = None, quiet: bool = False
) -> None:
    """Connect to Ray once per process.

    Inside ``ray job submit`` (``RAY_ADDRESS`` is set) or with ``address`` this
    joins that cluster; otherwise it starts a local instance with the dashboard
    off.  Calling it again is a no-op.
    """
    import ray
    from ray.data import DataContext

    if ray.is_initialized():
        return
    quiet = quiet or bool(os.environ.get("RAYCAT_QUIET"))
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        logger.info("connecting to the Ray cluster at %s", address)
        ray.init(address=address, log_to_driver=not quiet)
    else:
        os.environ.setdefault(ARROW_POOL_ENV, "system")
        ray.init(
            address="local",
            num_cpus=num_cpus,
            include_dashboard=False,
            object_store_memory=LOCAL_OBJECT_STORE_BYTES,
            log_to_driver=not quiet,
            configure_logging=False,
        )
        logger.info(
            "started a local Ray instance with %s CPUs",
            ray.cluster_resources().get("CPU"),
        )
    ctx = DataContext.get_current()
    ctx.enable_progress_bars = not quiet and bool(os.environ.get("RAYCAT_PROGRESS"))
    ctx.print_on_execution_start = False
