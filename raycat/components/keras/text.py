"""Text components: learned word embeddings read four ways.

- ``embed_mean``: the mean of the product's word embeddings;
- ``embed_tfidf``: the same mean weighted by each word's IDF (so each word
  counts by its TF-IDF), rare and telling words weighing more;
- ``text_cnn``: 1-D convolutions of several widths over the embeddings, each
  max-pooled over the text (word n-gram detectors);
- ``text_lstm``: a (bidirectional) LSTM over the embeddings.

Each vectorizes raw strings inside the model (a ``TextVectorization`` layer
holding the training vocabulary), so a saved model takes product text as is.
The tower functions are shared with the joint text-and-image models.
"""

from __future__ import annotations

import logging

from pydantic import Field, PositiveInt

from raycat.components.keras.base import KerasComponent, TextParams
from raycat.components.keras.stream import TEXT

logger = logging.getLogger(__name__)

TOKENS_LAYER = "tokens"
POOL_LAYER = "text_pool"


def token_ids(component: KerasComponent, text):
    """The text input as ``(batch, sequence_length)`` token ids."""
    import keras

    layer = keras.layers.TextVectorization(
        vocabulary=component.vocabulary_ or None,
        output_sequence_length=component.params.sequence_length,
        name=TOKENS_LAYER,
    )
    return layer(text)


def embeddings(component: KerasComponent, ids, *, mask_zero: bool = False):
    import keras

    return keras.layers.Embedding(
        component.token_count,
        component.params.embedding_dim,
        mask_zero=mask_zero,
        name="embedding",
    )(ids)


def mean_tower(component: KerasComponent, text):
    """Weighted mean of the word embeddings (weights set by
    :func:`set_pool_weights`)."""
    from raycat.components.keras.layers import WeightedMeanPool

    ids = token_ids(component, text)
    emb = embeddings(component, ids)
    return WeightedMeanPool(component.token_count, name=POOL_LAYER)([ids, emb])


def set_pool_weights(component: KerasComponent, model, *, idf: bool) -> None:
    """IDF weights for the TF-IDF mean; 1 per real token for the plain mean."""
    import numpy as np

    weights = np.ones(component.token_count, dtype=np.float32)
    if idf:
        weights = np.array(component.idf_, dtype=np.float32)
    weights[0] = 0.0
    model.get_layer(POOL_LAYER).assign_token_weights(weights)


def cnn_tower(component: KerasComponent, text):
    import keras

    p = component.params
    emb = embeddings(component, token_ids(component, text))
    pooled = []
    for width in p.kernel_sizes:
        x = keras.layers.Conv1D(
            p.filters, width, padding="same", activation="relu", name=f"conv{width}"
        )(emb)
        pooled.append(keras.layers.GlobalMaxPooling1D(name=f"max{width}")(x))
    if len(pooled) == 1:
        return pooled[0]
    return keras.layers.Concatenate(name="ngram_features")(pooled)


def lstm_tower(component: KerasComponent, text):
    import keras

    p = component.params
    # Masking padding lets the LSTM stop at the end of each text.
    emb = embeddings(component, token_ids(component, text), mask_zero=True)
    lstm = keras.layers.LSTM(p.lstm_units, name="lstm")
    if p.bidirectional:
        return keras.layers.Bidirectional(lstm, name="bilstm")(emb)
    return lstm(emb)


# -- components --------------------------------------------------------------------


class EmbedMeanComponent(KerasComponent):
    """Mean of learned word embeddings, then a dense layer."""

    kind = "embed_mean"
    Params = TextParams

    def _features(self, inputs):
        return mean_tower(self, inputs[TEXT]), None

    def _after_build(self, model) -> None:
        set_pool_weights(self, model, idf=False)


class EmbedTfidfComponent(EmbedMeanComponent):
    """Mean of learned word embeddings weighted by TF-IDF, then a dense layer."""

    kind = "embed_tfidf"

    def _after_build(self, model) -> None:
        set_pool_weights(self, model, idf=True)


class CNNParams(TextParams):
    # Feature maps per kernel width.
    filters: int = Field(128, ge=1)
    # Widths of the word n-grams the convolutions detect.
    kernel_sizes: list[PositiveInt] = Field(
        default_factory=lambda: [2, 3, 4], min_length=1
    )


class TextCNNComponent(KerasComponent):
    """1-D convolutions over word embeddings, global max pooling."""

    kind = "text_cnn"
    Params = CNNParams

    def _features(self, inputs):
        return cnn_tower(self, inputs[TEXT]), None


class LSTMParams(TextParams):
    lstm_units: int = Field(64, ge=1)
    bidirectional: bool = True


class TextLSTMComponent(KerasComponent):
    """A (bidirectional) LSTM over word embeddings."""

    kind = "text_lstm"
    Params = LSTMParams

    def _features(self, inputs):
        return lstm_tower(self, inputs[TEXT]), None
