"""scikit-learn components: the random baseline and the linear text models."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any, Literal

import joblib
import numpy as np
from pydantic import Field
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression, SGDClassifier

from raycat.components.base import Batch, Component, Params, Reporter
from raycat.features import TextFeatureParams, TextFeaturizer

logger = logging.getLogger(__name__)


def _n(batch: Batch) -> int:
    return len(batch["product_id"])


class RandomParams(Params):
    # Laplace smoothing of the frequencies, so no category gets probability 0.
    smoothing: float = Field(0.0, ge=0)


class RandomComponent(Component):
    """Predicts each category's frequency in the training labels, for every
    product: the floor any real model must clear."""

    kind = "random"
    Params = RandomParams

    def fit(self, train, valid, *, report: Reporter | None = None) -> dict[str, Any]:
        y = self.targets(train)
        a = self.params.smoothing
        self.freq_ = ((y.sum(axis=0) + a) / (len(y) + 2 * a)).astype(np.float32)
        self.fitted_ = True
        return {"n_train": len(y)}

    def _predict(self, batch: Batch) -> np.ndarray:
        return np.tile(self.freq_, (_n(batch), 1))

    def _save(self, folder: Path) -> None:
        np.save(folder / "freq.npy", self.freq_)

    def _load(self, folder: Path) -> None:
        self.freq_ = np.load(folder / "freq.npy")


class TextComponent(Component):
    """Shared by the components that learn one model per category on sparse
    text features (linear, xgboost): featurize, and model only the categories
    with enough positives; the rest are predicted at their training frequency."""

    def _fit_inputs(self, train, text: TextFeatureParams, min_positives: int):
        """Fit the featurizer; return features, labels, class weights and the
        columns worth a model."""
        self.featurizer_ = TextFeaturizer(text).fit(train)
        x = self.featurizer_.transform(train)
        y = self.targets(train)
        self.freq_ = y.mean(axis=0).astype(np.float32)
        pos = y.sum(axis=0)
        cols = np.flatnonzero((pos >= min_positives) & (pos < len(y)))
        return x, y, self.class_weights(y), cols

    def _predict_inputs(self, batch: Batch):
        """Features of a batch and its frequency-filled output matrix."""
        x = self.featurizer_.transform(batch)
        return x, np.tile(self.freq_, (x.shape[0], 1))


class LinearParams(Params):
    text: TextFeatureParams = Field(default_factory=TextFeatureParams)
    model: Literal["logistic", "sgd"] = "logistic"
    # Inverse regularization strength of the logistic regression.
    C: float = Field(4.0, gt=0)
    # SGD's regularization strength.
    alpha: float = Field(1e-5, gt=0)
    max_iter: int = Field(200, ge=5)
    # A category needs this many positive training products to get a model;
    # rarer ones are predicted at their training frequency.
    min_positives: int = Field(2, ge=1)


class LinearComponent(TextComponent):
    """One-vs-rest linear models over sparse text features (a word histogram
    or TF-IDF, with colour words kept, removed or as their own feature group)."""

    kind = "linear"
    Params = LinearParams

    def fit(self, train, valid, *, report: Reporter | None = None) -> dict[str, Any]:
        p: LinearParams = self.params
        x, y, weights, trainable = self._fit_inputs(train, p.text, p.min_positives)
        models = []
        with warnings.catch_warnings():
            # A capped max_iter is a tuning choice; the warning per category
            # would drown the log.
            warnings.simplefilter("ignore", ConvergenceWarning)
            for j in trainable:
                cw = {0: 1.0, 1: float(weights[j])} if weights is not None else None
                if p.model == "logistic":
                    m = LogisticRegression(
                        C=p.C, max_iter=p.max_iter, solver="liblinear", class_weight=cw
                    )
                else:
                    m = SGDClassifier(
                        loss="log_loss",
                        alpha=p.alpha,
                        max_iter=p.max_iter,
                        class_weight=cw,
                        random_state=0,
                        tol=1e-4,
                    )
                m.fit(x, y[:, j])
                models.append(m)
        # One matrix product scores every category: the same sigmoid of the same
        # scores as a loop of predict_proba calls, many times faster.
        self.cols_ = trainable.astype(np.int64)
        self.coef_ = np.zeros((x.shape[1], len(models)), dtype=np.float32)
        self.intercept_ = np.zeros(len(models), dtype=np.float32)
        for k, m in enumerate(models):
            self.coef_[:, k] = m.coef_.ravel()
            self.intercept_[k] = m.intercept_[0]
        self.fitted_ = True
        logger.info(
            "%s: %d categories modelled, %d at their frequency, %d features",
            self.name,
            len(trainable),
            len(self.taxonomy) - len(trainable),
            self.featurizer_.n_features,
        )
        return {
            "n_train": len(y),
            "n_features": self.featurizer_.n_features,
            "categories_modelled": len(trainable),
        }

    def _predict(self, batch: Batch) -> np.ndarray:
        x, out = self._predict_inputs(batch)
        if len(self.cols_):
            scores = np.asarray(x @ self.coef_) + self.intercept_
            out[:, self.cols_] = 1.0 / (1.0 + np.exp(-np.clip(scores, -30, 30)))
        return out

    def _save(self, folder: Path) -> None:
        joblib.dump(self.featurizer_, folder / "featurizer.joblib")
        np.savez(
            folder / "linear.npz",
            cols=self.cols_,
            coef=self.coef_,
            intercept=self.intercept_,
            freq=self.freq_,
        )

    def _load(self, folder: Path) -> None:
        self.featurizer_ = joblib.load(folder / "featurizer.joblib")
        state = np.load(folder / "linear.npz")
        self.cols_ = state["cols"]
        self.coef_ = state["coef"]
        self.intercept_ = state["intercept"]
        self.freq_ = state["freq"]
