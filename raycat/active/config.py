"""The ``active_learning:`` section of the pipeline config."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from raycat.active.budget import DepthTerm
from raycat.active.errors import ActiveLearningError
from raycat.active.page import DEFAULT_SHARES, check_shares


class ActiveLearningConfig(BaseModel):
    """How one active-learning iteration picks and weighs its labels."""

    # Unknown keys are an error: a misspelt setting must not be ignored.
    model_config = ConfigDict(extra="forbid")

    # Labels asked of the labelers per iteration; 10,000 is about what a small
    # team labels in a week.
    labels_per_iteration: int = Field(10_000, ge=1)
    # Fraction of each class's labels per strategy; must add up to 1.  Half
    # random keeps an unbiased sample to score model-R and model-A on.
    shares: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_SHARES))
    # Preference for deeper categories; none keeps shares at 1 - F1.
    depth_term: DepthTerm = "none"
    # The x in 1 - x/log(y): 0 turns the depth preference off, 1 is strongest.
    depth_weight: float = Field(0.0, ge=0.0, le=1.0)
    # The uncertainty strategy samples its k labels from the factor * k most
    # uncertain products, so it does not spend them all on near-duplicates.
    uncertainty_candidates_factor: float = Field(3.0, ge=1.0)
    # Decision threshold used to call a label a surprise.
    threshold: float = Field(0.5, gt=0.0, lt=1.0)
    # Relative lead a targeted strategy needs to win outright: 0.2 = 20% more
    # surprise cross-entropy per label than the other.
    decision_margin: float = Field(0.2, ge=0.0)
    # How to combine disagreement and uncertainty when neither wins; auto
    # picks whichever would have found more surprise on the labels.
    combine: Literal["auto", "product", "average"] = "auto"
    # Seeds the random and uncertainty sampling of the page.
    seed: int = 0

    @field_validator("shares")
    @classmethod
    def _shares_add_up(cls, value: dict[str, float]) -> dict[str, float]:
        try:
            return check_shares(value, where="active_learning.shares")
        except ActiveLearningError as err:
            # pydantic reports ValueError as a validation error of the setting.
            raise ValueError(str(err)) from err
