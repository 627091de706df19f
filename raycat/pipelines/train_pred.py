"""train-pred: train and predict every configured component once, each as a
Ray task of its own, to prove each works end to end.

For each component: its own train / validation split of the dev snapshot,
fit, per-category thresholds chosen on validation, evaluation on validation
and on the test set, and under the run's home:

    models/<name>/            the saved model, params.json, thresholds.json
    predictions/<name>/       valid.parquet and test.parquet, one row per
                              product, one probability column per category
    metrics/train-pred.json   every component's metrics, and any errors

A component that fails is reported with its error; the others go on.
"""

from __future__ import annotations

import json
import logging
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from raycat.config import ComponentSpec, PipelineConfig
from raycat.errors import ConfigError
from raycat.pipelines.records import record_evaluations
from raycat.taxonomy import Taxonomy

logger = logging.getLogger(__name__)


def select_components(
    config: PipelineConfig, names: list[str] | None
) -> dict[str, ComponentSpec]:
    """The enabled components, or exactly those named (an unknown name is an
    error that lists the configured ones)."""
    if not names:
        return {k: v for k, v in config.components.items() if v.enabled}
    unknown = [n for n in names if n not in config.components]
    if unknown:
        raise ConfigError(
            f"--components names {unknown}, which the config does not define; "
            f"configured components: {sorted(config.components)}"
        )
    return {n: config.components[n] for n in names}


def write_predictions(
    path: Path, product_ids: list[str], probs: np.ndarray, taxonomy: Taxonomy
) -> None:
    """One row per product: ``product_id`` and one float column per category id."""
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = {"product_id": pa.array(product_ids, pa.string())}
    for j, cid in enumerate(taxonomy.ids):
        columns[cid] = pa.array(probs[:, j], pa.float32())
    pq.write_table(pa.table(columns), path)


def read_predictions(path: Path, taxonomy: Taxonomy) -> tuple[list[str], np.ndarray]:
    table = pq.read_table(path)
    ids = table.column("product_id").to_pylist()
    probs = np.column_stack([table.column(c).to_numpy() for c in taxonomy.ids]).astype(
        np.float32
    )
    return ids, probs


def _epoch_logger(name: str):
    """A ``report`` callback that logs each epoch of an iterative component."""

    def report(row: dict[str, float]) -> None:
        logger.info(
            "%s: epoch %d: %s",
            name,
            int(row.get("epoch", 0)),
            ", ".join(f"{k} {v:.4f}" for k, v in row.items() if k != "epoch"),
        )

    return report


def train_and_evaluate(
    name: str,
    spec: dict[str, Any],
    taxonomy_json: dict,
    dev: pd.DataFrame,
    test: pd.DataFrame,
    home: str,
    default_threshold: float = 0.5,
) -> dict[str, Any]:
    """Train one component and evaluate it; never raises (errors are returned
    in the result) so one failure does not stop the others."""
    from raycat.components import component_class
    from raycat.data import split_train_valid
    from raycat.evaluation import choose_thresholds, evaluate

    # In a Ray worker nothing configures logging: show this module's INFO lines
    # (they reach the driver's console with the worker's output).
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    started = time.time()
    spec_ = ComponentSpec.model_validate(spec)
    try:
        taxonomy = Taxonomy.from_json(taxonomy_json)
        comp = component_class(spec_.kind)(taxonomy, spec_.params, name=name)
        comp.resources = spec_.resources
        train, valid = split_train_valid(
            dev, spec_.split.valid_fraction, spec_.split.seed
        )
        info = comp.fit(
            train, valid, report=_epoch_logger(name) if comp.iterative else None
        )
        fit_s = time.time() - started

        y_valid = taxonomy.multi_hot(valid["targets"].tolist())
        p_valid = comp.predict_proba(valid)
        thresholds = choose_thresholds(y_valid, p_valid, default=default_threshold)
        p_test = comp.predict_proba(test)
        y_test = taxonomy.multi_hot(test["targets"].tolist())
        metrics = {
            "valid": evaluate(y_valid, p_valid, taxonomy, thresholds),
            "test": evaluate(y_test, p_test, taxonomy, thresholds),
        }

        root = Path(home)
        model_dir = comp.save(root / "models" / name)
        (model_dir / "thresholds.json").write_text(
            json.dumps(dict(zip(taxonomy.ids, map(float, thresholds), strict=True)))
        )
        # The headline numbers travel with the model, so anything that finds
        # it (scoring, serving, the next iteration) can rank it.
        (model_dir / "metrics.json").write_text(
            json.dumps(
                {
                    split: {k: v for k, v in m.items() if k != "per_category"}
                    for split, m in metrics.items()
                },
                indent=1,
            )
        )
        pred_dir = root / "predictions" / name
        write_predictions(
            pred_dir / "valid.parquet", valid["product_id"].tolist(), p_valid, taxonomy
        )
        write_predictions(
            pred_dir / "test.parquet", test["product_id"].tolist(), p_test, taxonomy
        )
        return {
            "component": name,
            "kind": spec_.kind,
            "ok": True,
            "n_train": len(train),
            "n_valid": len(valid),
            "n_test": len(test),
            "fit": info,
            "fit_s": round(fit_s, 2),
            "wall_s": round(time.time() - started, 2),
            "metrics": metrics,
            "params": comp.params.model_dump(),
            "model": str(model_dir),
            "predictions": str(pred_dir),
        }
    except Exception as err:
        logger.error("component %s failed: %s", name, err)
        return {
            "component": name,
            "kind": spec_.kind,
            "ok": False,
            "error": f"{type(err).__name__}: {err}",
            "traceback": traceback.format_exc(),
            "wall_s": round(time.time() - started, 2),
        }


