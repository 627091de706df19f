"""The pipeline config: one YAML file names everything a run needs.

The file is read at the edge (:func:`load_config`) into typed pydantic models.
Relative paths in it are resolved against the directory of the YAML file, so a
config and the data next to it move together.  Later pipeline stages add their
own sections (``components``, ``tuning``, ``active_learning``, ``serving``).

Example (the dataset part)::

    name: my-shop
    home: ../runs/my-shop
    dataset:
      catalog:
        path: data/products.parquet
        columns: {id: sku, title: name, description: body, image: image_file}
        image_root: data/images
      taxonomy: {source: path_column, column: category_path, separator: " > "}
      ground_truth: {source: path_column, test_fraction: 0.2, seed: 7}
      rules: rules.yaml
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from raycat.active.config import ActiveLearningConfig
from raycat.errors import ConfigError
from raycat.metrics.store import MetricsConfig

URI_SCHEMES = ("s3://", "gs://", "gcs://", "hdfs://", "abfs://", "file://")


def is_uri(path: str) -> bool:
    return path.startswith(URI_SCHEMES)


class _Model(BaseModel):
    # Unknown keys are an error: a typo in a setting must not be silently ignored.
    model_config = ConfigDict(extra="forbid", frozen=False)


class ColumnMap(_Model):
    """Which catalog column holds what."""

    id: str = "id"
    title: str = "title"
    description: str | None = "description"
    image: str | None = "image"
    # Extra free-text fields appended to the text (brand, colour, material...).
    extra_text: list[str] = Field(default_factory=list)
    # Columns of colour words, used by components that treat colour separately.
    colour: str | None = None


class CatalogConfig(_Model):
    path: str
    # Inferred from the file extension when left out.
    format: Literal["parquet", "csv", "jsonl"] | None = None
    columns: ColumnMap = Field(default_factory=ColumnMap)
    # Relative image paths in the catalog are relative to this directory.
    image_root: str | None = None

    @model_validator(mode="after")
    def _infer_format(self) -> CatalogConfig:
        if self.format is None:
            lower = self.path.lower().rstrip("/")
            if lower.endswith((".parquet", ".pq")) or "." not in Path(lower).name:
                self.format = "parquet"
            elif lower.endswith((".csv", ".csv.gz")):
                self.format = "csv"
            elif lower.endswith((".jsonl", ".json", ".ndjson", ".jsonl.gz")):
                self.format = "jsonl"
            else:
                raise ValueError(
                    f"cannot infer the format of {self.path!r} from its extension; "
                    "set dataset.catalog.format to parquet, csv or jsonl"
                )
        return self


class TaxonomyConfig(_Model):
    source: Literal["path_column", "table"] = "path_column"
    # source=path_column: the catalog column holding each product's path.
    column: str | None = None
    separator: str = " > "
    # Deeper levels are cut off; 0 keeps every level.
    max_depth: int = Field(0, ge=0)
    # Many catalogs end a path with the product's own name; such an element is
    # not a category.
    drop_title_leaf: bool = True
    # source=table: a parent/child table (CSV, Parquet or JSON Lines).
    table: str | None = None
    parent_column: str = "parent"
    child_column: str = "child"

    @model_validator(mode="after")
    def _check_source(self) -> TaxonomyConfig:
        if self.source == "path_column" and not self.column:
            raise ValueError(
                "source is path_column but no column is set; set "
                "dataset.taxonomy.column to the catalog column with category paths"
            )
        if self.source == "table" and not self.table:
            raise ValueError(
                "source is table but no table is set; set dataset.taxonomy.table to "
                "a parent/child table file"
            )
        return self


class GroundTruthConfig(_Model):
    # path_column: the taxonomy path column is the ground truth (as in a catalog
    # whose categories were assigned by hand); table: a labels table with one
    # (product id, category path) row per label; none: no ground truth.
    source: Literal["path_column", "table", "none"] = "path_column"
    column: str | None = None  # defaults to dataset.taxonomy.column
    table: str | None = None
    product_column: str = "product_id"
    category_column: str = "category"
    # Size of the held-out test set, as a fraction of the products that have
    # ground truth or as a count; stratified by top-level category.
    test_fraction: float | None = Field(0.2, gt=0, lt=1)
    test_size: int | None = Field(None, gt=0)
    seed: int = 0

    @model_validator(mode="after")
    def _check(self) -> GroundTruthConfig:
        if self.test_size is not None:
            self.test_fraction = None
        if self.source == "table" and not self.table:
            raise ValueError(
                "source is table but no table is set; set dataset.ground_truth.table"
            )
        return self


class DatasetConfig(_Model):
    catalog: CatalogConfig
    taxonomy: TaxonomyConfig
    ground_truth: GroundTruthConfig = Field(default_factory=GroundTruthConfig)
    # The old system's rules file (YAML); optional.
    rules: str | None = None


class SplitConfig(_Model):
    """A component's own train / validation split of the dev set."""

    valid_fraction: float = Field(0.2, gt=0, lt=1)
    seed: int = 0


