"""Joint text-and-image components, trained end to end.

Three parts add up to each category's logit:

- deep: a text tower (TF-IDF weighted mean of word embeddings for
  ``wide_deep_conv``; a (bidirectional) LSTM for ``rnn_wide_conv``) and the
  image tower (a ``keras.applications`` backbone, see :mod:`.image`),
  concatenated into the shared dense head;
- wide: a linear layer straight from the TF-IDF vector of the text (the
  memorizing part of a wide & deep model: a telling word moves its category
  directly).

Gradients flow through all parts at once; a pretrained backbone being fine
tuned learns at ``backbone_lr_factor`` times the learning rate.
"""

from __future__ import annotations

import logging

from pydantic import Field

from raycat.components.keras.base import ImageParams, KerasComponent, TextParams
from raycat.components.keras.image import (
    backbone_variables,
    check_weights_file,
    image_tower,
)
from raycat.components.keras.stream import TEXT
from raycat.components.keras.text import lstm_tower, mean_tower, set_pool_weights

logger = logging.getLogger(__name__)


class JointParams(TextParams, ImageParams):
    # Units of the dense layer each tower passes through before they meet,
    # so neither dominates the head by its width alone.
    tower_units: int = Field(128, ge=1)
    # L2 penalty of the wide linear part (one weight per token and category).
    wide_l2: float = Field(1e-5, ge=0)


class RnnJointParams(JointParams):
    lstm_units: int = Field(64, ge=1)
    bidirectional: bool = True


class _JointComponent(KerasComponent):
    uses_images = True
    uses_text = True

    def _text_tower(self, text):
        raise NotImplementedError

    def check_settings(self) -> None:
        super().check_settings()
        check_weights_file(self)

    def _features(self, inputs):
        import keras

        p = self.params
        text = keras.layers.Dense(p.tower_units, activation="relu", name="text_tower")(
            self._text_tower(inputs[TEXT])
        )
        image = keras.layers.Dense(
            p.tower_units, activation="relu", name="image_tower"
        )(image_tower(self, inputs))
        deep = keras.layers.Concatenate(name="deep_features")([text, image])
        return deep, self._wide_logits(inputs[TEXT])

    def _wide_logits(self, text):
        import keras

        p = self.params
        # The same vocabulary and IDF as the deep tower's, so the two agree on
        # what a word is.
        tfidf = keras.layers.TextVectorization(
            vocabulary=self.vocabulary_ or None,
            idf_weights=self.idf_[2:] if self.vocabulary_ else None,
            output_mode="tf_idf",
            name="tfidf",
        )(text)
        return keras.layers.Dense(
            len(self.taxonomy),
            kernel_regularizer=keras.regularizers.L2(p.wide_l2) if p.wide_l2 else None,
            name="wide_logits",
            dtype="float32",
        )(tfidf)

    def slow_variables(self, model) -> list:
        return backbone_variables(self, model)


class WideDeepConvComponent(_JointComponent):
    """TF-IDF weighted embedding mean + wide TF-IDF linear + image backbone."""

    kind = "wide_deep_conv"
    Params = JointParams

    def _text_tower(self, text):
        return mean_tower(self, text)

    def _after_build(self, model) -> None:
        set_pool_weights(self, model, idf=True)


class RnnWideConvComponent(_JointComponent):
    """(Bi)LSTM text tower + wide TF-IDF linear + image backbone."""

    kind = "rnn_wide_conv"
    Params = RnnJointParams

    def _text_tower(self, text):
        return lstm_tower(self, text)