def task_resources(spec: ComponentSpec) -> tuple[float, float]:
    """CPUs and GPUs for the task that trains ``spec``: its own resources, or
    none when the component starts its own Ray Train worker with them (the task
    only waits for it; holding CPUs too could leave that worker, or the Ray Data
    tasks feeding it, nothing to run on)."""
    from raycat.components import component_class

    if component_class(spec.kind).trains_elsewhere(spec.params):
        return 0.0, 0.0
    return spec.resources.cpus, spec.resources.gpus


def streaming_room() -> float:
    """CPUs that components streaming their data through Ray Data may hold at
    once: all of the cluster's but one, which stays free for the Ray Data tasks
    that feed them."""
    import ray

    return max(float(ray.cluster_resources().get("CPU", 1)) - 1.0, 0.0)


def train_components(
    specs: dict[str, ComponentSpec],
    dev: pd.DataFrame,
    test: pd.DataFrame,
    taxonomy: Taxonomy,
    out_home: str | Path,
    *,
    default_threshold: float = 0.5,
    label: str = "train",
) -> list[dict[str, Any]]:
    """Train and evaluate components as parallel Ray tasks (one each, with the
    resources its spec asks for); results in ``specs`` order.  Models and
    predictions go under ``out_home``."""
    import ray

    from raycat.components import component_class

    dev_ref, test_ref = ray.put(dev), ray.put(test)
    task = ray.remote(train_and_evaluate)

    def submit(name: str, spec: ComponentSpec):
        cpus, gpus = task_resources(spec)
        return task.options(
            num_cpus=cpus, num_gpus=gpus, name=f"{label}:{name}", max_retries=0
        ).remote(
            name,
            spec.model_dump(),
            taxonomy.to_json(),
            dev_ref,
            test_ref,
            str(out_home),
            default_threshold,
        )

    # Components that stream their data through Ray Data while they train are
    # started only while one CPU stays free for the Ray Data tasks: with every
    # CPU held by trainers waiting for data, nothing would move.  The others
    # are all submitted at once; Ray queues them by their resources.
    streaming = {n: s for n, s in specs.items() if component_class(s.kind).streams_data}
    room = streaming_room()
    pending = {submit(n, s): n for n, s in specs.items() if n not in streaming}
    waiting = list(streaming)
    busy: dict[str, float] = {}

    def start_waiting() -> None:
        while waiting:
            cpus = streaming[waiting[0]].resources.cpus
            if busy and sum(busy.values()) + cpus > room:
                return
            name = waiting.pop(0)
            busy[name] = cpus
            pending[submit(name, streaming[name])] = name
            if waiting:
                logger.info(
                    "[%s] %s started; %d more wait for CPUs (one stays free for "
                    "Ray Data)",
                    label,
                    name,
                    len(waiting),
                )

    start_waiting()
    results: dict[str, dict] = {}
    started = time.time()
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1)
        name = pending.pop(done[0])
        busy.pop(name, None)
        start_waiting()
        try:
            res = ray.get(done[0])
        except Exception as err:  # a crashed worker, not a Python error
            res = {"component": name, "ok": False, "error": str(err)}
        results[name] = res
        status = (
            f"test hierarchical F1 {res['metrics']['test']['hierarchical_f1']:.3f}"
            if res["ok"]
            else f"FAILED: {res['error']}"
        )
        logger.info(
            "[%s %d/%d] %s done after %.0f s: %s",
            label,
            len(results),
            len(specs),
            name,
            time.time() - started,
            status,
        )
    return [results[n] for n in specs]


def run_train_pred(
    config: PipelineConfig, components: list[str] | None = None
) -> dict[str, Any]:
    """The whole pipeline: prepare, read with Ray Data, train components as
    parallel Ray tasks, collect and write metrics."""
    from raycat.data import load_frame, read_split
    from raycat.ray_runtime import init_ray
    from raycat.run import prepare_run

    specs = select_components(config, components)
    run, snapshot = prepare_run(config)
    init_ray()

    sources = config.training.label_sources
    catalog = run.paths.catalog
    dev = load_frame(
        read_split(catalog, snapshot, "dev", sources=sources),
        unlabeled=config.training.unlabeled,
    )
    test = load_frame(read_split(catalog, snapshot, "test"), unlabeled="keep")
    logger.info(
        "training %d components on %d dev products; testing on %d",
        len(specs),
        len(dev),
        len(test),
    )
    if dev.empty:
        raise ConfigError(
            "no dev product has a positive label from the sources "
            f"{sources}; check the rules file (raycat rules report) or add labels"
        )

    results = train_components(
        specs,
        dev,
        test,
        run.taxonomy,
        run.paths.home,
        default_threshold=config.training.default_threshold,
        label="train-pred",
    )

    summary = {
        "pipeline": "train-pred",
        "config": config.source_path,
        "home": str(run.paths.home),
        "snapshot": str(snapshot),
        "n_dev": len(dev),
        "n_test": len(test),
        "components": results,
    }
    out = run.paths.home / "metrics" / "train-pred.json"
    out.write_text(json.dumps(summary, indent=1, default=str))
    record_evaluations(config, "train-pred", summary["components"])
    return summary


def headline(summary: dict) -> list[dict[str, Any]]:
    """One row per component: test micro / macro / hierarchical F1."""
    rows = []
    for r in summary["components"]:
        if r["ok"]:
            t = r["metrics"]["test"]
            rows.append(
                {
                    "component": r["component"],
                    "micro_f1": round(t["micro_f1"], 4),
                    "macro_f1": round(t["macro_f1"], 4),
                    "hierarchical_f1": round(t["hierarchical_f1"], 4),
                    "wall_s": r["wall_s"],
                }
            )
        else:
            rows.append({"component": r["component"], "error": r["error"]})
    return rows