class ResourcesConfig(_Model):
    """What one training run of a component asks Ray for (fractions allowed)."""

    cpus: float = Field(1.0, ge=0)
    gpus: float = Field(0.0, ge=0)


class ComponentSpec(_Model):
    """One ensemble component: its kind (registry key) and hyperparameters."""

    kind: str
    params: dict[str, Any] = Field(default_factory=dict)
    split: SplitConfig = Field(default_factory=SplitConfig)
    resources: ResourcesConfig = Field(default_factory=ResourcesConfig)
    enabled: bool = True


class TrainingConfig(_Model):
    # Which label sources train the components; human and oracle answers
    # overrule rule labels for the same product and category.
    label_sources: list[Literal["rule", "human", "oracle"]] = Field(
        default_factory=lambda: ["rule", "human", "oracle"]
    )
    # Dev products with no positive label: "drop" them (the rules are
    # incomplete, so silence is not a negative) or "keep" them as all-negative.
    unlabeled: Literal["drop", "keep"] = "drop"
    # Threshold of a category with too few validation positives to tune one.
    default_threshold: float = Field(0.5, gt=0, lt=1)


class TuningConfig(_Model):
    # Folder of search-space files (<component>.yaml or <kind>.yaml); defaults
    # to `components/` next to the pipeline config, then to raycat's own.
    spaces_dir: str | None = None
    # Overrides every component's number of trials (a quick smoke run).
    trials: int | None = Field(None, ge=1)
    # Overrides every component's concurrency limit.
    max_concurrent: int | None = Field(None, ge=1)


class WeightedEnsembleConfig(_Model):
    """How the weighted ensemble picks its weights (on held-out predictions)."""

    # log_loss is smooth, so an exact optimizer finds its weights; the F1
    # metrics are step functions of the weights and are searched instead.
    metric: Literal["log_loss", "micro_f1", "macro_f1", "hierarchical_f1"] = "log_loss"
    # Random weight vectors tried by the F1 search before refining the best;
    # each costs one threshold choice and one evaluation (~0.1 s on 1k x 300).
    samples: int = Field(48, ge=1)


class StackedEnsembleConfig(_Model):
    """The stacked ensemble: a logistic regression on the components' scores."""

    # One set of coefficients for every category (rows are (product, category)
    # pairs) instead of one logistic regression per category.
    shared_coefficients: bool = False
    # Inverse regularization strengths tried by cross-validation.
    Cs: list[float] = Field(default_factory=lambda: [0.01, 0.1, 1.0, 10.0])
    cv: int = Field(3, ge=2)
    # A category needs this many positive (and negative) held-out products for
    # a model of its own; fewer, and its coefficients would be noise.
    min_positives: int = Field(8, ge=2)
    # What a category with too few positives uses instead.
    fallback: Literal["shared", "average"] = "shared"

    @model_validator(mode="after")
    def _check_cs(self) -> StackedEnsembleConfig:
        bad = [c for c in self.Cs if not c > 0]
        if not self.Cs or bad:
            raise ValueError(
                "Cs must be a non-empty list of positive regularization strengths, "
                f"e.g. [0.01, 0.1, 1, 10]; got {self.Cs}"
            )
        if self.cv > self.min_positives:
            raise ValueError(
                f"cv ({self.cv}) must not exceed min_positives ({self.min_positives})"
                ": every cross-validation fold needs a positive product; lower cv "
                "or raise min_positives"
            )
        return self


