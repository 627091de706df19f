"""Keras objects the deep components are built from and saved with.

Every class here is registered as serializable (package ``raycat``), so a
``model.keras`` written by a component loads with plain
``keras.models.load_model`` once this module is imported.

- :class:`HierarchyMax`: per-category scores made consistent with the taxonomy
  (each category scores the max over itself and its descendants), level by
  level with a segment max, so memory grows with ``batch x categories`` only;
- :class:`WeightedMeanPool`: the mean of token embeddings weighted by a fixed
  per-token weight (1 for the plain mean, IDF for the TF-IDF mean);
- :class:`WeightedBinaryCrossentropy`: multi-label loss with optional weights
  on each category's positives;
- :class:`SlowBackboneAdam`: Adam with a smaller learning rate for chosen
  variables (a pretrained backbone being fine-tuned).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import keras
import numpy as np
from keras import ops

PACKAGE = "raycat"


@keras.saving.register_keras_serializable(package=PACKAGE)
class HierarchyMax(keras.layers.Layer):
    """Raise each category's score to the max over its descendants.

    Input and output are ``(batch, n_categories)`` scores (logits or
    probabilities: the max commutes with the sigmoid), columns in taxonomy
    order.  Going from the deepest level up, each parent takes the max of
    itself and its children's current scores, so after the top level every
    category holds the max over its whole subtree and P(child) <= P(parent)
    holds for any input.  One segment max per level, each over
    ``(n_children_at_level, batch)``: no ``n x n`` mask, so 1000+ categories
    cost as little as a dense layer.

    Args:
        parent_index: for each category, the column of its parent, or -1 for
            a root (``Taxonomy.parent_index``).
    """

    def __init__(self, parent_index: Sequence[int], **kwargs):
        super().__init__(**kwargs)
        self.parent_index = [int(p) for p in parent_index]
        n = len(self.parent_index)
        parents = np.asarray(self.parent_index, dtype=np.int64)
        if n and (parents.max() >= n or parents.min() < -1):
            raise ValueError(
                f"HierarchyMax: parent_index must hold -1 or a column below {n}; "
                f"got values from {parents.min()} to {parents.max()}"
            )
        depth = np.zeros(n, dtype=np.int64)
        for j in range(n):
            p, d = parents[j], 0
            while p >= 0:
                d += 1
                p = parents[p]
                if d > n:
                    raise ValueError("HierarchyMax: parent_index has a cycle")
            depth[j] = d
        # (children, their parents) per level, deepest first.
        self._levels = [
            (np.flatnonzero(depth == d), parents[depth == d])
            for d in range(int(depth.max(initial=0)), 0, -1)
        ]

    def call(self, scores):
        if not self._levels:
            return scores
        # Categories on the first axis: segment ops reduce along it.
        by_cat = ops.transpose(scores)
        n = len(self.parent_index)
        for children, parents in self._levels:
            child_scores = ops.take(by_cat, children, axis=0)
            best = ops.segment_max(child_scores, parents, num_segments=n)
            # Empty segments come back as the dtype's lowest value (or -inf),
            # which leaves childless rows untouched.
            by_cat = ops.maximum(by_cat, ops.cast(best, by_cat.dtype))
        return ops.transpose(by_cat)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "parent_index": self.parent_index}


@keras.saving.register_keras_serializable(package=PACKAGE)
class WeightedMeanPool(keras.layers.Layer):
    """Weighted mean of token embeddings: ``sum_t w[id_t] e_t / sum_t w[id_t]``.

    Inputs are ``[token_ids (batch, seq), embeddings (batch, seq, dim)]``.  The
    per-token weights live in a non-trainable variable of length
    ``vocab_size`` (saved with the model); set them with :meth:`set_weights`
    or :meth:`assign_token_weights` after building.  Token 0 (padding) should
    weigh 0.  A repeated token counts once per occurrence, so IDF weights give
    the TF-IDF weighted mean.
    """

    def __init__(self, vocab_size: int, **kwargs):
        super().__init__(**kwargs)
        self.vocab_size = int(vocab_size)

    def build(self, input_shape):
        def initial(shape, dtype=None):
            # Plain mean over real tokens until told otherwise.
            w = np.ones(shape, dtype="float32")
            w[0] = 0.0
            return w

        self.token_weights = self.add_weight(
            name="token_weights",
            shape=(self.vocab_size,),
            initializer=initial,
            trainable=False,
            dtype="float32",
        )

    def assign_token_weights(self, weights: Iterable[float]) -> None:
        w = np.asarray(list(weights), dtype="float32")
        if w.shape != (self.vocab_size,):
            raise ValueError(
                f"WeightedMeanPool: expected {self.vocab_size} token weights; got "
                f"{w.shape}"
            )
        self.token_weights.assign(w)

    def call(self, inputs):
        ids, emb = inputs
        w = ops.take(self.token_weights, ops.cast(ids, "int32"), axis=0)
        w = ops.cast(w, emb.dtype)
        total = ops.sum(emb * ops.expand_dims(w, -1), axis=1)
        norm = ops.maximum(ops.sum(w, axis=1, keepdims=True), 1e-6)
        return total / ops.cast(norm, emb.dtype)

    def compute_output_shape(self, input_shape):
        _, emb_shape = input_shape
        return (emb_shape[0], emb_shape[-1])

    def get_config(self):
        return {**super().get_config(), "vocab_size": self.vocab_size}


@keras.saving.register_keras_serializable(package=PACKAGE)
class WeightedBinaryCrossentropy(keras.losses.Loss):
    """Binary cross-entropy over every category, averaged, with each
    category's positive term multiplied by ``pos_weight[j]`` (all 1 when
    ``None``).  Takes probabilities, clipped away from 0 and 1."""

    def __init__(
        self,
        pos_weight: Sequence[float] | None = None,
        name: str = "weighted_bce",
        **kwargs,
    ):
        super().__init__(name=name, **kwargs)
        self.pos_weight = None if pos_weight is None else [float(w) for w in pos_weight]

    def call(self, y_true, y_pred):
        y_pred = ops.clip(ops.cast(y_pred, "float32"), 1e-7, 1.0 - 1e-7)
        y_true = ops.cast(y_true, "float32")
        pos = y_true * ops.log(y_pred)
        if self.pos_weight is not None:
            pos = pos * ops.convert_to_tensor(self.pos_weight, dtype="float32")
        neg = (1.0 - y_true) * ops.log(1.0 - y_pred)
        return -ops.mean(pos + neg, axis=-1)

    def get_config(self):
        return {**super().get_config(), "pos_weight": self.pos_weight}


@keras.saving.register_keras_serializable(package=PACKAGE)
class SlowBackboneAdam(keras.optimizers.Adam):
    """Adam whose steps for some variables (a pretrained backbone being fine
    tuned) use ``slow_factor`` times the learning rate.

    Which variables are slow is set after the model is built with
    :meth:`set_slow_variables`; it is not part of the config (models are
    reloaded for prediction, without their optimizer).
    """

    def __init__(self, slow_factor: float = 0.1, **kwargs):
        super().__init__(**kwargs)
        self.slow_factor = float(slow_factor)
        self._slow: set[int] = set()

    def set_slow_variables(self, variables: Iterable) -> None:
        self._slow = {self._var_key(v) for v in variables}

    def update_step(self, gradient, variable, learning_rate):
        if self._var_key(variable) in self._slow:
            learning_rate = learning_rate * self.slow_factor
        return super().update_step(gradient, variable, learning_rate)

    def get_config(self):
        return {**super().get_config(), "slow_factor": self.slow_factor}
