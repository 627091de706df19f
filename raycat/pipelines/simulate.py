"""simulate: whole active-learning runs offline, with an oracle for labelers.

For each seed, in a fresh home of its own:

- the active run: iteration 0 trains on the rule labels and queues a page;
  then, K times, the oracle answers the queued items from the ground truth
  (flipping a fraction ``noise`` of its answers) and ``retrain`` runs again;
- the random baseline: the same, but every page is 100% random, so it spends
  the same total budget without targeting.

Each iteration records the labels used so far and the test metrics of model-R,
model-A and the random baseline's model; the table goes to
``<home>/metrics/simulation.parquet`` (and the report plots it).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from raycat.config import PipelineConfig
from raycat.labels import LabelEvent, Source

logger = logging.getLogger(__name__)


def oracle_answers(
    queue: pd.DataFrame,
    truth: dict[str, set[str]],
    *,
    iteration: int,
    noise: float = 0.0,
    seed: int = 0,
) -> list[LabelEvent]:
    """The oracle's label for each queued (product, category): 1 when the
    category is in the product's ground truth (closed under ancestors), with a
    fraction ``noise`` of answers flipped.  Products without ground truth are
    skipped (and counted)."""
    rng = np.random.default_rng([seed, iteration])
    events, skipped = [], 0
    for row in queue.itertuples(index=False):
        if row.product_id not in truth:
            skipped += 1
            continue
        value = int(row.category in truth[row.product_id])
        if noise and rng.random() < noise:
            value = 1 - value
        events.append(
            LabelEvent(
                product_id=row.product_id,
                category=row.category,
                value=value,
                source=Source.ORACLE,
                labeler="oracle",
                iteration=iteration,
                strategy=row.strategy,
            )
        )
    if skipped:
        logger.warning(
            "oracle: %d queued products have no ground truth; skipped", skipped
        )
    return events


def _answer_page(
    config: PipelineConfig, iteration: int, noise: float, seed: int
) -> int:
    """Let the oracle answer the page queued in ``iteration``; labels written."""
    from raycat.run import load_run

    run = load_run(config)
    truth = run.ground_truth.closed(run.taxonomy)
    with run.open_store() as store:
        queue = store.queue(iteration=iteration)
        events = oracle_answers(
            queue, truth, iteration=iteration, noise=noise, seed=seed
        )
        # The oracle answers exactly what it was asked: no propagation would
        # add labels nobody paid for, but the store closes them like any
        # labeler's, as training expects.
        store.write(events)
        store.complete(
            queue["product_id"].tolist(), labeler="oracle", iteration=iteration
        )
    return len(events)


def _row(
    seed: int, iteration: int, model: str, labels_used: int, test: dict | None
) -> dict[str, Any]:
    test = test or {}
    return {
        "seed": seed,
        "iteration": iteration,
        "model": model,
        "labels_used": labels_used,
        "test_micro_f1": test.get("micro_f1"),
        "test_macro_f1": test.get("macro_f1"),
        "test_hierarchical_f1": test.get("hierarchical_f1"),
    }


def default_components(config: PipelineConfig) -> list[str]:
    """One fast component: the configured comparison component, else the first
    enabled linear one, else the first enabled non-random one."""
    if config.retrain.compare_component:
        return [config.retrain.compare_component]
    enabled = [n for n, s in config.components.items() if s.enabled]
    for kinds in (("linear",), tuple({s.kind for s in config.components.values()})):
        for name in enabled:
            if config.components[name].kind in kinds and name != "random":
                return [name]
    return enabled[:1]


def run_simulation(
    config: PipelineConfig,
    *,
    iterations: int = 3,
    labels: int | None = None,
    seeds: int = 3,
    noise: float = 0.0,
    components: list[str] | None = None,
) -> dict[str, Any]:
    """Simulate ``iterations`` active-learning rounds per seed, and a random
    baseline with the same budget; returns the learning curves."""
    from raycat.pipelines.retrain import run_retrain
    from raycat.run import set_aside

    started = time.time()
    base_home = Path(config.home)
    n = labels or config.active_learning.labels_per_iteration
    # Every simulation starts from the rule labels alone.
    kept = set_aside(base_home / "simulation")
    if kept:
        logger.info("the previous simulation is kept as %s", kept)
    rows: list[dict[str, Any]] = []
    for seed in range(seeds):
        for arm in ("active", "random"):
            home = base_home / "simulation" / f"seed-{seed}" / arm
            cfg = config.model_copy(deep=True)
            cfg.home = str(home)
            cfg.active_learning.labels_per_iteration = n
            cfg.active_learning.seed = seed
            shares = {"random": 1.0} if arm == "random" else None
            used = 0
            for it in range(iterations + 1):
                if it > 0:
                    used += _answer_page(cfg, it - 1, noise, seed)
                logger.info(
                    "simulation seed %d, %s run, iteration %d (%d labels)",
                    seed,
                    arm,
                    it,
                    used,
                )
                summary = run_retrain(cfg, components=components, shares=shares)
                cmp = summary["model_R_vs_A"]
                if arm == "active":
                    rows.append(_row(seed, it, "model_R", used, cmp["model_R"]["test"]))
                    rows.append(_row(seed, it, "model_A", used, cmp["model_A"]["test"]))
                else:
                    # Every label of the baseline is random: its model-R is
                    # the random-sampling model.
                    rows.append(_row(seed, it, "random", used, cmp["model_R"]["test"]))

    table = pd.DataFrame(rows)
    out = base_home / "metrics"
    out.mkdir(parents=True, exist_ok=True)
    table.to_parquet(out / "simulation.parquet")
    curves = (
        table.groupby(["model", "iteration"])[
            ["labels_used", "test_micro_f1", "test_macro_f1", "test_hierarchical_f1"]
        ]
        .mean()
        .round(4)
        .reset_index()
    )
    return {
        "pipeline": "simulate",
        "iterations": iterations,
        "labels_per_iteration": n,
        "seeds": seeds,
        "noise": noise,
        "table": str(out / "simulation.parquet"),
        "curves": curves.to_dict("records"),
        "rows": rows,
        "wall_s": round(time.time() - started, 1),
    }
