"""Sparse text features: a normalized word histogram or TF-IDF, with colour words
kept, removed, or split off as a feature group of their own."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import scipy.sparse as sp
from pydantic import BaseModel, ConfigDict, Field
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
from sklearn.preprocessing import normalize

from raycat.text import DEFAULT_COLOUR_WORDS, TEXT_FIELDS, join_fields, tokenize


class TextFeatureParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    features: Literal["histogram", "tfidf"] = "tfidf"
    # keep: colour words are ordinary words; feature: they are removed from the
    # text and form a separate block of features; remove: dropped altogether.
    colour: Literal["keep", "feature", "remove"] = "keep"
    colour_words: list[str] = Field(default_factory=lambda: list(DEFAULT_COLOUR_WORDS))
    fields: list[str] = Field(default_factory=lambda: list(TEXT_FIELDS))
    # 50k words cover a 10^6-product catalog's useful vocabulary; the long tail
    # is misspellings and part numbers.
    max_features: int = Field(50_000, ge=100)
    ngram_max: int = Field(1, ge=1, le=3)
    min_df: int = Field(1, ge=1)
    sublinear_tf: bool = True
    # Weight of the colour block relative to the word block.
    colour_weight: float = Field(0.5, gt=0)


class TextFeaturizer:
    """Fit on training text, transform any batch into a CSR matrix."""

    def __init__(self, params: TextFeatureParams):
        self.params = params
        colours = {w.lower() for w in params.colour_words}
        stop = sorted(colours) if params.colour in ("feature", "remove") else None
        common = dict(
            tokenizer=tokenize,
            lowercase=False,
            token_pattern=None,
            stop_words=stop,
            max_features=params.max_features,
            ngram_range=(1, params.ngram_max),
            min_df=params.min_df,
            dtype=np.float32,
        )
        if params.features == "tfidf":
            self.words = TfidfVectorizer(sublinear_tf=params.sublinear_tf, **common)
        else:
            self.words = CountVectorizer(**common)
        self.colours = (
            CountVectorizer(
                tokenizer=tokenize,
                lowercase=False,
                token_pattern=None,
                vocabulary=sorted(colours),
                dtype=np.float32,
            )
            if params.colour == "feature"
            else None
        )

    def _texts(self, batch) -> Sequence[str]:
        return join_fields(batch, self.params.fields)

    def fit(self, batch) -> TextFeaturizer:
        self.words.fit(self._texts(batch))
        return self

    def transform(self, batch) -> sp.csr_matrix:
        texts = self._texts(batch)
        x = self.words.transform(texts)
        if self.params.features == "histogram":
            x = normalize(x, norm="l1")  # a histogram: word shares, not counts
        if self.colours is not None:
            c = normalize(self.colours.transform(texts), norm="l1")
            x = sp.hstack([x, c * self.params.colour_weight], format="csr")
        return sp.csr_matrix(x, dtype=np.float32)

    @property
    def n_features(self) -> int:
        n = len(self.words.vocabulary_)
        return n + (len(self.colours.vocabulary) if self.colours is not None else 0)
