"""Training a Keras component: in this process, or on a Ray Train worker.

Both paths run the same ``model.fit`` on the same Ray Data streams (converted
with ``to_tf``), with early stopping on validation loss (best weights
restored) and a checkpoint every epoch.

- In process (``trainer: local``): per-epoch metrics go to ``report`` live,
  from a Keras callback; checkpoints (``last.keras``, ``best.keras``) go to
  ``storage_path`` or a temporary folder.
- Ray Train (``trainer: ray``): one ``TensorflowTrainer`` worker, sized by the
  component's ``resources`` (cpus, gpus).  The worker reports each epoch's
  metrics and checkpoint (``model.keras``) to Ray Train, which keeps the one
  with the lowest validation loss; the component loads it afterwards, so the
  trained model lives in the calling process.  The worker's Keras callbacks
  cannot call the caller's ``report`` (another process): each epoch's
  metrics travel through a small Ray actor (:class:`.channel.EpochChannel`) that the
  calling thread polls and hands to ``report`` as they come.  Should the
  channel fail, the run's history (the training function's return value) is
  replayed to ``report`` once Ray Train finishes.

In both modes an exception raised by ``report`` (a tuner stopping a bad
trial) ends training after the current epoch; the exception is re-raised.

Only one worker per model: Keras 3 ``model.fit`` under
``MultiWorkerMirroredStrategy`` fails, so ``workers > 1`` is refused up front.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import keras
import numpy as np

from raycat.components.base import ComponentError, Reporter
from raycat.components.keras import stream
from raycat.components.keras.channel import EpochChannel
from raycat.components.keras.layers import SlowBackboneAdam, WeightedBinaryCrossentropy

if TYPE_CHECKING:
    from raycat.components.keras.base import KerasComponent

logger = logging.getLogger(__name__)

CHECKPOINT_MODEL = "model.keras"
# Returned by a reporter to ask the training loop to stop after this epoch.
STOP = "stop"
# Seconds between two looks at the epoch channel of a Ray Train run.
POLL_S = 0.5
# Batches fetched ahead of the one training, by Ray and again by tf.data.
PREFETCH_BATCHES = 4


# -- text vocabulary -------------------------------------------------------------


def fit_vocabulary(texts: Sequence[str], vocab_size: int) -> tuple[list[str], Any]:
    """The ``vocab_size - 2`` most frequent training tokens, and IDF weights
    for every token id (0: padding, weight 0; 1: out of vocabulary; then the
    tokens in order).

    IDF is the smoothed ``log((1 + n) / (1 + df)) + 1`` over the training
    products, counted on the whole text (not cut to the sequence length).
    """
    texts = np.asarray(texts, dtype=object).astype(str)
    layer = keras.layers.TextVectorization(max_tokens=vocab_size)
    layer.adapt(texts, batch_size=4096)
    tokens = [str(t) for t in layer.get_vocabulary()[2:]]

    n_ids = len(tokens) + 2
    df = np.zeros(n_ids, dtype=np.int64)
    for start in range(0, len(texts), 4096):
        ids = np.asarray(layer(texts[start : start + 4096]), dtype=np.int64)
        rows = np.repeat(np.arange(len(ids)), ids.shape[1])
        flat = ids.ravel()
        keep = flat > 0
        pairs = np.unique(rows[keep] * n_ids + flat[keep])
        df += np.bincount(pairs % n_ids, minlength=n_ids)
    idf = (np.log((1.0 + len(texts)) / (1.0 + df)) + 1.0).astype(np.float32)
    idf[0] = 0.0
    logger.info("vocabulary of %d tokens from %d products", len(tokens), len(texts))
    return tokens, idf


# -- devices and model -----------------------------------------------------------


def configure_devices() -> int:
    """Turn on memory growth for every visible GPU (so a model takes what it
    needs, not the whole card); returns the number of GPUs."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:
            # TensorFlow already started on this GPU: growth is fixed by then.
            logger.debug("memory growth already fixed for %s", gpu.name)
    return len(gpus)


