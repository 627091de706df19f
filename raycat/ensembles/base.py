"""What the weighted and the stacked ensemble share.

An ensemble is a :class:`~raycat.components.base.Component` like any other: it
predicts consistent probabilities for every category, and saves and loads the
same way.  It holds its base components (its *members*) and a *combiner* that
turns their probabilities into its own.

The combiner can be fitted two ways:

- :meth:`EnsembleComponent.fit` (the component interface): members that are not
  trained yet are trained on ``train``; the combiner is fitted on the members'
  predictions for ``valid``;
- :meth:`EnsembleComponent.fit_combiner` on held-out predictions made
  elsewhere, typically out-of-fold predictions (:mod:`raycat.ensembles.oof`).
  Members are not needed for this; attach them afterwards with
  :meth:`EnsembleComponent.set_members` to predict on raw products.

Predictions passed around are dicts ``{member name: array (n, n_categories)}``.
"""

from __future__ import annotations

import logging
from abc import abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import Field

from raycat.components.base import (
    Batch,
    Component,
    ComponentError,
    Params,
    Reporter,
    load_component,
)
from raycat.taxonomy import Taxonomy

logger = logging.getLogger(__name__)

MEMBERS_DIR = "members"
# Probabilities are clipped this far from 0 and 1 before a log or a logit: a
# component that says exactly 0 would otherwise make the log loss infinite.
EPS = 1e-4


class EnsembleError(ComponentError):
    """An ensemble cannot be built, fitted or used as asked."""


class EnsembleParams(Params):
    # The member names, in the order their predictions are combined.  Left
    # empty, the names of the members given to the constructor are used.
    components: list[str] = Field(default_factory=list)
    # Seeds every random choice of the combiner (searches, CV folds).
    seed: int = 0


