"""Request and response models of the scoring app (its OpenAPI schema).

Requests are validated by FastAPI against these models, so a bad field gets a
422 naming it.  Limits that come from the config (products per request, image
bytes) are checked by the app and answered with 413.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Request(BaseModel):
    # An unknown field is a typo in a client: refuse it rather than ignore it.
    model_config = ConfigDict(extra="forbid")


class ImageRef(_Request):
    """A product image: exactly one of ``url``, ``path`` or ``base64``."""

    url: str | None = Field(None, description="http(s) URL the server fetches")
    path: str | None = Field(
        None, description="path relative to the catalog's image root"
    )
    base64: str | None = Field(None, description="the image file, base64-encoded")

    @model_validator(mode="after")
    def _exactly_one(self) -> ImageRef:
        given = [k for k in ("url", "path", "base64") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of url, path or base64; got "
                + (", ".join(given) if given else "none")
            )
        if self.url and not self.url.startswith(("http://", "https://")):
            raise ValueError(
                f"url must start with http:// or https://, got {self.url!r}"
            )
        return self


class ProductIn(_Request):
    """One product to score: its text fields and optionally an image."""

    product_id: str | None = Field(
        None, max_length=200, description="echoed back; default: its position"
    )
    title: str = Field(..., max_length=2000)
    description: str = Field("", max_length=50_000)
    extra_text: str = Field("", max_length=10_000)
    colour: str = Field("", max_length=1000)
    image: ImageRef | None = None


class ScoreRequest(_Request):
    products: list[ProductIn] = Field(..., min_length=1)
    min_probability: float = Field(
        0.0, ge=0.0, le=1.0, description="leave out categories below this"
    )
    top_k: int | None = Field(
        None, ge=1, description="keep the k most probable categories per product"
    )
    include_components: bool = Field(
        True, description="each component's probability per category"
    )


class CategoryScore(BaseModel):
    category: str
    path: str
    probability: float
    components: dict[str, float] = Field(default_factory=dict)
    entropy: float
    disagreement: float | None = Field(
        None, description="|p_image - p_text|; null without both models"
    )
    rule: bool = Field(description="the old rule system put the product here")


class RuleMatch(BaseModel):
    rule: str
    category: str
    path: str


class ProductScore(BaseModel):
    product_id: str
    categories: list[CategoryScore]
    rules: list[RuleMatch]


class ScoreResponse(BaseModel):
    model: str
    model_version: str
    components: list[str]
    products: list[ProductScore]


class TopCategory(BaseModel):
    category: str
    path: str
    probability: float
    rule: bool


class AskedCategory(BaseModel):
    category: str
    path: str
    strategy: str
    p_model: float | None = None
    rule_positive: bool | None = None


class QueueItem(BaseModel):
    product_id: str
    iteration: int
    title: str
    description: str
    image_url: str | None
    asked: AskedCategory
    also_for: list[str] = Field(default_factory=list)
    top: list[TopCategory]
    rules: list[RuleMatch]
    reserved_until: float | None


class QueuePage(BaseModel):
    labeler: str
    model_version: str
    reservation_ttl_s: float
    items: list[QueueItem]


class LabelIn(_Request):
    product_id: str = Field(..., min_length=1, max_length=200)
    category: str = Field(..., min_length=1, description="category id or path")
    value: Literal[0, 1] = Field(..., description="1: in the category, 0: not")
    iteration: int | None = Field(
        None, ge=0, description="default: the product's queue iteration"
    )


class LabelsRequest(_Request):
    labeler: str = Field(..., min_length=1, max_length=100)
    labels: list[LabelIn] = Field(..., min_length=1)


class LabelsResponse(BaseModel):
    labeler: str
    saved: int = Field(description="the decisions given")
    rows: int = Field(description="label rows written, implied ones included")
    completed: int = Field(description="queue items newly marked done")


class CategoryInfo(BaseModel):
    id: str
    path: str
    leaf: bool


class ModelInfo(BaseModel):
    model: str
    model_version: str
    path: str
    components: list[str]
    categories: list[CategoryInfo]
    stats: dict[str, Any]
    batching: dict[str, Any]