def build_and_compile(component: KerasComponent, *, gpu: bool):
    """The component's model, compiled with its loss and optimizer."""
    p = component.params
    keras.utils.set_random_seed(p.seed)
    mixed = p.mixed_precision and gpu
    if p.mixed_precision and not gpu:
        logger.warning(
            "%s: mixed_precision ignored: no GPU is visible (float16 is only "
            "faster on a GPU)",
            component.name,
        )

    previous = keras.config.dtype_policy()
    if mixed:
        keras.config.set_dtype_policy("mixed_float16")
    try:
        model = component.build_model()
    finally:
        keras.config.set_dtype_policy(previous)

    optimizer = SlowBackboneAdam(
        learning_rate=p.learning_rate,
        slow_factor=getattr(p, "backbone_lr_factor", 1.0),
    )
    optimizer.set_slow_variables(component.slow_variables(model))
    model.compile(
        optimizer=optimizer,
        loss=WeightedBinaryCrossentropy(component.pos_weight_),
        metrics=[keras.metrics.AUC(name="auc")],
        run_eagerly=p.run_eagerly,
    )
    return model


def as_tf(component: KerasComponent, data, *, training: bool):
    """A Ray Dataset or DataIterator as a ``tf.data.Dataset`` of
    ``({input: tensor}, labels)``; each pass re-runs the stream."""
    import tensorflow as tf

    p = component.params
    shuffle = p.shuffle_buffer if training and p.shuffle_buffer else None
    specs = {
        stream.TEXT: tf.TensorSpec((None,), tf.string),
        stream.HAS_IMAGE: tf.TensorSpec((None,), tf.float32),
    }
    if component.uses_images:
        size = component.params.image_size
        specs[stream.PIXELS] = tf.TensorSpec((None, size, size, 3), tf.uint8)
    columns = component.input_columns
    # Given type specs spare to_tf a pass over the stream to infer them.
    batches = data.to_tf(
        feature_columns=columns,
        label_columns=stream.LABELS,
        batch_size=p.batch_size,
        local_shuffle_buffer_size=shuffle,
        prefetch_batches=PREFETCH_BATCHES,
        feature_type_spec={c: specs[c] for c in columns},
        label_type_spec=tf.TensorSpec((None, len(component.taxonomy)), tf.float32),
    )
    # tf.data pulls the next batches from Ray in its own thread while the
    # model trains on this one.
    return batches.prefetch(PREFETCH_BATCHES)


class EpochHistory(keras.callbacks.Callback):
    """Collects each epoch's metrics (``epoch`` counted from 1) and hands them
    to ``report`` as they come."""

    def __init__(self, report: Reporter | None = None):
        super().__init__()
        self.report = report
        self.rows: list[dict[str, float]] = []

    def on_epoch_end(self, epoch, logs=None):
        row = {"epoch": epoch + 1}
        for key, value in (logs or {}).items():
            if np.ndim(value) == 0:
                row[key] = float(value)
        self.rows.append(row)
        if self.report is not None and self.report(dict(row)) is STOP:
            self.model.stop_training = True


def _callbacks(component: KerasComponent) -> list:
    return [
        keras.callbacks.EarlyStopping(
            monitor="val_loss",
            patience=component.params.patience,
            restore_best_weights=True,
        )
    ]


def _fit(component: KerasComponent, model, train_tf, valid_tf, callbacks) -> None:
    import warnings

    with warnings.catch_warnings():
        # Ray's to_tf streams have no known length: Keras warns at the end of
        # each pass that the input "ran out of data", which is expected.
        warnings.filterwarnings("ignore", message=".*ran out of data.*")
        model.fit(
            train_tf,
            validation_data=valid_tf,
            epochs=component.params.epochs,
            callbacks=callbacks,
            # The stream shuffles within its buffer; Keras cannot shuffle it.
            shuffle=False,
            verbose=0,
        )


# -- in process --------------------------------------------------------------------


