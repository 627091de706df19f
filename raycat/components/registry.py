"""Component kinds by name, imported only when used.

Heavy frameworks stay out of the import path of everything else: xgboost is
imported when an ``xgboost`` component is built, TensorFlow when a Keras one is.
"""

from __future__ import annotations

import importlib

from raycat.components.base import Component, ComponentError

# kind -> "module:Class".
KINDS: dict[str, str] = {
    "random": "raycat.components.classical:RandomComponent",
    "linear": "raycat.components.classical:LinearComponent",
    "xgboost": "raycat.components.xgb:XGBoostComponent",
    # Keras 3 / TensorFlow components (raycat.components.keras).
    "embed_mean": "raycat.components.keras.text:EmbedMeanComponent",
    "embed_tfidf": "raycat.components.keras.text:EmbedTfidfComponent",
    "text_cnn": "raycat.components.keras.text:TextCNNComponent",
    "text_lstm": "raycat.components.keras.text:TextLSTMComponent",
    "image": "raycat.components.keras.image:ImageComponent",
    "wide_deep_conv": "raycat.components.keras.joint:WideDeepConvComponent",
    "rnn_wide_conv": "raycat.components.keras.joint:RnnWideConvComponent",
    # Ensembles of other components (raycat.ensembles).
    "weighted": "raycat.ensembles.weighted:WeightedEnsemble",
    "stacked": "raycat.ensembles.stacked:StackedEnsemble",
}


def register(kind: str, target: str) -> None:
    """Make a component class (given as ``"module:Class"``) available by kind."""
    KINDS[kind] = target


def component_class(kind: str) -> type[Component]:
    try:
        target = KINDS[kind]
    except KeyError:
        raise ComponentError(
            f"unknown component kind {kind!r}; known kinds: {sorted(KINDS)}"
        ) from None
    module, _, attr = target.partition(":")
    try:
        cls = getattr(importlib.import_module(module), attr)
    except ImportError as err:
        raise ComponentError(
            f"component kind {kind!r} needs a package that is not installed "
            f"({err.name}); install raycat with the extra that provides it, e.g. "
            "pip install -e '.[ml,deep]'"
        ) from err
    return cls
