"""hypertune: one Ray Tune experiment per component, all at the same time.

Each component's experiment runs in its own ``ray.remote(num_cpus=0)`` task (Tune
crashes when several Tuners share one driver thread, see RAY_NOTES): an Optuna
searcher over the component's search space, its own concurrency limit so no
component starves the others, ASHA early stopping for iterative models,
retries of failed trials, and experiment state under ``<home>/tune/<name>`` so
an interrupted search resumes with ``resume=True``.

When a search ends, the best trial's hyperparameters are refitted on the
component's split by the same routine as train-pred, evaluated on validation
and test, and saved next to the model (``models/<name>/best_params.json``).
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import pandas as pd

from raycat.config import ComponentSpec, PipelineConfig
from raycat.run import set_aside
from raycat.tuning.spaces import (
    OptunaSpace,
    TuningSpec,
    find_space_file,
    load_spec,
    merge,
    nest,
)

logger = logging.getLogger(__name__)

# Metrics every trial reports, whatever the component.
VALID_METRICS = ("micro_f1", "macro_f1", "hierarchical_f1")


def trial_metrics(component, valid: pd.DataFrame) -> dict[str, float]:
    """Validation metrics of a fitted component (thresholds tuned on the same
    validation data, as the final model's will be)."""
    from raycat.evaluation import choose_thresholds, evaluate

    y = component.taxonomy.multi_hot(valid["targets"].tolist())
    p = component.predict_proba(valid)
    result = evaluate(y, p, component.taxonomy, choose_thresholds(y, p))
    return {f"val_{k}": float(result[k]) for k in VALID_METRICS}


def make_trainable(name: str, kind: str, base_params: dict, split: dict):
    """The Tune function trainable of one component, with a distinct name."""

    def trainable(config: dict, dev: pd.DataFrame, taxonomy_json: dict) -> None:
        from ray import tune

        from raycat.components import component_class
        from raycat.data import split_train_valid
        from raycat.taxonomy import Taxonomy

        taxonomy = Taxonomy.from_json(taxonomy_json)
        cls = component_class(kind)
        params = merge(base_params, nest(config))
        if "trainer" in cls.Params.model_fields:
            # Trials are the unit of scale-out: train inside the trial.
            params["trainer"] = "local"
        comp = cls(taxonomy, params, name=name)
        train, valid = split_train_valid(dev, split["valid_fraction"], split["seed"])

        last: dict[str, float] = {}

        def report(epoch_metrics: dict[str, float]) -> None:
            last.update(epoch_metrics)
            tune.report(dict(epoch_metrics))

        comp.fit(train, valid, report=report if cls.iterative else None)
        tune.report({**last, **trial_metrics(comp, valid), "done": 1.0})

    trainable.__name__ = f"tune_{name.replace('-', '_')}"
    trainable.__qualname__ = trainable.__name__
    return trainable


def _progress_callback(name: str, spec: TuningSpec):
    from ray import tune

    class Progress(tune.Callback):
        """One log line per finished trial, prefixed by the component."""

        def __init__(self) -> None:
            self.done = 0
            self.best: float | None = None

        def on_trial_complete(self, iteration, trials, trial, **info) -> None:
            self.done += 1
            value = (trial.last_result or {}).get(spec.metric)
            if value is not None and (
                self.best is None
                or (value > self.best if spec.mode == "max" else value < self.best)
            ):
                self.best = value
            logger.info(
                "[tune %s] trial %d/%d done: %s=%s (best %s)",
                name,
                self.done,
                spec.trials,
                spec.metric,
                _fmt(value),
                _fmt(self.best),
            )

        def on_trial_error(self, iteration, trials, trial, **info) -> None:
            logger.warning(
                "[tune %s] trial %s failed; see its error.txt", name, trial.trial_id
            )

    return Progress()


def _last_line(err: Exception) -> str:
    """A Ray task error's own message, without the remote traceback."""
    lines = [line for line in str(err).strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else type(err).__name__


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def tune_component(
    name: str,
    spec_json: dict,
    tuning_json: dict,
    taxonomy_json: dict,
    dev: pd.DataFrame,
    home: str,
    resume: bool,
    metrics_config=None,
    run_name: str = "raycat",
) -> dict[str, Any]:
    """Run (or resume) one component's Tune experiment; returns the best
    trial's hyperparameters and what the search did."""
    # Tune's own console output (a configuration box and a status table per
    # experiment) interleaves badly when several experiments run at once; the
    # progress callback below logs one line per trial instead.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    from raycat.components import component_class

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    started = time.time()
    comp_spec = ComponentSpec.model_validate(spec_json)
    spec = TuningSpec.model_validate(tuning_json)
    split = (spec.split or comp_spec.split).model_dump()
    cls = component_class(comp_spec.kind)

    trainable = tune.with_resources(
        tune.with_parameters(
            make_trainable(name, comp_spec.kind, comp_spec.params, split),
            dev=dev,
            taxonomy_json=taxonomy_json,
        ),
        {"cpu": spec.resources.cpus, "gpu": spec.resources.gpus},
    )
    storage = Path(home) / "tune"
    path = storage / name

    if resume and tune.Tuner.can_restore(str(path)):
        logger.info("[tune %s] resuming the search in %s", name, path)
        tuner = tune.Tuner.restore(str(path), trainable, resume_errored=True)
    else:
        kept = set_aside(path)
        if kept:
            logger.info("[tune %s] a previous search is kept as %s", name, kept)
        scheduler = None
        if spec.scheduler == "asha":
            if not cls.iterative:
                logger.warning(
                    "[tune %s] scheduler asha ignored: %s trains in one shot, so "
                    "there is nothing to stop early",
                    name,
                    comp_spec.kind,
                )
            else:
                scheduler = ASHAScheduler(
                    time_attr="training_iteration",
                    max_t=spec.asha.max_t,
                    grace_period=spec.asha.grace_period,
                    reduction_factor=spec.asha.reduction_factor,
                )
        searcher = OptunaSearch(
            OptunaSpace(spec) if spec.space else None,
            metric=spec.metric,
            mode=spec.mode,
            study_name=f"raycat-{name}",
            seed=spec.seed,
        )
        from raycat.metrics import MetricsConfig
        from raycat.metrics.tune_callback import MetricsStoreCallback

        callbacks = [
            _progress_callback(name, spec),
            MetricsStoreCallback(
                metrics_config or MetricsConfig(),
                home,
                run_name,
                "tune",
                name,
                split="valid",
            ),
        ]
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(
                metric=spec.metric,
                mode=spec.mode,
                search_alg=searcher,
                scheduler=scheduler,
                num_samples=spec.trials,
                max_concurrent_trials=spec.max_concurrent,
            ),
            run_config=tune.RunConfig(
                name=name,
                storage_path=str(storage),
                failure_config=tune.FailureConfig(max_failures=spec.max_failures),
                callbacks=callbacks,
                verbose=0,
            ),
        )
    results = tuner.fit()

    finished = [r for r in results if r.error is None and r.metrics]
    errored = [r for r in results if r.error is not None]
    if not finished:
        first = errored[0].error if errored else "no trial reported a result"
        raise RuntimeError(f"every trial of {name} failed; first error: {first}")
    # Trials stopped early by ASHA never reached the final report; rank the
    # trials that did by the search metric.
    complete = [r for r in finished if r.metrics.get("done")] or finished
    best = (max if spec.mode == "max" else min)(
        complete, key=lambda r: r.metrics.get(spec.metric, float("nan"))
    )
    best_params = merge(comp_spec.params, nest(best.config))
    history = [
        {
            "trial": r.metrics.get("trial_id"),
            "config": r.config,
            spec.metric: r.metrics.get(spec.metric),
            "iterations": r.metrics.get("training_iteration"),
        }
        for r in results
        if r.metrics
    ]
    return {
        "component": name,
        "best_params": best_params,
        "best_metric": best.metrics.get(spec.metric),
        "metric": spec.metric,
        "mode": spec.mode,
        "trials": len(results),
        "trials_errored": len(errored),
        "history": history,
        "tune_s": round(time.time() - started, 1),
    }


def tuning_specs(config: PipelineConfig, names: list[str]) -> dict[str, TuningSpec]:
    spaces_dir = config.tuning.spaces_dir
    out = {}
    for name in names:
        kind = config.components[name].kind
        path = find_space_file(Path(spaces_dir) if spaces_dir else None, name, kind)
        spec = load_spec(path)
        if config.tuning.trials is not None:
            spec.trials = config.tuning.trials
        if config.tuning.max_concurrent is not None:
            spec.max_concurrent = config.tuning.max_concurrent
        out[name] = spec
        logger.info(
            "search space of %s: %s (%d trials)", name, spec.source, spec.trials
        )
    return out


def run_tune(
    config: PipelineConfig,
    components: list[str] | None = None,
    *,
    resume: bool = False,
    sequential: bool = False,
) -> dict[str, Any]:
    """Tune every selected component in parallel, then refit and evaluate the
    best of each.  Returns the summary written to ``metrics/tune.json``.

    ``sequential=True`` runs one component's search after another (for
    debugging, and as the baseline of ``bench/bench_tune_parallel.py``).
    """
    import ray

    from raycat.components import component_class
    from raycat.data import load_frame, read_split
    from raycat.pipelines.records import record_evaluations
    from raycat.pipelines.train_pred import (
        select_components,
        streaming_room,
        task_resources,
        train_and_evaluate,
    )
    from raycat.ray_runtime import init_ray
    from raycat.run import prepare_run

    started = time.time()
    selected = select_components(config, components)
    specs = tuning_specs(config, list(selected))
    run, snapshot = prepare_run(config)
    init_ray()

    catalog = run.paths.catalog
    dev = load_frame(
        read_split(catalog, snapshot, "dev", sources=config.training.label_sources),
        unlabeled=config.training.unlabeled,
    )
    test = load_frame(read_split(catalog, snapshot, "test"), unlabeled="keep")
    dev_ref, test_ref = ray.put(dev), ray.put(test)
    taxonomy_json = run.taxonomy.to_json()
    home = str(run.paths.home)
    logger.info(
        "tuning %d components in parallel on %d dev products: %s",
        len(selected),
        len(dev),
        ", ".join(f"{n} ({s.trials} trials)" for n, s in specs.items()),
    )

    # Tune drives each experiment from a task that holds no CPU itself.
    tune_task = ray.remote(num_cpus=0, max_retries=0)(tune_component)

    def launch(name: str):
        return tune_task.options(name=f"tune:{name}").remote(
            name,
            selected[name].model_dump(),
            specs[name].model_dump(),
            taxonomy_json,
            dev_ref,
            home,
            resume,
            config.metrics,
            config.name,
        )

    # Trials of components that stream their data through Ray Data need the
    # Ray Data tasks to find a free CPU: those searches (their concurrent trials
    # and then their refit) share all CPUs but one, and start one after another
    # when they do not fit together.  The other searches all start at once.
    streaming = {n for n, s in selected.items() if component_class(s.kind).streams_data}
    room = streaming_room()
    for name in streaming:
        spec = specs[name]
        cap = max(1, int(room // spec.resources.cpus)) if spec.resources.cpus else 1
        if spec.max_concurrent > cap:
            logger.warning(
                "[tune %s] max_concurrent %d -> %d: with %s CPUs in the cluster, "
                "more trials at once would leave Ray Data no CPU to feed them",
                name,
                spec.max_concurrent,
                cap,
                room + 1,
            )
            specs[name] = spec.model_copy(update={"max_concurrent": cap})
    busy: dict[str, float] = {}

    def can_start(name: str) -> bool:
        if sequential:
            return not pending and not finals
        if name not in streaming:
            return True
        need = specs[name].max_concurrent * specs[name].resources.cpus
        return not busy or sum(busy.values()) + need <= room

    waiting = list(selected)
    pending: dict[Any, str] = {}
    final_task = ray.remote(train_and_evaluate)
    searches: dict[str, dict] = {}
    finals: dict[Any, str] = {}
    while pending or finals or waiting:
        for name in [n for n in waiting if can_start(n)]:
            if not can_start(name):  # an earlier one took the room
                continue
            waiting.remove(name)
            pending[launch(name)] = name
            if name in streaming:
                busy[name] = specs[name].max_concurrent * specs[name].resources.cpus
        done, _ = ray.wait(list(pending) + list(finals), num_returns=1)
        ref = done[0]
        if ref in pending:
            name = pending.pop(ref)
            try:
                search = ray.get(ref)
            except Exception as err:  # reported per component
                message = _last_line(err)
                searches[name] = {"component": name, "ok": False, "error": message}
                busy.pop(name, None)
                logger.error("[tune %s] search failed: %s", name, message)
                continue
            searches[name] = {**search, "ok": True}
            logger.info(
                "[tune %s] search done: best %s=%s after %d trials; refitting",
                name,
                search["metric"],
                _fmt(search["best_metric"]),
                search["trials"],
            )
            best_spec = selected[name].model_copy(
                update={"params": search["best_params"]}
            )
            if specs[name].split is not None:
                best_spec = best_spec.model_copy(update={"split": specs[name].split})
            # The refit gets a trial's resources (on its Ray Train worker, if
            # it starts one).
            best_spec = best_spec.model_copy(
                update={"resources": specs[name].resources}
            )
            cpus, gpus = task_resources(best_spec)
            if name in streaming:
                busy[name] = specs[name].resources.cpus
            finals[
                final_task.options(
                    num_cpus=cpus, num_gpus=gpus, name=f"refit:{name}"
                ).remote(
                    name,
                    best_spec.model_dump(),
                    taxonomy_json,
                    dev_ref,
                    test_ref,
                    home,
                    config.training.default_threshold,
                )
            ] = name
        else:
            name = finals.pop(ref)
            busy.pop(name, None)
            result = ray.get(ref)
            searches[name]["final"] = result
            if result["ok"]:
                best_path = Path(result["model"]) / "best_params.json"
                best_path.write_text(
                    json.dumps(searches[name]["best_params"], indent=2)
                )
                searches[name]["best_params_path"] = str(best_path)

    summary = {
        "pipeline": "tune",
        "config": config.source_path,
        "home": home,
        "wall_s": round(time.time() - started, 1),
        "components": [searches[n] for n in selected],
    }
    out = run.paths.home / "metrics" / "tune.json"
    out.write_text(json.dumps(summary, indent=1, default=str))
    record_evaluations(
        config, "tune", [s["final"] for s in searches.values() if "final" in s]
    )
    return summary


def summary_rows(summary: dict) -> list[dict[str, Any]]:
    """The table printed at the end: component, best validation metric, test
    micro / macro / hierarchical F1, trials run, wall time."""
    rows = []
    for s in summary["components"]:
        if not s.get("ok"):
            rows.append({"component": s["component"], "error": s["error"]})
            continue
        row = {
            "component": s["component"],
            "best_valid": f"{s['metric']}={_fmt(s['best_metric'])}",
            "trials": s["trials"],
        }
        final = s.get("final", {})
        if final.get("ok"):
            t = final["metrics"]["test"]
            row |= {
                "test_micro_f1": round(t["micro_f1"], 4),
                "test_macro_f1": round(t["macro_f1"], 4),
                "test_hierarchical_f1": round(t["hierarchical_f1"], 4),
            }
        else:
            row["error"] = final.get("error", "refit did not run")
        row["wall_s"] = round(s["tune_s"] + final.get("wall_s", 0), 1)
        rows.append(row)
    return rows
