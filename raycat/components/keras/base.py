"""What every Keras component shares: hyperparameters, the text vocabulary,
the model's inputs and head, prediction, save and load."""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
from pydantic import Field

from raycat.components.base import Batch, Component, ComponentError, Params, Reporter
from raycat.components.keras import stream

logger = logging.getLogger(__name__)

MODEL_FILE = "model.keras"
HISTORY_FILE = "history.json"


class KerasParams(Params):
    """Training settings shared by every Keras component."""

    # "ray": one Ray Train TensorflowTrainer worker per model (falls back to
    # "local" with a log line when Ray is not initialized); "local": fit in
    # this process (unit tests, debugging).
    trainer: Literal["ray", "local"] = "ray"
    # Ray Train workers per model.  Only 1 works: Keras 3 model.fit under
    # MultiWorkerMirroredStrategy is broken; scale out by trials instead.
    workers: int = Field(1, ge=1)
    # An upper bound: early stopping on validation loss usually ends sooner.
    epochs: int = Field(20, ge=1)
    # Epochs without a better validation loss before stopping.
    patience: int = Field(3, ge=0)
    batch_size: int = Field(64, ge=1)
    learning_rate: float = Field(1e-3, gt=0)
    hidden_units: int = Field(256, ge=1)
    dropout: float = Field(0.2, ge=0, lt=1)
    # float16 compute on a GPU (ignored, with a warning, without one).
    mixed_precision: bool = False
    # Rows shuffled within a buffer as they stream; 0 keeps the frame's order.
    shuffle_buffer: int = Field(2048, ge=0)
    seed: int = 0
    # Run Keras eagerly, skipping tf.function tracing: tracing a backbone or an
    # LSTM takes longer than training on a few batches (tests, debugging).
    # Much slower per batch: keep it off for real training.
    run_eagerly: bool = False
    # Where checkpoints go (Ray Train's storage_path; must be shared storage
    # on a multi-node cluster).  None: a temporary folder, removed once the
    # trained model is loaded back.
    storage_path: str | None = None


class TextParams(KerasParams):
    """Settings of a model that reads text."""

    # Token ids, padding and out-of-vocabulary included: the most frequent
    # training tokens are kept, the rest share one id.  20k covers a catalog's
    # product vocabulary without a huge embedding table.
    vocab_size: int = Field(20_000, ge=10)
    # Tokens read per product, padded or cut; titles come first, so 64 keeps
    # the words that matter most.
    sequence_length: int = Field(64, ge=2)
    embedding_dim: int = Field(64, ge=2)


Backbone = Literal["mobilenet_v3_small", "mobilenet_v3_large", "efficientnet_b0"]


class ImageParams(KerasParams):
    """Settings of a model that looks at images."""

    # Pixels per side; 224 is what the ImageNet weights were trained at, 32 is
    # the smallest the backbones take (tests).
    image_size: int = Field(224, ge=32)
    backbone: Backbone = "mobilenet_v3_small"
    # "imagenet" (from the Keras cache, or downloaded), a local weights file
    # (.weights.h5 or .h5), or null / "none" for random weights.
    weights: str | None = "imagenet"
    # Backbone layers trained, counted from the top (batch normalization
    # layers stay frozen); 0 freezes the backbone.  None: none of a pretrained
    # backbone (a frozen feature extractor), all of a random one.
    fine_tune_layers: int | None = Field(None, ge=0)
    # Learning rate of the fine-tuned backbone layers, relative to the head's:
    # a pretrained backbone needs small steps not to forget what it knows.
    backbone_lr_factor: float = Field(0.1, gt=0, le=1)


