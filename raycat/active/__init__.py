"""The pure core of active learning: budgets, pages, surprise, decisions.

Nothing here imports Ray, TensorFlow or xgboost; the pipelines that run an
iteration on a cluster call into these functions.
"""

from raycat.active.budget import (
    DEPTH_TERMS,
    class_budget,
    class_budget_by_id,
    class_shares,
    depth_factor,
    largest_remainder,
    split_by_shares,
)
from raycat.active.config import ActiveLearningConfig
from raycat.active.errors import ActiveLearningError
from raycat.active.page import (
    DEFAULT_SHARES,
    PAGE_COLUMNS,
    STRATEGIES,
    binary_entropy,
    check_shares,
    combined_score,
    compose_page,
)
from raycat.active.surprise import (
    ANALYSIS_COLUMNS,
    StrategyDecision,
    attach_labels,
    decide_strategy,
    surprise_analysis,
)

__all__ = [
    "ANALYSIS_COLUMNS",
    "DEFAULT_SHARES",
    "DEPTH_TERMS",
    "PAGE_COLUMNS",
    "STRATEGIES",
    "ActiveLearningConfig",
    "ActiveLearningError",
    "StrategyDecision",
    "attach_labels",
    "binary_entropy",
    "check_shares",
    "class_budget",
    "class_budget_by_id",
    "class_shares",
    "combined_score",
    "compose_page",
    "decide_strategy",
    "depth_factor",
    "largest_remainder",
    "split_by_shares",
    "surprise_analysis",
]
