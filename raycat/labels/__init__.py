"""Labels: events, propagation through the taxonomy, and the label store."""

from raycat.labels.events import LabelEvent, Source, propagate
from raycat.labels.sqlite import SQLiteLabelStore
from raycat.labels.store import LabelStore, open_label_store

__all__ = [
    "LabelEvent",
    "LabelStore",
    "SQLiteLabelStore",
    "Source",
    "open_label_store",
    "propagate",
]
