"""The component interface every model of the ensemble implements.

A component is one model: the random baseline, a linear text model, xgboost, a
Keras network, or an ensemble of other components.  It has

- a ``kind`` (its registry key, named in configs) and an instance ``name``;
- a typed hyperparameter schema, ``Params`` (a pydantic model whose defaults are
  the values to use when nothing is tuned);
- ``fit(train, valid, report=...)`` on two frames of labeled products;
- ``predict_proba(batch)``: a probability for every taxonomy category, made
  consistent (P(child) <= P(parent)), for any batch of products;
- ``save(folder)`` / :func:`load_component` (hyperparameters saved as JSON next
  to the model).

Frames and batches use the catalog's canonical columns (``product_id``,
``title``, ``description``, ``extra_text``, ``colour``, ``image``) plus, for
training, ``targets``: each product's positive categories, closed under
ancestors.  A batch may be a pandas frame or a dict of numpy arrays (what Ray
Data's ``map_batches`` passes), so the same component serves training, batch
scoring on Ray Data actors and online serving.
"""

from __future__ import annotations

import json
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, ValidationError

from raycat.errors import ConfigError, RaycatError
from raycat.taxonomy import Taxonomy

logger = logging.getLogger(__name__)

Batch = pd.DataFrame | Mapping[str, Any]
Reporter = Callable[[dict[str, float]], None]
"""Called by iterative components after each epoch with that epoch's metrics
(``epoch``, ``loss``, ``val_loss``, ...); the tuner uses it to stop bad trials."""

MANIFEST = "component.json"
PARAMS = "params.json"


class ComponentError(RaycatError):
    """A component cannot be built, trained, saved or loaded."""


class Params(BaseModel):
    """Base of every component's hyperparameter schema."""

    model_config = ConfigDict(extra="forbid")

    # Imbalance correction: "balanced" weighs each category's positives by
    # negatives/positives.  Whether it helps is an experiment, so off by default.
    class_weight: str | None = None


class Component(ABC):
    kind: ClassVar[str]
    Params: ClassVar[type[Params]] = Params
    uses_images: ClassVar[bool] = False
    iterative: ClassVar[bool] = False
    # Whether ``fit`` reads its data through Ray Data tasks, which need a CPU
    # of their own while the model trains (pipelines keep one free for them).
    streams_data: ClassVar[bool] = False

    def __init__(
        self,
        taxonomy: Taxonomy,
        params: Params | Mapping[str, Any] | None = None,
        *,
        name: str | None = None,
    ):
        self.taxonomy = taxonomy
        self.name = name or self.kind
        if isinstance(params, self.Params):
            self.params = params
        else:
            try:
                self.params = self.Params.model_validate(dict(params or {}))
            except ValidationError as err:
                problems = "; ".join(
                    f"{'.'.join(map(str, e['loc']))}: {e['msg']} "
                    f"(got {e.get('input')!r})"
                    for e in err.errors()
                )
                raise ConfigError(
                    f"component {self.name!r} ({self.kind}): invalid hyperparameters: "
                    f"{problems}; allowed: {sorted(self.Params.model_fields)}"
                ) from None
        self.fitted_ = False
        # What the pipeline granted one training run (a ResourcesConfig: cpus,
        # gpus); components that start Ray Train workers size them by it.
        self.resources = None

    @classmethod
    def trains_elsewhere(cls, params: Mapping[str, Any] | None) -> bool:
        """Whether ``fit`` with these hyperparameters trains on Ray workers it
        starts itself (and sizes from :attr:`resources`), so the task that calls
        it should hold no resources: holding them would starve those workers."""
        return False

    # -- training and prediction ------------------------------------------------

    @abstractmethod
    def fit(
        self,
        train: pd.DataFrame,
        valid: pd.DataFrame,
        *,
        report: Reporter | None = None,
    ) -> dict[str, Any]:
        """Train on ``train``; ``valid`` is for early stopping and per-epoch
        metrics.  Returns what training did (epochs, final losses...)."""

    @abstractmethod
    def _predict(self, batch: Batch) -> np.ndarray:
        """Raw per-category probabilities, shape (n, len(taxonomy))."""

    def predict_proba(self, batch: Batch) -> np.ndarray:
        """Consistent per-category probabilities for every product of ``batch``."""
        if not self.fitted_:
            raise ComponentError(
                f"component {self.name!r} is not trained; call fit() or load a "
                "saved one with load_component()"
            )
        probs = np.asarray(self._predict(batch), dtype=np.float32)
        n = len(batch["product_id"]) if "product_id" in batch else probs.shape[0]
        if probs.shape != (n, len(self.taxonomy)):
            raise ComponentError(
                f"component {self.name!r} predicted shape {probs.shape}, expected "
                f"({n}, {len(self.taxonomy)})"
            )
        return self.taxonomy.consistent(np.clip(probs, 0.0, 1.0))

    def targets(self, frame: pd.DataFrame) -> np.ndarray:
        """The multi-hot label matrix of a training frame."""
        return self.taxonomy.multi_hot(frame["targets"].tolist())

    def class_weights(self, y: np.ndarray) -> np.ndarray | None:
        """Per-category positive weights (negatives/positives) when the
        ``class_weight`` hyperparameter asks for them."""
        if self.params.class_weight in (None, "none"):
            return None
        if self.params.class_weight != "balanced":
            raise ConfigError(
                f"component {self.name!r}: class_weight must be null or 'balanced'; "
                f"got {self.params.class_weight!r}"
            )
        pos = y.sum(axis=0).astype(np.float64)
        return np.where(pos > 0, (len(y) - pos) / np.maximum(pos, 1), 1.0)

    # -- persistence ------------------------------------------------------------

    def save(self, folder: str | Path) -> Path:
        """Write the model, its hyperparameters (``params.json``) and a manifest
        naming its kind and categories."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / PARAMS).write_text(json.dumps(self.params.model_dump(), indent=2))
        manifest = {
            "kind": self.kind,
            "name": self.name,
            "categories": self.taxonomy.ids,
        }
        self.taxonomy.save(folder / "taxonomy.json")
        self._save(folder)
        (folder / MANIFEST).write_text(json.dumps(manifest, indent=2))
        return folder

    @abstractmethod
    def _save(self, folder: Path) -> None: ...

    @abstractmethod
    def _load(self, folder: Path) -> None: ...


def load_component(folder: str | Path) -> Component:
    """Load a component saved with :meth:`Component.save`."""
    from raycat.components.registry import component_class

    folder = Path(folder)
    if not (folder / MANIFEST).is_file():
        raise ComponentError(
            f"{folder} holds no saved component ({MANIFEST} is missing); train one "
            "with `raycat train-pred` first"
        )
    manifest = json.loads((folder / MANIFEST).read_text())
    taxonomy = Taxonomy.load(folder / "taxonomy.json")
    params = json.loads((folder / PARAMS).read_text())
    cls = component_class(manifest["kind"])
    comp = cls(taxonomy, params, name=manifest["name"])
    comp._load(folder)
    comp.fitted_ = True
    return comp