class EnsembleConfig(_Model):
    """The ``ensemble`` section: cross-fitting, combiners and model selection."""

    # Folds of the cross-fitting that makes held-out predictions on the dev set;
    # each component is trained k times, so k trades time for data.
    folds: int = Field(5, ge=2, le=20)
    # Seeds the fold assignment, the meta-train / meta-valid halves, shuffles
    # and searches.
    seed: int = 0
    # Components to combine; None means every enabled component whose kind is
    # not "random" (a baseline that only adds noise to an ensemble).
    components: list[str] | None = None
    # The validation metric that picks the run's current model.
    selection_metric: Literal["micro_f1", "macro_f1", "hierarchical_f1"] = (
        "hierarchical_f1"
    )
    weighted: WeightedEnsembleConfig = Field(default_factory=WeightedEnsembleConfig)
    stacked: StackedEnsembleConfig = Field(default_factory=StackedEnsembleConfig)

    @model_validator(mode="after")
    def _check_components(self) -> EnsembleConfig:
        if self.components is not None and len(set(self.components)) < 2:
            raise ValueError(
                "an ensemble needs at least 2 distinct components; list 2 or more "
                f"names in ensemble.components, or leave it out; got {self.components}"
            )
        return self


class RetrainConfig(_Model):
    """One active-learning iteration (`raycat retrain`)."""

    # Components trained every iteration; null: every enabled component.
    components: list[str] | None = None
    # model-R and model-A are both this component; null: the iteration's best.
    compare_component: str | None = None
    # Validation metric that picks the iteration's model.
    selection_metric: Literal["micro_f1", "macro_f1", "hierarchical_f1"] = (
        "hierarchical_f1"
    )


