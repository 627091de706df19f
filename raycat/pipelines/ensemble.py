"""ensemble: combine the trained components and choose the run's current model.

Starting from the components saved under ``<home>/models/`` by ``raycat
train-pred`` or ``raycat tune``:

1. out-of-fold predictions of every component on the dev set, by k-fold
   cross-fitting with its tuned hyperparameters, one Ray task per (component,
   fold) (:mod:`raycat.ensembles.oof`) -> ``<home>/oof/<component>.parquet``;
2. the meta dataset: those files joined on product id with Ray Data
   (:mod:`raycat.ensembles.meta`);
3. the weighted and the stacked ensemble, each fitted on meta-train and judged
   on meta-valid next to every component, then refitted on all out-of-fold
   predictions; likewise each ensemble without one component at a time, for
   the contributions.  One Ray task per (ensemble, left-out component);
4. the saved components predict the test set, the refitted combiners combine;
5. the best model by ``ensemble.selection_metric`` on meta-valid becomes the
   run's current model.

Under the run's home:

    models/<kind>_ensemble/        each ensemble, members copied inside
    predictions/<kind>_ensemble/   its test predictions
    current.json                   the current model (see current_model())
    metrics/ensemble.json          every model's metrics, the selection
    metrics/contributions.*        weights and leave-one-out changes
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from raycat.config import ComponentSpec, PipelineConfig
from raycat.errors import ConfigError

logger = logging.getLogger(__name__)

ENSEMBLE_KINDS = ("weighted", "stacked")
HEADLINE = ("micro_f1", "macro_f1", "hierarchical_f1")


def ensemble_name(kind: str) -> str:
    return f"{kind}_ensemble"


def ensemble_members(
    config: PipelineConfig, home: Path
) -> tuple[dict[str, ComponentSpec], dict[str, str]]:
    """The components to combine, each with the hyperparameters its saved
    model was trained with, and where those came from.

    ``ensemble.components`` names them; by default every enabled component that
    is not of kind ``random`` and has a saved model.  Hyperparameters come from
    ``models/<name>/best_params.json`` (a tuned model), else its
    ``params.json``, else the config.
    """
    explicit = config.ensemble.components
    if explicit is not None:
        unknown = [n for n in explicit if n not in config.components]
        if unknown:
            raise ConfigError(
                f"ensemble.components names {unknown}, which the config does not "
                f"define; configured components: {sorted(config.components)}"
            )
        names = list(explicit)
    else:
        names = [
            n
            for n, s in config.components.items()
            if s.enabled and s.kind != "random" and s.kind not in ENSEMBLE_KINDS
        ]
    for kind in ENSEMBLE_KINDS:
        if ensemble_name(kind) in config.components:
            raise ConfigError(
                f"component name {ensemble_name(kind)!r} is taken by the {kind} "
                "ensemble; rename that component in the config's components"
            )

    specs: dict[str, ComponentSpec] = {}
    sources: dict[str, str] = {}
    untrained = []
    for name in names:
        folder = home / "models" / name
        if not (folder / "component.json").is_file():
            untrained.append(name)
            continue
        spec = config.components[name]
        if (folder / "best_params.json").is_file():
            params, source = _read_json(folder / "best_params.json"), "tuned"
        elif (folder / "params.json").is_file():
            params, source = _read_json(folder / "params.json"), "saved"
        else:
            params, source = spec.params, "config"
        specs[name] = spec.model_copy(update={"params": params})
        sources[name] = source

    if untrained and explicit is not None:
        raise ConfigError(
            f"ensemble.components names {untrained}, which have no saved model "
            f"under {home / 'models'}; run `raycat train-pred` or `raycat tune` on "
            "this config first, or leave them out"
        )
    if untrained:
        logger.warning(
            "%d components have no saved model under %s and are left out of the "
            "ensembles: %s",
            len(untrained),
            home / "models",
            untrained,
        )
    if len(specs) < 2:
        raise ConfigError(
            f"an ensemble needs at least 2 trained components; found {sorted(specs)} "
            f"under {home / 'models'} (candidates: {names}); run `raycat train-pred "
            "CONFIG` or `raycat tune CONFIG` first, or list them in "
            "ensemble.components"
        )
    return specs, sources


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def predict_saved(model_dir: str, frame: pd.DataFrame) -> np.ndarray:
    """Probabilities of a saved component for ``frame`` (a Ray task)."""
    from raycat.components import load_component

    return load_component(model_dir).predict_proba(frame)


def run_ensemble(config: PipelineConfig) -> dict[str, Any]:
    """The whole pipeline; returns the summary also written to
    ``<home>/metrics/ensemble.json``."""
    import ray

    from raycat.components import load_component
    from raycat.data import load_frame, read_split
    from raycat.ensembles.contributions import (
        contribution_rows,
        overall_rows,
        write_contributions,
    )
    from raycat.ensembles.meta import compose_meta_dataset
    from raycat.ensembles.oof import run_oof
    from raycat.ensembles.selection import (
        assess_component,
        assess_ensemble,
        meta_split,
        rank_models,
        write_current,
    )
    from raycat.pipelines.train_pred import write_predictions
    from raycat.ray_runtime import init_ray
    from raycat.run import prepare_run

    started = time.time()
    ens = config.ensemble
    home = Path(config.home)
    specs, param_sources = ensemble_members(config, home)
    run, snapshot = prepare_run(config)
    taxonomy = run.taxonomy
    init_ray()

    sources = config.training.label_sources
    dev = load_frame(
        read_split(run.paths.catalog, snapshot, "dev", sources=sources),
        unlabeled=config.training.unlabeled,
    )
    test = load_frame(read_split(run.paths.catalog, snapshot, "test"), unlabeled="keep")
    if dev.empty:
        raise ConfigError(
            "no dev product has a positive label from the sources "
            f"{sources}; check the rules file (raycat rules report) or add labels"
        )
    logger.info(
        "ensembling %s: %d dev products, %d folds; testing on %d",
        list(specs),
        len(dev),
        ens.folds,
        len(test),
    )

    # 1. Out-of-fold predictions, one Ray task per (component, fold).
    oof_paths, oof_errors = run_oof(specs, taxonomy, dev, home, ens.folds, ens.seed)
    names = [n for n in specs if n in oof_paths]
    if len(names) < 2:
        raise ConfigError(
            f"cross-fitting failed for {sorted(oof_errors)} ({oof_errors}); fewer "
            "than 2 components are left to ensemble; fix them or remove them from "
            "ensemble.components"
        )

    # 2. The meta dataset, joined and shuffled by Ray Data.
    meta = compose_meta_dataset(
        {n: oof_paths[n] for n in names}, taxonomy, seed=ens.seed
    )
    targets = dev.set_index("product_id")["targets"]
    y = taxonomy.multi_hot(targets.loc[meta.product_ids].tolist())
    valid_mask = meta_split(meta.product_ids, ens.seed)
    if valid_mask.all() or not valid_mask.any():
        raise ConfigError(
            f"{len(meta)} dev products are too few to split into meta-train and "
            "meta-valid halves; label more products"
        )

    # 3. Test predictions of the saved components, one Ray task each.
    test_ref = ray.put(test)
    predict = ray.remote(predict_saved)
    refs = {
        n: predict.options(
            num_cpus=specs[n].resources.cpus,
            num_gpus=specs[n].resources.gpus,
            name=f"ensemble-test:{n}",
        ).remote(str(home / "models" / n), test_ref)
        for n in names
    }
    test_preds = {n: ray.get(r) for n, r in refs.items()}
    y_test = taxonomy.multi_hot(test["targets"].tolist())
    default_thr = config.training.default_threshold

    models: dict[str, dict[str, Any]] = {}
    for n in names:
        res = assess_component(
            meta.preds[n], y, valid_mask, test_preds[n], y_test, taxonomy, default_thr
        )
        models[n] = {"kind": specs[n].kind, "path": str(home / "models" / n), **res}

    # 4. Ensembles and their leave-one-out variants, one Ray task each.
    preds_ref, y_ref = ray.put(meta.preds), ray.put(y)
    mask_ref, test_preds_ref = ray.put(valid_mask), ray.put(test_preds)
    y_test_ref = ray.put(y_test)
    assess = ray.remote(assess_ensemble)
    pending = {}
    for kind in ENSEMBLE_KINDS:
        params = {
            **getattr(ens, kind).model_dump(),
            "seed": ens.seed,
        }
        for left_out in [None, *names]:
            members = [n for n in names if n != left_out]
            ref = assess.options(
                num_cpus=1, name=f"ensemble:{kind}:{left_out or 'all'}"
            ).remote(
                kind,
                params,
                members,
                ensemble_name(kind),
                taxonomy.to_json(),
                preds_ref,
                y_ref,
                mask_ref,
                test_preds_ref,
                y_test_ref,
                default_thr,
            )
            pending[ref] = (kind, left_out)
    fitted: dict[str, dict[str, Any]] = {}
    without: dict[str, dict[str, dict[str, float]]] = {k: {} for k in ENSEMBLE_KINDS}
    errors: dict[str, str] = {}
    for ref, (kind, left_out) in pending.items():
        try:
            res = ray.get(ref)
        except Exception as err:
            # One failed fit loses that ensemble (or one contribution figure);
            # the components and the other ensemble are still compared.
            cause = getattr(err, "cause", None) or err
            key = ensemble_name(kind)
            if left_out is not None:
                key += f" without {left_out}"
            errors[key] = f"{type(cause).__name__}: {cause}"
            logger.error("%s failed: %s", key, errors[key])
            continue
        if left_out is None:
            fitted[kind] = res
        else:
            without[kind][left_out] = {m: res["test"][m] for m in HEADLINE}

    # The refitted ensembles get their members and are saved self-contained.
    loaded = {n: load_component(home / "models" / n) for n in names}
    contributions: list[dict[str, Any]] = []
    for kind, res in fitted.items():
        name = ensemble_name(kind)
        ensemble = res.pop("combiner")
        ensemble.set_members(loaded)
        folder = ensemble.save(home / "models" / name)
        (folder / "thresholds.json").write_text(
            json.dumps(
                dict(zip(taxonomy.ids, map(float, res["thresholds"]), strict=True))
            )
        )
        write_predictions(
            home / "predictions" / name / "test.parquet",
            test["product_id"].tolist(),
            res.pop("test_probs"),
            taxonomy,
        )
        models[name] = {"kind": kind, "path": str(folder), **res}
        contributions += contribution_rows(ensemble, res["test"], without[kind])
    contribution_files = write_contributions(home, contributions)

    # 5. Selection on meta-valid; components are listed first, so a tie goes to
    # the simpler model.
    metric = ens.selection_metric
    ranking = rank_models({n: m["valid"][metric] for n, m in models.items()}, metric)
    chosen, value = ranking[0]
    current = write_current(
        home,
        chosen,
        models[chosen]["path"],
        metric,
        value,
        kind=models[chosen]["kind"],
        split="meta-valid",
        test={m: models[chosen]["test"][m] for m in HEADLINE},
    )

    for res in models.values():
        res["thresholds"] = [float(t) for t in res["thresholds"]]
    summary = {
        "pipeline": "ensemble",
        "config": config.source_path,
        "home": str(home),
        "snapshot": str(snapshot),
        "n_dev": len(dev),
        "n_test": len(test),
        "n_meta_train": int((~valid_mask).sum()),
        "n_meta_valid": int(valid_mask.sum()),
        "folds": ens.folds,
        "seed": ens.seed,
        "components": {
            n: {"kind": specs[n].kind, "params_from": param_sources[n]} for n in names
        },
        "oof": {
            "files": {n: str(p) for n, p in oof_paths.items()},
            "errors": oof_errors,
        },
        "errors": errors,
        "selection": {
            "metric": metric,
            "split": "meta-valid",
            "ranking": [{"model": n, metric: v} for n, v in ranking],
            "chosen": chosen,
        },
        "current": current,
        "models": models,
        "contributions": overall_rows(contributions),
        "contribution_files": {k: str(v) for k, v in contribution_files.items()},
        "wall_s": round(time.time() - started, 2),
    }
    out = home / "metrics" / "ensemble.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=1, default=str))
    logger.info(
        "ensemble done in %.0f s; current model %s (%s %.4f on meta-valid)",
        summary["wall_s"],
        chosen,
        metric,
        value,
    )
    return summary


def headline(summary: dict) -> list[dict[str, Any]]:
    """One row per model: its selection metric on meta-valid and its test
    micro / macro / hierarchical F1; the current model is marked."""
    metric = summary["selection"]["metric"]
    rows = []
    for name, res in summary["models"].items():
        row = {
            "model": name,
            "kind": res["kind"],
            f"valid_{metric}": round(res["valid"][metric], 4),
        }
        row.update({m: round(res["test"][m], 4) for m in HEADLINE})
        row["current"] = "*" if name == summary["selection"]["chosen"] else ""
        rows.append(row)
    return rows
