"""Ensembles of components and the choice of the run's current model.

- :mod:`~raycat.ensembles.oof`: out-of-fold predictions by k-fold cross-fitting;
- :mod:`~raycat.ensembles.meta`: the meta-learner's dataset (a Ray Data join);
- :mod:`~raycat.ensembles.weighted` and :mod:`~raycat.ensembles.stacked`: the
  two ensembles, components of kinds ``weighted`` and ``stacked``;
- :mod:`~raycat.ensembles.selection`: fair comparison, ``current.json``;
- :mod:`~raycat.ensembles.contributions`: what each component brings.

The pipeline that runs them all is :func:`raycat.pipelines.ensemble.run_ensemble`.
"""

from raycat.ensembles.base import EnsembleComponent, EnsembleError, EnsembleParams
from raycat.ensembles.selection import current_model
from raycat.ensembles.stacked import StackedEnsemble, StackedParams
from raycat.ensembles.weighted import WeightedEnsemble, WeightedParams

__all__ = [
    "EnsembleComponent",
    "EnsembleError",
    "EnsembleParams",
    "StackedEnsemble",
    "StackedParams",
    "WeightedEnsemble",
    "WeightedParams",
    "current_model",
]
