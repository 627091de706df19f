"""Search spaces: one YAML file per component, read into a typed spec.

A file (``configs/components/<component>.yaml``, else ``<kind>.yaml`` there,
else the one raycat ships for the kind) says how to tune one component::

    trials: 8                  # Optuna trials
    max_concurrent: 2          # this component's share of the cluster
    resources: {cpus: 1, gpus: 0}   # per trial; fractions allowed
    scheduler: none            # asha for iterative (deep) models
    metric: val_hierarchical_f1
    mode: max
    seed: 0
    split: {valid_fraction: 0.2, seed: 7}
    asha: {max_t: 10, grace_period: 1, reduction_factor: 2}
    space:
      model: {type: categorical, choices: [logistic, sgd]}
      C: {type: float, low: 0.1, high: 100, log: true, when: {model: logistic}}
      alpha: {type: float, low: 1.0e-6, high: 1.0e-3, log: true, when: {model: sgd}}
      text.min_df: {type: int, low: 1, high: 3}

Parameter names with dots set nested hyperparameters (``text.min_df`` is
``params["text"]["min_df"]``).  ``when`` makes a parameter conditional on
earlier ones: it is only sampled when they have the given values (a value or a
list of allowed values), through Optuna's define-by-run API.
"""

from __future__ import annotations

import copy
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from raycat.config import ResourcesConfig, SplitConfig, format_validation_error
from raycat.errors import ConfigError


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ParamSpace(_Model):
    type: Literal["float", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: list[Any] | None = None
    when: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> ParamSpace:
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("a categorical parameter needs a non-empty `choices`")
        elif self.low is None or self.high is None or self.low > self.high:
            raise ValueError(
                f"a {self.type} parameter needs `low` <= `high`; got low={self.low}, "
                f"high={self.high}"
            )
        elif self.log and self.low <= 0:
            raise ValueError(f"a log-scale parameter needs low > 0; got {self.low}")
        return self


class AshaConfig(_Model):
    # Epochs are the time unit: a trial that is behind its peers after
    # `grace_period` epochs is stopped; none runs past `max_t`.
    max_t: int = Field(10, ge=1)
    grace_period: int = Field(1, ge=1)
    reduction_factor: float = Field(2, gt=1)


class TuningSpec(_Model):
    """How to tune one component."""

    trials: int = Field(4, ge=1)
    max_concurrent: int = Field(1, ge=1)
    resources: ResourcesConfig = Field(default_factory=ResourcesConfig)
    scheduler: Literal["none", "asha"] = "none"
    asha: AshaConfig = Field(default_factory=AshaConfig)
    metric: str = "val_hierarchical_f1"
    mode: Literal["max", "min"] = "max"
    seed: int = 0
    split: SplitConfig | None = None  # defaults to the pipeline's split
    # Failed trials are retried this many times (a lost node, an OOM kill).
    max_failures: int = Field(1, ge=0)
    space: dict[str, ParamSpace] = Field(default_factory=dict)
    source: str | None = Field(None, exclude=True)

    @model_validator(mode="after")
    def _check_conditions(self) -> TuningSpec:
        names = list(self.space)
        for i, (name, p) in enumerate(self.space.items()):
            for dep in p.when:
                if dep not in names[:i]:
                    raise ValueError(
                        f"space.{name}.when refers to {dep!r}, which is not a "
                        "parameter listed before it"
                    )
        return self


def find_space_file(spaces_dir: Path | None, name: str, kind: str) -> Path | None:
    """The search-space file for a component: by name, by kind, or shipped."""
    if spaces_dir is not None:
        for stem in (name, kind):
            path = spaces_dir / f"{stem}.yaml"
            if path.is_file():
                return path
    shipped = resources.files("raycat.tuning") / "spaces" / f"{kind}.yaml"
    return Path(str(shipped)) if shipped.is_file() else None


def load_spec(path: Path | None) -> TuningSpec:
    if path is None:
        return TuningSpec(source="<defaults>")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(
            f"search space {str(path)!r} is not valid YAML: {err}"
        ) from None
    try:
        spec = TuningSpec.model_validate(data)
    except ValidationError as err:
        raise ConfigError(
            format_validation_error(err, str(path)).replace(
                "pipeline config", "search space"
            )
        ) from None
    spec.source = str(path)
    return spec


def _satisfied(when: dict[str, Any], values: dict[str, Any]) -> bool:
    for dep, want in when.items():
        allowed = want if isinstance(want, list) else [want]
        if dep not in values or values[dep] not in allowed:
            return False
    return True


class OptunaSpace:
    """A define-by-run space for ``OptunaSearch``: samples each parameter whose
    ``when`` conditions hold, in file order.  A class, not a closure, because
    Tune pickles the searcher with the experiment's state."""

    def __init__(self, spec: TuningSpec):
        self.space = copy.deepcopy(spec.space)

    def __call__(self, trial) -> None:
        values: dict[str, Any] = {}
        for name, p in self.space.items():
            if not _satisfied(p.when, values):
                continue
            if p.type == "categorical":
                values[name] = trial.suggest_categorical(name, p.choices)
            elif p.type == "int":
                values[name] = trial.suggest_int(
                    name, int(p.low), int(p.high), step=int(p.step or 1), log=p.log
                )
            else:
                values[name] = trial.suggest_float(
                    name, p.low, p.high, step=p.step, log=p.log
                )


def nest(flat: dict[str, Any]) -> dict[str, Any]:
    """``{"text.min_df": 2}`` -> ``{"text": {"min_df": 2}}``."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        node = out
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Deep merge: ``override`` wins, nested dicts are merged key by key."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out