class KerasComponent(Component):
    """Base of the Keras components.

    A subclass sets ``uses_text``/``uses_images`` and implements
    :meth:`_features`: the tensor the shared head classifies, and optionally
    extra logits added to the head's (the wide part of a wide & deep model).
    The head is a hidden layer, one logit per category, :class:`HierarchyMax`
    and a sigmoid, so every model outputs consistent probabilities.

    ``fit`` streams both frames through Ray Data (images decoded on the way),
    stops early on validation loss keeping the best weights, and calls
    ``report`` after each epoch with ``epoch``, ``loss``, ``auc``,
    ``val_loss``, ``val_auc``, in both trainer modes (see :mod:`.training`);
    an exception raised by ``report`` stops training after that epoch and
    comes out of ``fit``.
    """

    Params = KerasParams
    iterative = True
    streams_data = True
    uses_text: ClassVar[bool] = True

    def __init__(self, taxonomy, params=None, *, name=None):
        super().__init__(taxonomy, params, name=name)
        self.model_ = None
        self.vocabulary_: list[str] | None = None
        self.idf_: np.ndarray | None = None
        self.pos_weight_: list[float] | None = None
        self.history_: list[dict[str, float]] = []

    @classmethod
    def trains_elsewhere(cls, params) -> bool:
        default = cls.Params.model_fields["trainer"].default
        return (params or {}).get("trainer", default) == "ray"

    # -- sizes ------------------------------------------------------------------

    @property
    def image_size(self) -> int | None:
        return self.params.image_size if self.uses_images else None

    @property
    def token_count(self) -> int:
        """Rows of the embedding table: padding, out-of-vocabulary, tokens."""
        return len(self.vocabulary_ or []) + 2

    # -- training ---------------------------------------------------------------

    def check_settings(self) -> None:
        """Fail early, before any data moves, on settings that cannot work."""
        if self.params.workers > 1:
            raise ComponentError(
                f"component {self.name!r} ({self.kind}): workers={self.params.workers}"
                " is not supported: Keras 3 model.fit fails under TensorFlow's "
                "MultiWorkerMirroredStrategy (a known Keras 3 bug), so each model "
                "trains on one Ray Train worker; set workers: 1 and scale out by "
                "running more trials or components at once"
            )

    def fit(
        self,
        train: pd.DataFrame,
        valid: pd.DataFrame,
        *,
        report: Reporter | None = None,
    ) -> dict[str, Any]:
        from raycat.components.keras import training

        self.check_settings()
        if valid is None or len(valid) == 0:
            raise ComponentError(
                f"component {self.name!r} ({self.kind}) needs a non-empty "
                "validation frame: it stops early on validation loss"
            )
        if len(train) == 0:
            raise ComponentError(
                f"component {self.name!r}: the training frame is empty"
            )

        if self.uses_text:
            self.vocabulary_, self.idf_ = training.fit_vocabulary(
                stream.texts(train), self.params.vocab_size
            )
            if not self.vocabulary_:
                raise ComponentError(
                    f"component {self.name!r} ({self.kind}): the training products "
                    "have no text (title, description, extra_text, colour are empty)"
                )
        y = self.targets(train)
        weights = self.class_weights(y)
        self.pos_weight_ = None if weights is None else weights.tolist()

        train_ds = self.stream(train, labels=True)
        valid_ds = self.stream(valid, labels=True)
        mode = training.choose_trainer(self)
        if mode == "ray":
            model, history = training.fit_with_ray_train(
                self, train_ds, valid_ds, report=report
            )
        else:
            model, history = training.fit_in_process(
                self, train_ds, valid_ds, report=report
            )

        self.model_ = model
        self.history_ = history
        self.fitted_ = True
        best = min(history, key=lambda row: row.get("val_loss", np.inf))
        return {
            "n_train": len(train),
            "trainer": mode,
            "epochs": len(history),
            "best_epoch": int(best["epoch"]),
            "best_val_loss": float(best.get("val_loss", np.nan)),
            "final_loss": float(history[-1]["loss"]),
        }

    def stream(self, frame: pd.DataFrame, *, labels: bool):
        """A Ray Dataset of this model's inputs (and labels) for ``frame``."""
        return stream.catalog_stream(
            frame,
            text=self.uses_text,
            image_size=self.image_size,
            taxonomy=self.taxonomy if labels else None,
            batch_size=self.params.batch_size,
        )

    @property
    def input_columns(self) -> list[str]:
        return stream.input_columns(text=self.uses_text, images=self.uses_images)

    # -- the model --------------------------------------------------------------

    def build_model(self):
        """The untrained Keras model (after the vocabulary is fitted)."""
        import keras

        from raycat.components.keras.layers import HierarchyMax

        p = self.params
        inputs = {}
        if self.uses_text:
            inputs[stream.TEXT] = keras.Input(
                shape=(), dtype="string", name=stream.TEXT
            )
        if self.uses_images:
            s = p.image_size
            inputs[stream.PIXELS] = keras.Input(
                shape=(s, s, 3), dtype="uint8", name=stream.PIXELS
            )
            inputs[stream.HAS_IMAGE] = keras.Input(
                shape=(), dtype="float32", name=stream.HAS_IMAGE
            )

        features, extra_logits = self._features(inputs)
        x = keras.layers.Dense(p.hidden_units, activation="relu", name="hidden")(
            features
        )
        x = keras.layers.Dropout(p.dropout, name="hidden_dropout")(x)
        logits = keras.layers.Dense(len(self.taxonomy), name="logits", dtype="float32")(
            x
        )
        if extra_logits is not None:
            logits = keras.layers.Add(name="wide_and_deep", dtype="float32")(
                [logits, extra_logits]
            )
        logits = HierarchyMax(
            self.taxonomy.parent_index.tolist(), name="hierarchy", dtype="float32"
        )(logits)
        probs = keras.layers.Activation("sigmoid", name="probs", dtype="float32")(
            logits
        )
        model = keras.Model(inputs=inputs, outputs=probs, name=self.kind)
        self._after_build(model)
        return model

    def _features(self, inputs: dict) -> tuple[Any, Any | None]:
        """(features for the head, extra logits or None)."""
        raise NotImplementedError

    def _after_build(self, model) -> None:
        """Set non-trainable state that comes from the data (IDF weights)."""

    def slow_variables(self, model) -> list:
        """Variables trained at a lower learning rate (a pretrained backbone)."""
        return []

    # -- prediction -------------------------------------------------------------

    def _predict(self, batch: Batch) -> np.ndarray:
        inputs = stream.model_inputs(
            batch, text=self.uses_text, image_size=self.image_size
        )
        n = len(next(iter(inputs.values())))
        if n == 0:
            return np.zeros((0, len(self.taxonomy)), dtype=np.float32)
        step = self.params.batch_size
        if self.params.run_eagerly:
            # A plain call: no predict function to trace.
            def predict(chunk):
                return self.model_(chunk, training=False)
        else:
            predict = self.model_.predict_on_batch
        chunks = [
            np.asarray(predict({k: v[i : i + step] for k, v in inputs.items()}))
            for i in range(0, n, step)
        ]
        return np.concatenate(chunks).astype(np.float32)

    # -- persistence ------------------------------------------------------------

    def _save(self, folder: Path) -> None:
        self.model_.save(folder / MODEL_FILE)
        (folder / HISTORY_FILE).write_text(json.dumps(self.history_, indent=2))

    def _load(self, folder: Path) -> None:
        self.model_ = load_keras_model(folder / MODEL_FILE)
        if (folder / HISTORY_FILE).is_file():
            self.history_ = json.loads((folder / HISTORY_FILE).read_text())

    def __getstate__(self) -> dict[str, Any]:
        # A Keras model does not pickle reliably: ship it as .keras bytes (Ray
        # puts components in the object store and sends them to actors).
        state = dict(self.__dict__)
        model = state.pop("model_", None)
        state["_model_bytes"] = None
        if model is not None:
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / MODEL_FILE
                model.save(path)
                state["_model_bytes"] = path.read_bytes()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        data = state.pop("_model_bytes", None)
        self.__dict__.update(state)
        self.model_ = None
        if data is not None:
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / MODEL_FILE
                path.write_bytes(data)
                self.model_ = load_keras_model(path)


def load_keras_model(path: Path):
    import keras

    # Registers the custom layers before the model is deserialized.
    from raycat.components.keras import layers  # noqa: F401

    if not path.is_file():
        raise ComponentError(f"{path} is missing: the saved Keras model is incomplete")
    return keras.models.load_model(path, compile=False)
