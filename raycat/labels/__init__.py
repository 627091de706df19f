"""Labels: events, propagation through the taxonomy, the label store and its
labeling queue."""

from raycat.labels.events import LabelEvent, Source, propagate
from raycat.labels.sqlite import SQLiteLabelStore
from raycat.labels.store import (
    QUEUE_COLUMNS,
    QUEUE_ITEM_COLUMNS,
    QUEUE_STATUSES,
    QUEUE_STRATEGIES,
    LabelStore,
    open_label_store,
)

__all__ = [
    "QUEUE_COLUMNS",
    "QUEUE_ITEM_COLUMNS",
    "QUEUE_STATUSES",
    "QUEUE_STRATEGIES",
    "LabelEvent",
    "LabelStore",
    "SQLiteLabelStore",
    "Source",
    "open_label_store",
    "propagate",
]
