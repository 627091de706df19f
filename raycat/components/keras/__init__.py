"""Deep components in Keras 3 (TensorFlow backend), fed by Ray Data streams.

- :mod:`.layers`: the Keras objects the models are made of and saved with
  (the hierarchy-consistency layer, the weighted embedding mean, the loss,
  the optimizer with a slower learning rate for a pretrained backbone);
- :mod:`.stream`: catalog rows -> model inputs (joined text, decoded pixels,
  ``has_image``, labels), as a Ray Data stream for training and directly for
  a batch to predict; free of TensorFlow, so Ray Data tasks stay light;
- :mod:`.base`: what every Keras component shares (hyperparameters, text
  vocabulary, the classification head, prediction, save and load);
- :mod:`.training`: the training loop, run in-process or on a Ray Train
  worker;
- :mod:`.text`, :mod:`.image`, :mod:`.joint`: the components themselves
  (kinds ``embed_mean``, ``embed_tfidf``, ``text_cnn``, ``text_lstm``,
  ``image``, ``wide_deep_conv``, ``rnn_wide_conv``).  How a cluster without
  internet gets pretrained backbone weights is described in :mod:`.image`.

Nothing here is imported until a Keras component kind is used (see
:mod:`raycat.components.registry`), so the rest of raycat runs without
TensorFlow.
"""
