"""Online scoring for the labeling tool: a Ray Serve app.

- :mod:`~raycat.serving.app`: the Serve deployments and the FastAPI ingress
  (the only module that imports Ray Serve);
- :mod:`~raycat.serving.models`: the run's current model and its components,
  reloaded when ``current.json`` changes;
- :mod:`~raycat.serving.desk`: the label store, the queue and the catalog as
  the endpoints use them;
- :mod:`~raycat.serving.labelstudio`: the Label Studio ML-backend protocol;
- :mod:`~raycat.serving.schemas`: request and response models;
- ``static/``: the labeling page.

Start it with ``raycat serve CONFIG`` or :func:`raycat.serving.app.start`.
"""
