"""Deep components in Keras 3 (TensorFlow backend), fed by Ray Data streams.

- :mod:`.layers`: the Keras objects the models are made of and saved with
  (the hierarchy-consistency layer, TF-IDF weighting, the loss, the optimizer
  with a slower learning rate for a pretrained backbone);
- :mod:`.base`: what every Keras component shares (hyperparameters, text
  vocabulary, Ray Data streams, prediction, save and load);
- :mod:`.training`: the training loop, run in-process or by Ray Train;
- :mod:`.text`, :mod:`.image`, :mod:`.joint`: the components themselves.

Nothing here is imported until a Keras component kind is used (see
:mod:`raycat.components.registry`), so the rest of raycat runs without
TensorFlow.
"""