class ServingAutoscaling(_Model):
    """Serve's autoscaling of the model deployment (replicas follow the load)."""

    min_replicas: int = Field(1, ge=0)
    max_replicas: int = Field(2, ge=1)
    # Requests in flight per replica that Serve aims for; a replica scores a
    # batch at a time, so a few queued calls keep it busy without long waits.
    target_ongoing_requests: float = Field(4.0, gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> ServingAutoscaling:
        if self.max_replicas < self.min_replicas:
            raise ValueError(
                f"max_replicas ({self.max_replicas}) must be >= min_replicas "
                f"({self.min_replicas})"
            )
        return self


class ServingConfig(_Model):
    """The online scoring app (`raycat serve`): Serve, HTTP, auth and limits."""

    # Loopback by default: listening on every interface is a decision to make.
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    route_prefix: str = "/"
    # "token": write endpoints need `Authorization: Bearer <token>`; "none" turns
    # that off and must be chosen explicitly.
    auth: Literal["token", "none"] = "token"
    # The bearer token; null: read RAYCAT_SERVE_TOKEN when the app starts.
    token: str | None = None
    max_products_per_request: int = Field(64, ge=1)
    # 5 MiB: catalog photos are well under it; a larger upload is a mistake.
    max_image_bytes: int = Field(5 * 1024 * 1024, ge=1024)
    # Whether /v1/score may fetch image URLs (the server then makes requests
    # that callers choose; turn it off where that is not wanted).
    allow_image_urls: bool = True
    image_fetch_timeout_s: float = Field(5.0, gt=0)
    # Calls scored together by one model replica; 1 turns batching off.
    batch_max_size: int = Field(16, ge=1)
    # 5 ms: long enough to gather concurrent calls, short against a model call.
    batch_wait_s: float = Field(0.005, ge=0)
    # Model replicas when autoscaling is null.
    replicas: int = Field(1, ge=1)
    autoscaling: ServingAutoscaling | None = None
    ingress_replicas: int = Field(1, ge=1)
    # Serve's default of 5 concurrent requests per replica starves the batcher.
    max_ongoing_requests: int = Field(64, ge=1)
    model_num_cpus: float = Field(1.0, ge=0)
    ingress_num_cpus: float = Field(0.5, ge=0)
    # How long a labeler holds a queue page before others may get it.
    reservation_ttl_s: float = Field(900.0, gt=0)
    page_size: int = Field(10, ge=1)
    max_page_size: int = Field(100, ge=1)
    # Categories shown per product on the labeling page.
    page_top_k: int = Field(5, ge=1)
    # How often current.json is checked for a new model.
    model_refresh_s: float = Field(5.0, gt=0)
    # Label Studio: a category is predicted when its probability reaches this.
    labelstudio_threshold: float = Field(0.5, ge=0, le=1)


def _default_components() -> dict[str, ComponentSpec]:
    # The classical set: the baseline, linear models on a word histogram and
    # on TF-IDF with colour words as their own group and without them, xgboost.
    specs = {
        "random": {"kind": "random"},
        "hist_colour": {
            "kind": "linear",
            "params": {"text": {"features": "histogram", "colour": "feature"}},
        },
        "hist_nocolour": {
            "kind": "linear",
            "params": {"text": {"features": "histogram", "colour": "remove"}},
        },
        "tfidf_colour": {
            "kind": "linear",
            "params": {"text": {"features": "tfidf", "colour": "feature"}},
        },
        "tfidf_nocolour": {
            "kind": "linear",
            "params": {"text": {"features": "tfidf", "colour": "remove"}},
        },
        "xgboost": {"kind": "xgboost"},
    }
    return {k: ComponentSpec.model_validate(v) for k, v in specs.items()}


class PipelineConfig(_Model):
    """A whole pipeline config.  Sections added by later stages are kept as
    plain dicts here until their own models exist."""

    model_config = ConfigDict(extra="allow")

    name: str = "raycat"
    # The run's home: label store, snapshots, models, metrics.
    home: str = "runs/default"
    dataset: DatasetConfig
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    components: dict[str, ComponentSpec] = Field(default_factory=_default_components)
    tuning: TuningConfig = Field(default_factory=TuningConfig)
    # Where every trial result and evaluation goes: local files by default.
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    active_learning: ActiveLearningConfig = Field(default_factory=ActiveLearningConfig)
    retrain: RetrainConfig = Field(default_factory=RetrainConfig)
    ensemble: EnsembleConfig = Field(default_factory=EnsembleConfig)
    serving: ServingConfig = Field(default_factory=ServingConfig)
    # Where the YAML file was read from; paths were resolved against its folder.
    source_path: str | None = Field(None, exclude=True)

    @property
    def home_path(self) -> Path:
        return Path(self.home)

    def section(self, name: str) -> Any:
        return getattr(self, name, None)


def _resolve(base: Path, value: str | None) -> str | None:
    if value is None or is_uri(value):
        return value
    p = Path(os.path.expandvars(os.path.expanduser(value)))
    return str(p if p.is_absolute() else (base / p).resolve())


def format_validation_error(err: ValidationError, source: str) -> str:
    lines = [f"invalid pipeline config {source}:"]
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        got = e.get("input")
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown setting (check its spelling and indentation)"
        elif e["type"] == "missing":
            msg = "required setting is missing"
        got_text = "" if e["type"] == "missing" else f" (got {got!r:.80})"
        lines.append(f"  - {loc}: {msg}{got_text}")
    return "\n".join(lines)


def parse_config(
    data: dict, *, base_dir: str | Path = ".", source: str = "<dict>"
) -> PipelineConfig:
    """Validate a config dict and resolve its relative paths against ``base_dir``."""
    if not isinstance(data, dict):
        raise ConfigError(
            f"invalid pipeline config {source}: expected a mapping at the top level, "
            f"got {type(data).__name__}"
        )
    try:
        cfg = PipelineConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, source)) from None

    base = Path(base_dir).resolve()
    ds = cfg.dataset
    cfg.home = _resolve(base, os.environ.get("RAYCAT_HOME") or cfg.home)
    ds.catalog.path = _resolve(base, ds.catalog.path)
    ds.catalog.image_root = _resolve(base, ds.catalog.image_root)
    ds.taxonomy.table = _resolve(base, ds.taxonomy.table)
    ds.ground_truth.table = _resolve(base, ds.ground_truth.table)
    ds.rules = _resolve(base, ds.rules)
    if cfg.tuning.spaces_dir is not None:
        cfg.tuning.spaces_dir = _resolve(base, cfg.tuning.spaces_dir)
    elif (base / "components").is_dir():
        cfg.tuning.spaces_dir = str(base / "components")
    if ds.ground_truth.source == "path_column" and not ds.ground_truth.column:
        if ds.taxonomy.source != "path_column":
            raise ConfigError(
                f"invalid pipeline config {source}:\n  - dataset.ground_truth.column: "
                "required when ground truth comes from a path column and the taxonomy "
                "comes from a table"
            )
        ds.ground_truth.column = ds.taxonomy.column
    cfg.source_path = source
    return cfg


def load_config(path: str | Path) -> PipelineConfig:
    """Read and validate a pipeline config YAML file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"pipeline config {str(path)!r} not found; pass the path of a YAML file "
            "such as configs/flipkart-1050.yaml, or make one with "
            "`raycat demo-data OUT_DIR`"
        )
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(
            f"pipeline config {str(path)!r} is not valid YAML: {err}"
        ) from None
    return parse_config(data, base_dir=path.parent, source=str(path))