def choose_trainer(component: KerasComponent) -> str:
    if component.params.trainer == "local":
        return "local"
    import ray

    if not ray.is_initialized():
        logger.info(
            "%s: Ray is not initialized, so it trains in this process instead of "
            "on a Ray Train worker (Ray Data still streams its input)",
            component.name,
        )
        return "local"
    return "ray"


def fit_in_process(
    component: KerasComponent, train_ds, valid_ds, *, report: Reporter | None
):
    """Train in this process; returns (model with the best weights, history)."""
    gpus = configure_devices()
    temporary = component.params.storage_path is None
    if temporary:
        folder = Path(tempfile.mkdtemp(prefix="raycat-checkpoints-"))
    else:
        folder = Path(component.params.storage_path) / f"{component.name}-local"
        folder.mkdir(parents=True, exist_ok=True)
    history = EpochHistory(report)
    try:
        model = build_and_compile(component, gpu=gpus > 0)
        callbacks = [
            *_callbacks(component),
            history,
            # Weights only: a few times faster to write than the whole model,
            # and the component rebuilds the model from its own state.
            keras.callbacks.ModelCheckpoint(
                str(folder / "last.weights.h5"), save_weights_only=True
            ),
            keras.callbacks.ModelCheckpoint(
                str(folder / "best.weights.h5"),
                monitor="val_loss",
                save_best_only=True,
                save_weights_only=True,
            ),
        ]
        _fit(
            component,
            model,
            as_tf(component, train_ds, training=True),
            as_tf(component, valid_ds, training=False),
            callbacks,
        )
    finally:
        if temporary:
            shutil.rmtree(folder, ignore_errors=True)
    _check_history(component, history.rows)
    return model, history.rows


def _check_history(component: KerasComponent, rows: list[dict]) -> None:
    if not rows:
        raise ComponentError(
            f"component {component.name!r}: training ran no epoch (an empty "
            "training stream?)"
        )
    if not np.isfinite(rows[-1].get("loss", np.nan)):
        raise ComponentError(
            f"component {component.name!r}: training loss is {rows[-1].get('loss')}"
            f" after epoch {rows[-1]['epoch']}; lower learning_rate (now "
            f"{component.params.learning_rate})"
        )


# -- Ray Train -----------------------------------------------------------------------


class _ReportToRayTrain(keras.callbacks.Callback):
    """Each epoch: the model as a checkpoint, with that epoch's metrics."""

    def __init__(self, history: EpochHistory):
        super().__init__()
        self.history = history

    def on_epoch_end(self, epoch, logs=None):
        import ray.train

        with tempfile.TemporaryDirectory() as tmp:
            self.model.save(Path(tmp) / CHECKPOINT_MODEL)
            ray.train.report(
                dict(self.history.rows[-1]),
                checkpoint=ray.train.Checkpoint.from_directory(tmp),
            )


def train_worker(config: dict[str, Any]) -> list[dict[str, float]]:
    """The Ray Train training function: fit the component's model on this
    worker's shards; returns the per-epoch history."""
    import ray.train

    component: KerasComponent = config["component"]
    channel = config.get("channel")
    gpus = configure_devices()
    history = EpochHistory(_channel_reporter(channel) if channel else None)
    model = build_and_compile(component, gpu=gpus > 0)
    _fit(
        component,
        model,
        as_tf(component, ray.train.get_dataset_shard("train"), training=True),
        as_tf(component, ray.train.get_dataset_shard("valid"), training=False),
        [*_callbacks(component), history, _ReportToRayTrain(history)],
    )
    return history.rows


def _channel_reporter(channel):
    import ray

    def put(row: dict[str, float]):
        return STOP if ray.get(channel.put.remote(row)) else None

    return put


def _worker_resources(component: KerasComponent) -> tuple[float, float]:
    res = component.resources
    if res is None:
        return 1.0, 0.0
    return float(res.cpus), float(res.gpus)