class EnsembleComponent(Component):
    """Base of the ensembles: members, a combiner, and their persistence."""

    Params = EnsembleParams

    def __init__(
        self,
        taxonomy: Taxonomy,
        params: Params | Mapping[str, Any] | None = None,
        *,
        name: str | None = None,
        members: Mapping[str, Component] | None = None,
    ):
        super().__init__(taxonomy, params, name=name)
        self.members: dict[str, Component] = {}
        self.combiner_fitted_ = False
        if members is not None:
            if not self.params.components:
                self.params.components = list(members)
            self.set_members(members)
        if not self.params.components:
            raise EnsembleError(
                f"ensemble {self.name!r}: no components; name them in the "
                "'components' parameter or pass members=..."
            )

    @property
    def component_names(self) -> list[str]:
        return list(self.params.components)

    def set_members(self, members: Mapping[str, Component]) -> None:
        """Attach the base components that predict for raw products."""
        names = self.component_names
        missing = [n for n in names if n not in members]
        extra = [n for n in members if n not in names]
        if missing or extra:
            raise EnsembleError(
                f"ensemble {self.name!r} combines {names}; the members given "
                f"lack {missing} and add {extra}; pass exactly those components"
            )
        for n in names:
            if members[n].taxonomy.ids != self.taxonomy.ids:
                raise EnsembleError(
                    f"ensemble {self.name!r}: member {n!r} predicts other categories "
                    "than the ensemble's taxonomy; train it on the same run"
                )
        self.members = {n: members[n] for n in names}
        self.uses_images = any(m.uses_images for m in self.members.values())
        self.fitted_ = self.combiner_fitted_

    # -- fitting ------------------------------------------------------------------

    def fit(
        self,
        train: pd.DataFrame,
        valid: pd.DataFrame,
        *,
        report: Reporter | None = None,
    ) -> dict[str, Any]:
        """Train the members that are not trained yet on ``train``, then fit
        the combiner on the members' predictions for ``valid``."""
        if not self.members:
            raise EnsembleError(
                f"ensemble {self.name!r} has no members to fit; pass members=... "
                "or call set_members() first"
            )
        trained = []
        for n, member in self.members.items():
            if not member.fitted_:
                member.fit(train, valid)
                trained.append(n)
        preds = self.predict_members(valid)
        info = self.fit_combiner(preds, self.targets(valid))
        return {"members_trained": trained, "n_combiner": len(valid), **info}

    def fit_combiner(
        self, preds: Mapping[str, np.ndarray], y: np.ndarray
    ) -> dict[str, Any]:
        """Fit the combiner on held-out predictions of the members.

        Parameters
        ----------
        preds : dict of member name -> array (n_products, n_categories)
            Each member's probabilities for products it was not trained on.
        y : array (n_products, n_categories)
            0/1 labels of those products, closed under ancestors.
        """
        stack = self._stack(preds)
        y = np.asarray(y)
        if y.shape != stack.shape[1:]:
            raise EnsembleError(
                f"ensemble {self.name!r}: labels have shape {y.shape}, the "
                f"predictions {stack.shape[1:]}; give one label row per product"
            )
        if stack.shape[1] == 0:
            raise EnsembleError(
                f"ensemble {self.name!r}: no products to fit the combiner on"
            )
        info = self._fit_combiner(stack, y.astype(np.float64))
        self.combiner_fitted_ = True
        self.fitted_ = bool(self.members)
        return info

    # -- prediction ---------------------------------------------------------------

    def predict_members(self, batch: Batch) -> dict[str, np.ndarray]:
        return {n: m.predict_proba(batch) for n, m in self.members.items()}

    def combine(self, preds: Mapping[str, np.ndarray]) -> np.ndarray:
        """The ensemble's consistent probabilities from its members' ones."""
        if not self.combiner_fitted_:
            raise EnsembleError(
                f"ensemble {self.name!r}: the combiner is not fitted; call "
                "fit_combiner() or fit() first"
            )
        probs = np.clip(self._combine(self._stack(preds)), 0.0, 1.0)
        return self.taxonomy.consistent(probs.astype(np.float32))

    def _predict(self, batch: Batch) -> np.ndarray:
        return self._combine(self._stack(self.predict_members(batch)))

    def _stack(self, preds: Mapping[str, np.ndarray]) -> np.ndarray:
        """Member predictions as one array (n_members, n_products, n_categories)."""
        names = self.component_names
        missing = [n for n in names if n not in preds]
        if missing:
            raise EnsembleError(
                f"ensemble {self.name!r} combines {names}; predictions of {missing} "
                f"are missing (got {sorted(preds)})"
            )
        arrays = [np.asarray(preds[n], dtype=np.float64) for n in names]
        shape = (arrays[0].shape[0], len(self.taxonomy))
        for n, a in zip(names, arrays, strict=True):
            if a.shape != shape:
                raise EnsembleError(
                    f"ensemble {self.name!r}: predictions of {n!r} have shape "
                    f"{a.shape}, expected {shape} (one row per product, one column "
                    "per category)"
                )
        return np.stack(arrays)

    # -- what the subclasses provide ----------------------------------------------

    @abstractmethod
    def _fit_combiner(self, stack: np.ndarray, y: np.ndarray) -> dict[str, Any]: ...

    @abstractmethod
    def _combine(self, stack: np.ndarray) -> np.ndarray: ...

    @abstractmethod
    def contributions(self) -> dict[str, dict[str, Any]]:
        """Each member's weight: ``{name: {"overall": float, "per_category":
        array (n_categories,)}}``."""

    def category_sources(self) -> list[str]:
        """Where each category's combination comes from; "global" when one
        rule serves every category."""
        return ["global"] * len(self.taxonomy)

    @abstractmethod
    def _save_combiner(self, folder: Path) -> None: ...

    @abstractmethod
    def _load_combiner(self, folder: Path) -> None: ...

    # -- persistence --------------------------------------------------------------

    def _save(self, folder: Path) -> None:
        # The members are written inside the ensemble's folder, so the folder
        # alone serves predictions even after the members' own folders change.
        if not self.members:
            raise EnsembleError(
                f"ensemble {self.name!r} has no members to save; attach them with "
                "set_members() first"
            )
        for n, member in self.members.items():
            member.save(folder / MEMBERS_DIR / n)
        self._save_combiner(folder)

    def _load(self, folder: Path) -> None:
        self._load_combiner(folder)
        self.combiner_fitted_ = True
        self.set_members(
            {n: load_component(folder / MEMBERS_DIR / n) for n in self.component_names}
        )


def logits(probs: np.ndarray) -> np.ndarray:
    p = np.clip(probs, EPS, 1.0 - EPS)
    return np.log(p) - np.log1p(-p)
