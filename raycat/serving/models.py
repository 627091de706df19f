"""The models behind the scoring app: the run's current model and its parts.

:func:`load_model_set` reads what ``raycat score`` uses (the current model of
``<home>/current.json``, else the best saved component; the best text-only
and image components) plus the old system's rules, and :meth:`ModelSet.score`
turns a frame of products into per-category arrays.  Nothing here imports Ray:
the Serve deployment in :mod:`raycat.serving.app` holds one :class:`ModelSet`
and swaps it when :func:`model_version` changes.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from raycat.components.base import Component
from raycat.pipelines.score import IMAGE_KINDS, binary_entropy, choose_models
from raycat.rules import Rule, load_rules
from raycat.run import RunPaths
from raycat.serving.errors import ServingError
from raycat.taxonomy import Taxonomy

logger = logging.getLogger(__name__)

FRAME_COLUMNS = ("product_id", "title", "description", "extra_text", "colour")
CURRENT_FILE = "current.json"


def model_version(home: str | Path) -> tuple[str, str]:
    """The current model's ``(version, path)`` without loading it.

    From ``current.json`` when the ensemble step wrote one; otherwise the best
    saved component (as :func:`~raycat.pipelines.score.choose_models` picks it),
    versioned by the time its manifest was written.
    """
    home = Path(home)
    record_path = home / CURRENT_FILE
    if record_path.is_file():
        try:
            record = json.loads(record_path.read_text())
            return str(record.get("version") or record["path"]), str(record["path"])
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise ServingError(
                f"{record_path} is not a current-model record ({err}); rerun "
                "`raycat ensemble CONFIG` to write it again"
            ) from None
    path = choose_models(home)["current"]
    if path is None:  # pragma: no cover - choose_models raises first
        raise ServingError(f"no trained model under {home / 'models'}")
    written = Path(path, "component.json").stat().st_mtime
    stamp = datetime.fromtimestamp(written, UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{Path(path).name}@{stamp}", str(path)


@dataclass
class ScoredBatch:
    """Per-category arrays for a batch of products, categories in taxonomy order."""

    probability: np.ndarray  # (n, C) the current model
    entropy: np.ndarray  # (n, C)
    components: dict[str, np.ndarray]  # name -> (n, C)
    disagreement: np.ndarray | None  # (n, C) |p_image - p_text|
    rules: list[list[tuple[str, str]]]  # per product: (rule, category)

    def rows(self, start: int, stop: int) -> ScoredBatch:
        return ScoredBatch(
            self.probability[start:stop],
            self.entropy[start:stop],
            {k: v[start:stop] for k, v in self.components.items()},
            None if self.disagreement is None else self.disagreement[start:stop],
            self.rules[start:stop],
        )


@dataclass
class ModelSet:
    """The current model, the components reported next to it, and the rules."""

    name: str
    version: str
    path: str
    taxonomy: Taxonomy
    current: Component
    # Reported per category: an ensemble's members, plus the run's best text
    # and image components; the current model itself when it is one of those.
    components: dict[str, Component]
    text: str | None
    image: str | None
    rules: list[Rule] = field(default_factory=list)
    matcher: RuleMatcher | None = None

    @property
    def uses_images(self) -> bool:
        parts = [self.current, *self.components.values()]
        return any(getattr(m, "uses_images", False) for m in parts)

    def score(self, products: pd.DataFrame) -> ScoredBatch:
        """Score a frame of products (columns :data:`FRAME_COLUMNS` and
        ``image``: a local path or None)."""
        members = getattr(self.current, "members", None)
        if members and hasattr(self.current, "combine"):
            # An ensemble: its members' predictions are computed once and
            # both reported and combined.
            preds = {n: m.predict_proba(products) for n, m in members.items()}
            probability = self.current.combine(preds)
        else:
            probability = self.current.predict_proba(products)
            preds = {}
        for name, comp in self.components.items():
            if name in preds:
                continue
            if comp is self.current:
                preds[name] = probability
            else:
                preds[name] = comp.predict_proba(products)
        disagreement = None
        if self.text in preds and self.image in preds:
            disagreement = np.abs(preds[self.image] - preds[self.text])
        return ScoredBatch(
            probability=probability.astype(np.float32),
            entropy=binary_entropy(probability).astype(np.float32),
            components={k: v.astype(np.float32) for k, v in preds.items()},
            disagreement=disagreement,
            rules=self._rule_matches(products),
        )

    def _rule_matches(self, products: pd.DataFrame) -> list[list[tuple[str, str]]]:
        if self.matcher is None:
            self.matcher = RuleMatcher(self.rules)
        return self.matcher.match(products)


# Python's [^\W_] is RE2's [\pL\pN]: letters and numbers of any script.
_NON_WORD = re.compile(r"[\W_]+")
_FIELD_JOIN = " | "


class RuleMatcher:
    """The old system's rules for the few products of one request.

    :func:`raycat.rules.apply_rules` is built for catalogs: its pyarrow kernels
    compile every rule's pattern on each call, about 1 ms per rule whatever the
    number of products, which would dominate an online request.  This matcher
    compiles the patterns once with Python's ``re`` and follows the same
    semantics (normalized words padded with spaces, fields joined by
    ``" | "``, then any / all / none terms and the raw-text regex);
    ``tests/test_serving.py`` checks that both agree on a demo catalog.
    Lower-casing differs from Arrow's only for the few characters whose
    lower case is longer than one character.
    """

    def __init__(self, rules: Sequence[Rule]):
        self.rules = list(rules)
        self._compiled = []
        for rule in self.rules:
            self._compiled.append(
                (
                    rule,
                    _terms_pattern(rule.any_terms),
                    tuple(f" {t} " for t in rule.all_terms),
                    _terms_pattern(rule.none_terms),
                    re.compile(rule.regex, re.IGNORECASE) if rule.regex else None,
                )
            )

    def match(self, products: pd.DataFrame) -> list[list[tuple[str, str]]]:
        """Per product (in frame order): the ``(rule name, category id)`` pairs
        of the rules that put it in a category."""
        out: list[list[tuple[str, str]]] = []
        records = products.to_dict("records")
        for record in records:
            raw = {k: "" if _missing(v) else str(v) for k, v in record.items()}
            words: dict[tuple[str, ...], str] = {}
            found = []
            for rule, any_re, all_terms, none_re, regex in self._compiled:
                fields = rule.fields
                if fields not in words:
                    norm = [_NON_WORD.sub(" ", raw.get(f, "").lower()) for f in fields]
                    words[fields] = " " + _FIELD_JOIN.join(norm) + " "
                text = words[fields]
                if any_re is not None and not any_re.search(text):
                    continue
                if not all(t in text for t in all_terms):
                    continue
                if none_re is not None and none_re.search(text):
                    continue
                if regex is not None:
                    joined = "\n".join(raw.get(f, "") for f in fields)
                    if not regex.search(joined):
                        continue
                found.append((rule.name, rule.category))
            out.append(found)
        return out


def _terms_pattern(terms: Sequence[str]) -> re.Pattern[str] | None:
    if not terms:
        return None
    return re.compile(" (?:" + "|".join(re.escape(t) for t in terms) + ") ")


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def _component(path: str, taxonomy: Taxonomy) -> Component:
    from raycat.components import load_component

    comp = load_component(path)
    if list(comp.taxonomy.ids) != list(taxonomy.ids):
        raise ServingError(
            f"the model at {path} predicts {len(comp.taxonomy)} categories that "
            f"differ from the run's taxonomy ({len(taxonomy)} categories); retrain "
            "it on this run or point current.json at a model of this run"
        )
    return comp


def load_model_set(home: str | Path, rules_path: str | None = None) -> ModelSet:
    """Load the run's current model, its components and the rules."""
    started = time.perf_counter()
    paths = RunPaths(Path(home))
    if not paths.taxonomy.is_file():
        raise ServingError(
            f"{paths.taxonomy} is missing: the run at {home} was never prepared; "
            "run `raycat train-pred CONFIG` first"
        )
    taxonomy = Taxonomy.load(paths.taxonomy)
    version, current_path = model_version(home)
    roles = choose_models(home, current_path)

    current = _component(current_path, taxonomy)
    components: dict[str, Component] = {}
    for name, member in (getattr(current, "members", None) or {}).items():
        components[name] = member
    names: dict[str, str | None] = {"text": None, "image": None}
    for role in ("text", "image"):
        path = roles.get(role)
        if not path:
            continue
        name = Path(path).name
        names[role] = name
        if name in components:
            continue
        if Path(path).resolve() == Path(current_path).resolve():
            components[name] = current
        else:
            components[name] = _component(path, taxonomy)
    # An ensemble's image member is the image model when the run has none saved.
    if names["image"] is None:
        for name, comp in components.items():
            if comp.kind in IMAGE_KINDS:
                names["image"] = name
                break

    rules = load_rules(rules_path, taxonomy) if rules_path else []
    logger.info(
        "loaded model %s (version %s) with components %s and %d rules in %.1f s",
        Path(current_path).name,
        version,
        sorted(components),
        len(rules),
        time.perf_counter() - started,
    )
    return ModelSet(
        name=Path(current_path).name,
        version=version,
        path=str(current_path),
        taxonomy=taxonomy,
        current=current,
        components=components,
        text=names["text"],
        image=names["image"],
        rules=rules,
    )


def products_frame(
    products: list[dict[str, Any]], workdir: str | Path | None = None
) -> pd.DataFrame:
    """The canonical frame for :meth:`ModelSet.score` from product dicts.

    A product's ``image`` is a local path, image bytes (written to a file under
    ``workdir``, which must then be given) or None.
    """
    rows = []
    for i, product in enumerate(products):
        row = {c: str(product.get(c) or "") for c in FRAME_COLUMNS}
        image = product.get("image")
        if isinstance(image, bytes | bytearray):
            if workdir is None:
                raise ServingError("image bytes need a working folder to land in")
            target = Path(workdir, f"image-{i}")
            target.write_bytes(image)
            image = str(target)
        row["image"] = image or None
        row["product_id"] = row["product_id"] or str(i)
        rows.append(row)
    return pd.DataFrame(rows, columns=[*FRAME_COLUMNS, "image"])
