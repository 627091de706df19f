"""The image component: a ``keras.applications`` backbone over the product
photo, then a dense layer.

Backbones: MobileNetV3Small, MobileNetV3Large, EfficientNetB0, each taking
0-255 RGB (they rescale inside).  The backbone's pooled features are zeroed
for a product without a readable image, and the ``has_image`` flag is a
feature of its own, so the head learns what a missing photo means.

Pretrained weights
------------------
``weights`` is one of:

- ``"imagenet"``: Keras looks for the file in its cache,
  ``$KERAS_HOME/models/`` (``~/.keras/models/`` by default), and downloads it
  when absent.  On a cluster without internet, pre-populate that folder on
  every node with the files Keras names, e.g.
  ``weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5``,
  ``weights_mobilenet_v3_large_224_1.0_float_no_top_v2.h5``,
  ``efficientnetb0_notop.h5`` (copy them from a machine that has downloaded
  them once).  Without the file and without network, training fails with a
  ComponentError saying so;
- a path to a weights file (``/models/mobilenet_v3_small_notop.weights.h5``
  or a Keras ``.h5``) for the same backbone without its top: it must exist
  on every node that trains (shared storage or baked into the image).  A
  path that does not exist fails at once, naming it;
- ``null`` (or ``"none"``): random weights; the whole backbone trains
  unless ``fine_tune_layers`` says otherwise (tests, or a catalog far from
  ImageNet).

Weights are never silently replaced by random ones.  A saved component
(``model.keras``) carries its trained weights: predicting needs no weights
file.
"""

from __future__ import annotations

import logging
from pathlib import Path

from raycat.components.base import ComponentError
from raycat.components.keras.base import ImageParams, KerasComponent
from raycat.components.keras.stream import HAS_IMAGE, PIXELS

logger = logging.getLogger(__name__)

BACKBONE_LAYER = "backbone"
# keras.applications constructors by the ``backbone`` setting.
BACKBONES = {
    "mobilenet_v3_small": "MobileNetV3Small",
    "mobilenet_v3_large": "MobileNetV3Large",
    "efficientnet_b0": "EfficientNetB0",
}


def weights_setting(params) -> str | None:
    """``"imagenet"``, a file path, or None for random weights."""
    w = params.weights
    if w is None or w.strip().lower() in ("", "none", "null", "random"):
        return None
    return "imagenet" if w.strip().lower() == "imagenet" else w


def check_weights_file(component: KerasComponent) -> None:
    """Fail at once on a weights path that does not exist."""
    w = weights_setting(component.params)
    if w is None or w == "imagenet":
        return
    path = Path(w).expanduser()
    if not path.is_file():
        raise ComponentError(
            f"component {component.name!r} ({component.kind}): the backbone weights "
            f"file {str(path)!r} does not exist; set weights to an existing "
            "file of the same backbone without its top (on every node that "
            "trains), to 'imagenet' with the file in $KERAS_HOME/models/, or to "
            "null for random weights"
        )


def build_backbone(component: KerasComponent):
    """The backbone model, with its weights loaded and its trainable layers
    set; raises ComponentError when the weights cannot be had."""
    import keras

    p = component.params
    constructor = getattr(keras.applications, BACKBONES[p.backbone])
    weights = weights_setting(p)
    kwargs = {
        "input_shape": (p.image_size, p.image_size, 3),
        "include_top": False,
        "pooling": "avg",
    }
    if p.backbone.startswith("mobilenet"):
        kwargs["include_preprocessing"] = True

    try:
        backbone = constructor(
            weights="imagenet" if weights == "imagenet" else None, **kwargs
        )
    except Exception as err:
        if weights != "imagenet":
            raise
        raise ComponentError(
            f"component {component.name!r}: could not load the ImageNet weights of "
            f"{p.backbone} ({err}); without internet, put the weights file Keras "
            "names above in $KERAS_HOME/models/ (default ~/.keras/models/) on "
            "every node, or set weights to a local file path"
        ) from err
    if weights not in (None, "imagenet"):
        check_weights_file(component)
        try:
            backbone.load_weights(str(Path(weights).expanduser()))
        except Exception as err:
            raise ComponentError(
                f"component {component.name!r}: could not load backbone weights "
                f"from {weights!r} into {p.backbone} without top ({err}); the file "
                "must hold the weights of that same backbone"
            ) from err

    _set_trainable(component, backbone, pretrained=weights is not None)
    # The outer model finds it by this name (slow learning rate).
    backbone.name = BACKBONE_LAYER
    return backbone


def _set_trainable(component: KerasComponent, backbone, *, pretrained: bool) -> None:
    import keras

    n = component.params.fine_tune_layers
    if n is None:
        n = 0 if pretrained else len(backbone.layers)
    if n == 0:
        backbone.trainable = False
        return
    backbone.trainable = True
    layers = backbone.layers
    for i, layer in enumerate(layers):
        # Batch normalization statistics of a pretrained net are kept: a small
        # catalog batch would only add noise to them.
        top = i >= len(layers) - n
        layer.trainable = top and not (
            pretrained and isinstance(layer, keras.layers.BatchNormalization)
        )
    logger.info(
        "%s: training the top %d of %d layers of the %s backbone",
        component.name,
        min(n, len(layers)),
        len(layers),
        "pretrained" if pretrained else "randomly initialized",
    )


def image_tower(component: KerasComponent, inputs):
    """Backbone features, zeroed without an image, and the ``has_image`` flag."""
    import keras

    backbone = build_backbone(component)
    pixels = keras.layers.Rescaling(1.0, name="to_float")(inputs[PIXELS])
    # training=False: batch normalization stays in inference mode, even for
    # the fine-tuned layers (the usual fine-tuning recipe).
    features = backbone(pixels, training=False)
    has = keras.layers.Reshape((1,), name="has_image_flag")(inputs[HAS_IMAGE])
    features = keras.layers.Multiply(name="image_if_present")([features, has])
    return keras.layers.Concatenate(name="image_features")([features, has])


def backbone_variables(component: KerasComponent, model) -> list:
    """The backbone's trainable variables when it is pretrained and fine
    tuned: those learn at ``backbone_lr_factor`` times the learning rate."""
    if weights_setting(component.params) is None:
        return []
    return list(model.get_layer(BACKBONE_LAYER).trainable_variables)


class ImageComponent(KerasComponent):
    """Categories from the product photo alone."""

    kind = "image"
    Params = ImageParams
    uses_images = True
    uses_text = False

    def check_settings(self) -> None:
        super().check_settings()
        check_weights_file(self)

    def _features(self, inputs):
        return image_tower(self, inputs), None

    def slow_variables(self, model) -> list:
        return backbone_variables(self, model)
