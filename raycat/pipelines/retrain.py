"""retrain: one active-learning iteration.

1. Dump the dev and test sets with every label so far (snapshot ``iter-NNN``).
2. Train every component with its tuned hyperparameters, in parallel, under
   ``<home>/iterations/iter-NNN/models``; the best by validation becomes the
   iteration's model.
3. Side by side, model-R (rule labels + the randomly sampled human labels) and
   model-A (rule labels + the disagreement and uncertainty labels), both with
   the same component (``iterations/iter-NNN/compare/models``); both evaluated
   on the test set.  The random labels that
   came back since the last iteration score both models' previous predictions
   (true and false positives, precision, recall).
4. The surprise analysis of the previous page decides this page's strategy mix.
5. Score the pool, give each class its budget, compose the next page.
6. Publish: the iteration's model becomes the run's current model and the page
   goes to the queue.  With ``no_update`` nothing is published.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from raycat.config import ComponentSpec, PipelineConfig
from raycat.errors import ConfigError
from raycat.labels import Source
from raycat.taxonomy import Taxonomy

logger = logging.getLogger(__name__)

RANDOM = "random"
# Strategies whose labels train model-A.
TARGETED = ("disagreement", "uncertainty", "combined_product", "combined_average")


def tuned_specs(
    config: PipelineConfig, names: list[str] | None = None
) -> dict[str, ComponentSpec]:
    """The components to train, each with its tuned hyperparameters
    (``models/<name>/best_params.json``) when tuning has run."""
    from raycat.pipelines.train_pred import select_components

    specs = select_components(config, names)
    out = {}
    for name, spec in specs.items():
        best = Path(config.home) / "models" / name / "best_params.json"
        if best.is_file():
            spec = spec.model_copy(update={"params": json.loads(best.read_text())})
        out[name] = spec
    return out


def next_iteration(store) -> int:
    """One more than the newest queue iteration (0 before any page)."""
    queue = store.queue()
    return int(queue["iteration"].max()) + 1 if len(queue) else 0


def human_labels(store, strategies: tuple[str, ...] | None) -> pd.DataFrame:
    """Current human and oracle labels, optionally only those a given strategy
    asked for."""
    current = store.current(sources=[Source.HUMAN.value, Source.ORACLE.value])
    if strategies is not None:
        current = current[current["strategy"].isin(strategies)]
    return current


def with_labels(dev_rule: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    """Rule-labeled dev products with human labels applied on top: positives
    added, negatives removed (store labels are already propagated, so the
    result stays closed under ancestors); products left with no positive are
    dropped."""
    pos = labels[labels["value"] == 1].groupby("product_id")["category"].agg(set)
    neg = labels[labels["value"] == 0].groupby("product_id")["category"].agg(set)
    frame = dev_rule.copy()
    frame["targets"] = [
        sorted((set(t) - neg.get(pid, set())) | pos.get(pid, set()))
        for pid, t in zip(frame["product_id"], frame["targets"], strict=True)
    ]
    return frame[frame["targets"].map(len) > 0].reset_index(drop=True)


def score_previous(
    model_dir: Path,
    products: pd.DataFrame,
    labels: pd.DataFrame,
    taxonomy: Taxonomy,
    thresholds: dict[str, float],
) -> dict[str, float]:
    """True and false positives, precision and recall of a saved model's
    decisions on newly labeled (product, category) pairs."""
    from raycat.components import load_component

    if labels.empty or not model_dir.is_dir():
        return {}
    model = load_component(model_dir)
    frame = products.set_index("product_id").loc[labels["product_id"].unique()]
    probs = model.predict_proba(frame.reset_index())
    row = {pid: i for i, pid in enumerate(frame.index)}
    cols = [taxonomy.index[c] for c in labels["category"]]
    p = probs[[row[x] for x in labels["product_id"]], cols]
    thr = np.array([thresholds.get(c, 0.5) for c in labels["category"]])
    pred = p >= thr
    truth = labels["value"].to_numpy() == 1
    tp, fp = int((pred & truth).sum()), int((pred & ~truth).sum())
    fn = int((~pred & truth).sum())
    return {
        "labels": len(labels),
        "true_positives": tp,
        "false_positives": fp,
        "precision": tp / (tp + fp) if tp + fp else 0.0,
        "recall": tp / (tp + fn) if tp + fn else 0.0,
    }


def _best(results: list[dict], metric: str) -> dict:
    ok = [r for r in results if r.get("ok") and r["kind"] != "random"]
    if not ok:
        errors = "; ".join(f"{r['component']}: {r.get('error')}" for r in results)
        raise ConfigError(f"no component trained in this iteration ({errors})")
    return max(ok, key=lambda r: r["metrics"]["valid"][metric])


def run_retrain(
    config: PipelineConfig,
    *,
    no_update: bool = False,
    components: list[str] | None = None,
    shares: dict[str, float] | None = None,
) -> dict[str, Any]:
    """One active-learning iteration (see the module docstring).  ``shares``
    forces the page's strategy mix (the pure-random baseline of a simulation
    passes ``{"random": 1.0}``)."""
    from raycat.active import surprise as al_surprise
    from raycat.active.budget import class_budget
    from raycat.active.page import compose_page
    from raycat.data import load_frame, read_split
    from raycat.pipelines.records import record_evaluations
    from raycat.pipelines.score import read_scores, score_pool
    from raycat.pipelines.train_pred import train_components
    from raycat.ray_runtime import init_ray
    from raycat.run import load_run, prepare_run

    started = time.time()
    al = config.active_learning
    home = Path(config.home)
    run0 = load_run(config)
    with run0.open_store() as store:
        iteration = next_iteration(store)
    run, snapshot = prepare_run(config, iteration=iteration)
    taxonomy = run.taxonomy
    work = home / "iterations" / f"iter-{iteration:03d}"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    init_ray()
    logger.info(
        "active-learning iteration %d%s", iteration, " (no update)" if no_update else ""
    )

    # -- 1-2. every component, with its tuned hyperparameters ------------------
    catalog = run.paths.catalog
    dev = load_frame(
        read_split(catalog, snapshot, "dev", sources=config.training.label_sources),
        unlabeled=config.training.unlabeled,
    )
    test = load_frame(read_split(catalog, snapshot, "test"), unlabeled="keep")
    specs = tuned_specs(config, components or config.retrain.components)
    results = train_components(
        specs,
        dev,
        test,
        taxonomy,
        work,
        default_threshold=config.training.default_threshold,
        label="retrain",
    )
    best = _best(results, config.retrain.selection_metric)
    logger.info(
        "iteration %d: best component %s (valid %s %.4f)",
        iteration,
        best["component"],
        config.retrain.selection_metric,
        best["metrics"]["valid"][config.retrain.selection_metric],
    )

    # -- 3. model-R and model-A -------------------------------------------------
    dev_rule = load_frame(
        read_split(catalog, snapshot, "dev", sources=["rule"]), unlabeled="keep"
    )
    compare = config.retrain.compare_component or best["component"]
    with run.open_store() as store:
        random_labels = human_labels(store, (RANDOM,))
        targeted_labels = human_labels(store, TARGETED)
        queue_prev = store.queue(iteration=iteration - 1) if iteration else None
        all_human = human_labels(store, None)
    frames = {
        "model_R": with_labels(dev_rule, random_labels),
        "model_A": with_labels(dev_rule, targeted_labels),
    }
    compare_spec = specs.get(compare) or tuned_specs(config, [compare])[compare]
    ra_results = {}
    for model_name, frame in frames.items():
        (res,) = train_components(
            {model_name: compare_spec},
            frame,
            test,
            taxonomy,
            work / "compare",
            default_threshold=config.training.default_threshold,
            label="retrain",
        )
        ra_results[model_name] = res

    # The random labels of the last page score both models' previous
    # predictions: an unbiased sample of how each did.
    new_random = random_labels[random_labels["iteration"] == iteration - 1]
    previous = home / "iterations" / f"iter-{iteration - 1:03d}" / "compare"
    previous = previous / "models"
    thresholds = json.loads((Path(best["model"]) / "thresholds.json").read_text())
    comparison = {
        name: {
            "test": {
                k: ra_results[name]["metrics"]["test"][k]
                for k in ("micro_f1", "macro_f1", "hierarchical_f1")
            }
            if ra_results[name]["ok"]
            else None,
            "n_train": ra_results[name].get("n_train"),
            "previous_on_new_random_labels": score_previous(
                previous / name,
                run.catalog.products,
                new_random,
                taxonomy,
                thresholds,
            ),
        }
        for name in frames
    }

    # -- 4. what the last page's labels say about the strategies --------------
    decision = None
    analysis = pd.DataFrame()
    page_shares = dict(shares or al.shares)
    if queue_prev is not None and len(queue_prev):
        returned = all_human[all_human["iteration"] == iteration - 1][
            ["product_id", "category", "value"]
        ]
        if len(returned):
            analysis = al_surprise.surprise_analysis(
                queue_prev, returned, thresholds=al.threshold
            )
            if shares is None:
                decision = al_surprise.decide_strategy(
                    analysis,
                    queue_prev,
                    returned,
                    margin=al.decision_margin,
                    combine=al.combine,
                    thresholds=al.threshold,
                    random_share=al.shares.get(RANDOM, 0.5),
                )
                page_shares = decision.shares
            analysis.to_parquet(work / "surprises.parquet")

    # -- 5. score the pool and compose the next page ---------------------------
    # The pool streams from the catalog past this iteration's test ids, so
    # scoring memory does not follow the pool.
    scores_dir = work / "scores"
    score_pool(
        config,
        model=best["model"],
        out_dir=scores_dir,
        models_root=work / "models",
        snapshot=snapshot,
    )
    scores = read_scores(scores_dir, columns=("p_model", "p_text", "p_image"))
    f1 = np.array([c["f1"] for c in best["metrics"]["valid"]["per_category"]])
    budgets = class_budget(
        f1,
        al.labels_per_iteration,
        depths=taxonomy.depths,
        depth_term=al.depth_term,
        depth_weight=al.depth_weight,
        categories=taxonomy.ids,
    )
    with run.open_store() as store:
        rule_pos = store.current(sources=[Source.RULE.value])
    rule_pos = rule_pos[rule_pos["value"] == 1][["product_id", "category"]]
    page = compose_page(
        scores["product_id"],
        scores["p_model"],
        categories=taxonomy.ids,
        budgets=budgets,
        p_text=scores.get("p_text"),
        p_image=scores.get("p_image"),
        shares=page_shares,
        labeled=all_human[["product_id", "category"]],
        rule_positive=rule_pos,
        thresholds=thresholds,
        seed=al.seed + iteration,
        uncertainty_candidates_factor=al.uncertainty_candidates_factor,
    )
    page.to_parquet(work / "page.parquet")

    # -- 6. publish -------------------------------------------------------------
    current = {
        "model": best["component"],
        "path": best["model"],
        "version": f"iter-{iteration:03d}-{int(time.time())}",
        "metric": config.retrain.selection_metric,
        "value": best["metrics"]["valid"][config.retrain.selection_metric],
        "iteration": iteration,
    }
    if not no_update:
        with run.open_store() as store:
            store.enqueue(page, iteration=iteration)
        (home / "current.json").write_text(json.dumps(current, indent=1))
        record_evaluations(config, "retrain", [*results, *ra_results.values()])
    summary = {
        "pipeline": "retrain",
        "iteration": iteration,
        "published": not no_update,
        "current": current,
        "components": [
            {
                "component": r["component"],
                "ok": r["ok"],
                **(
                    {
                        "valid_hierarchical_f1": r["metrics"]["valid"][
                            "hierarchical_f1"
                        ],
                        "test_hierarchical_f1": r["metrics"]["test"]["hierarchical_f1"],
                    }
                    if r["ok"]
                    else {"error": r.get("error")}
                ),
            }
            for r in results
        ],
        "model_R_vs_A": comparison,
        "surprises": analysis.reset_index().to_dict("records") if len(analysis) else [],
        "decision": decision.to_dict() if decision else None,
        "page": {
            "items": len(page),
            "by_strategy": page["strategy"].value_counts().to_dict()
            if len(page)
            else {},
            "shares": page_shares,
        },
        "wall_s": round(time.time() - started, 1),
    }
    (work / "retrain.json").write_text(json.dumps(summary, indent=1, default=str))
    return summary