def fit_with_ray_train(
    component: KerasComponent, train_ds, valid_ds, *, report: Reporter | None
):
    """Train on one Ray Train worker; returns (the best checkpoint's model,
    history)."""
    import ray
    import ray.train
    from ray.train.tensorflow import TensorflowTrainer

    cpus, gpus = _worker_resources(component)
    per_worker = {"CPU": cpus, **({"GPU": gpus} if gpus else {})}
    temporary = component.params.storage_path is None
    storage = (
        tempfile.mkdtemp(prefix="raycat-train-")
        if temporary
        else component.params.storage_path
    )
    channel = ray.remote(num_cpus=0)(EpochChannel).remote()
    trainer = TensorflowTrainer(
        train_worker,
        train_loop_config={"component": component, "channel": channel},
        scaling_config=ray.train.ScalingConfig(
            num_workers=component.params.workers,
            use_gpu=gpus > 0,
            resources_per_worker=per_worker,
        ),
        run_config=ray.train.RunConfig(
            name=f"{component.name}-{uuid.uuid4().hex[:8]}",
            storage_path=storage,
            checkpoint_config=ray.train.CheckpointConfig(
                num_to_keep=1,
                checkpoint_score_attribute="val_loss",
                checkpoint_score_order="min",
            ),
        ),
        datasets={"train": train_ds, "valid": valid_ds},
        dataset_config=ray.train.DataConfig(datasets_to_split=["train"]),
    )
    logger.info(
        "%s: training on a Ray Train worker (%s CPU, %s GPU)",
        component.name,
        cpus,
        gpus,
    )
    try:
        try:
            result, reported, report_error = _run_with_channel(trainer, channel, report)
        except Exception as err:
            raise ComponentError(
                f"component {component.name!r}: the Ray Train run failed: {err}"
            ) from err
        if result.error is not None:
            raise ComponentError(
                f"component {component.name!r}: the Ray Train run failed: "
                f"{result.error}"
            )
        history = list(result.return_value or [])
        _check_history(component, history)
        model = _load_best(component, result)
    finally:
        ray.kill(channel)
        if temporary:
            shutil.rmtree(storage, ignore_errors=True)

    if report_error is not None:
        raise report_error
    if report is not None:
        # Epochs the channel did not deliver (it failed): replay them now.
        for row in history[reported:]:
            report(dict(row))
    return model, history


def _run_with_channel(trainer, channel, report: Reporter | None):
    """Run ``trainer.fit()`` in a thread while this thread hands each epoch's
    metrics to ``report``; returns (result, epochs reported, the exception
    report raised or None)."""
    import ray

    reported, report_error = 0, None
    with ThreadPoolExecutor(1, thread_name_prefix="ray-train") as pool:
        run = pool.submit(trainer.fit)
        while True:
            finished = run.done()
            try:
                rows = ray.get(channel.take.remote())
            except ray.exceptions.RayError as err:
                logger.warning(
                    "epoch metrics channel failed (%s); they are reported when "
                    "training ends",
                    err,
                )
                break
            for row in rows:
                if report is None or report_error is not None:
                    continue
                try:
                    answer = report(dict(row))
                except Exception as err:
                    answer, report_error = STOP, err
                reported += 1
                if answer is STOP:
                    ray.get(channel.request_stop.remote())
            if finished:
                break
            time.sleep(POLL_S)
        result = run.result()
    return result, reported, report_error


def _load_best(component: KerasComponent, result):
    from raycat.components.keras.base import load_keras_model

    candidates = list(result.best_checkpoints or [])
    if candidates:
        checkpoint = min(
            candidates, key=lambda cm: cm[1].get("val_loss", float("inf"))
        )[0]
    else:
        checkpoint = result.checkpoint
    if checkpoint is None:
        raise ComponentError(
            f"component {component.name!r}: the Ray Train run saved no checkpoint"
        )
    with checkpoint.as_directory() as folder:
        return load_keras_model(Path(folder) / CHECKPOINT_MODEL)
