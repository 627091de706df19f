"""xgboost on sparse TF-IDF features, one booster per category."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import xgboost as xgb
from pydantic import Field

from raycat.components.base import Batch, Params, Reporter
from raycat.components.classical import TextComponent
from raycat.features import TextFeatureParams

logger = logging.getLogger(__name__)


class XGBoostParams(Params):
    text: TextFeatureParams = Field(
        default_factory=lambda: TextFeatureParams(features="tfidf", max_features=20_000)
    )
    n_estimators: int = Field(100, ge=1)
    max_depth: int = Field(4, ge=1, le=16)
    learning_rate: float = Field(0.2, gt=0, le=1)
    subsample: float = Field(1.0, gt=0, le=1)
    colsample_bytree: float = Field(0.8, gt=0, le=1)
    min_child_weight: float = Field(1.0, ge=0)
    reg_lambda: float = Field(1.0, ge=0)
    min_positives: int = Field(2, ge=1)
    # Boosters train in threads (xgboost releases the GIL); each uses one core.
    n_jobs: int = Field(2, ge=1)
    seed: int = 0


class XGBoostComponent(TextComponent):
    """Gradient-boosted trees on sparse TF-IDF input.

    One binary booster per category rather than xgboost's multi-output mode: it
    lets ``class_weight`` set each category's ``scale_pos_weight``, and
    categories too rare to model fall back to their frequency.
    """

    kind = "xgboost"
    Params = XGBoostParams

    def fit(self, train, valid, *, report: Reporter | None = None) -> dict[str, Any]:
        p: XGBoostParams = self.params
        x, y, weights, cols = self._fit_inputs(train, p.text, p.min_positives)

        def train_one(j: int) -> xgb.Booster:
            dtrain_j = xgb.DMatrix(x, label=y[:, j])
            params = {
                "objective": "binary:logistic",
                "tree_method": "hist",
                "max_depth": p.max_depth,
                "eta": p.learning_rate,
                "subsample": p.subsample,
                "colsample_bytree": p.colsample_bytree,
                "min_child_weight": p.min_child_weight,
                "lambda": p.reg_lambda,
                "nthread": 1,
                "seed": p.seed,
                "scale_pos_weight": float(weights[j]) if weights is not None else 1.0,
            }
            return xgb.train(params, dtrain_j, num_boost_round=p.n_estimators)

        with ThreadPoolExecutor(max_workers=p.n_jobs) as pool:
            self.boosters_ = dict(
                zip(cols.tolist(), pool.map(train_one, cols.tolist()), strict=True)
            )
        self.fitted_ = True
        logger.info(
            "%s: %d boosters, %d categories at their frequency",
            self.name,
            len(cols),
            len(self.taxonomy) - len(cols),
        )
        return {"n_train": len(y), "categories_modelled": len(cols)}

    def _predict(self, batch: Batch) -> np.ndarray:
        x, out = self._predict_inputs(batch)
        if self.boosters_:
            d = xgb.DMatrix(x)
            for j, booster in self.boosters_.items():
                out[:, j] = booster.predict(d)
        return out

    def _save(self, folder: Path) -> None:
        joblib.dump(self.featurizer_, folder / "featurizer.joblib")
        np.save(folder / "freq.npy", self.freq_)
        boosters = folder / "boosters"
        boosters.mkdir(exist_ok=True)
        for j, b in self.boosters_.items():
            b.save_model(boosters / f"{j}.ubj")

    def _load(self, folder: Path) -> None:
        self.featurizer_ = joblib.load(folder / "featurizer.joblib")
        self.freq_ = np.load(folder / "freq.npy")
        self.boosters_ = {}
        for f in sorted((folder / "boosters").glob("*.ubj")):
            b = xgb.Booster()
            b.load_model(f)
            self.boosters_[int(f.stem)] = b
