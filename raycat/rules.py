"""The old system's keyword rules: loading, applying, and measuring them.

A rules file is YAML::

    version: 1
    rules:
      - name: wrist-watches                 # unique, required
        category: Watches > Wrist Watches   # a path of names or a category id
        fields: [title, description]        # default: title, description, extra_text
        any: [watch, chronograph]           # at least one of these
        all: []                             # every one of these
        none: [clock, wall]                 # none of these
        regex: null                         # a Python regex, case-insensitive

A rule fires on a product when every condition it gives holds.  It must give at
least one of ``any``, ``all`` and ``regex``: ``none`` alone would select almost
the whole catalog.

How words match: text and terms are lower-cased and every run of characters
that are not letters or digits becomes one space, so a term matches whole words
only, and a phrase (``wall clock``) matches those words in sequence, whatever
punctuation separates them in the text (``Wall-Clock`` matches too).  There is no
stemming and no plural rule: ``watch`` does not match ``watches``; list both.
Fields are matched separately, so a phrase never spans the end of the title and
the start of the description.  ``regex`` is matched with Python's :mod:`re`,
ignoring case, on the raw text of the fields joined by newlines.

Word terms run through pyarrow's RE2 kernels on normalized text, chunk by chunk in
a thread pool, which keeps 10^6 products x 100 rules to minutes on one machine;
the Python ``regex`` condition is only evaluated on the products that pass the
word conditions, so it is cheap unless a rule has nothing but a regex.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from raycat.errors import CatalogError, RuleError, TaxonomyError
from raycat.labels.events import LabelEvent, Source
from raycat.taxonomy import Taxonomy

logger = logging.getLogger(__name__)

RULES_VERSION = 1
TEXT_FIELDS = ("title", "description", "extra_text", "colour")
DEFAULT_FIELDS = ("title", "description", "extra_text")
MATCH_COLUMNS = ["product_id", "rule", "category"]

# Letters and digits of any script are word characters; the rest separates words.
_NON_WORD = r"[^\pL\pN]+"
# Fields are joined with a character that normalization never leaves behind, so
# no phrase can match across two fields.
_FIELD_JOIN = " | "


# -- the file, as written ---------------------------------------------------------


class RuleSpec(BaseModel):
    """One rule as written in the YAML file."""

    model_config = ConfigDict(extra="forbid")

    name: str
    category: str
    # None means the default fields; title and description carry most of the
    # words, extra_text the brand and attributes.
    fields: list[str] | None = None
    any_: list[str] = Field(default_factory=list, alias="any")
    all_: list[str] = Field(default_factory=list, alias="all")
    none: list[str] = Field(default_factory=list)
    regex: str | None = None

    @field_validator("any_", "all_", "none", mode="before")
    @classmethod
    def _null_is_empty(cls, value: Any) -> Any:
        return [] if value is None else value


class RulesFile(BaseModel):
    """The top level of a rules file; each rule is validated on its own."""

    model_config = ConfigDict(extra="forbid")

    version: int
    rules: list[dict[str, Any]]


# -- the rule, validated ------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """A validated rule: its category resolved to an id, its terms normalized.

    :func:`load_rules` and :func:`parse_rules` build these and check them against
    the taxonomy; a rule built by hand has its terms normalized here too.
    """

    name: str
    category: str
    fields: tuple[str, ...] = DEFAULT_FIELDS
    any_terms: tuple[str, ...] = ()
    all_terms: tuple[str, ...] = ()
    none_terms: tuple[str, ...] = ()
    regex: str | None = None

    def __post_init__(self) -> None:
        # The matcher puts terms into RE2 patterns unescaped, which is safe only
        # for normalized terms (letters, digits and single spaces).
        for attr in ("any_terms", "all_terms", "none_terms"):
            terms = tuple(t for t in normalize_terms(getattr(self, attr)) if t)
            object.__setattr__(self, attr, terms)
        object.__setattr__(self, "fields", tuple(self.fields))


def normalize_terms(terms: Sequence[str]) -> list[str]:
    """Lower-case terms and reduce them to words separated by single spaces.

    Uses the same kernels as the catalog text, so a term and the text it should
    match are normalized identically.

    >>> normalize_terms(["Wall-Clock", " USB  3.0 "])
    ['wall clock', 'usb 3 0']
    """
    if not terms:
        return []
    arr = pa.array([str(t) for t in terms], type=pa.large_string())
    norm = pc.replace_substring_regex(
        pc.utf8_lower(arr), pattern=_NON_WORD, replacement=" "
    )
    return [t.strip() for t in norm.to_pylist()]


def _fail(where: str, setting: str, message: str) -> RuleError:
    return RuleError(f"{where}, setting {setting!r}: {message}")


def _rule_where(source: str, index: int, raw: Any) -> str:
    name = raw.get("name") if isinstance(raw, Mapping) else None
    named = f" (name {name!r})" if name else ""
    return f"rules file {source}, rules[{index}]{named}"


_EXPECTED = {
    "version": f"version: {RULES_VERSION}",
    "rules": "a list of rules, each a mapping with name, category and terms",
    "name": "a non-empty string, unique in the file",
    "category": "a category path of names (A > B) or a category id, as a string",
    "fields": f"a list of field names among {', '.join(TEXT_FIELDS)}",
    "any": "a list of words or phrases (strings)",
    "all": "a list of words or phrases (strings)",
    "none": "a list of words or phrases (strings)",
    "regex": "a Python regular expression as a string, or null",
}


_RULE_KEYS = "name, category, fields, any, all, none, regex"


def _validation_message(
    err: ValidationError, *, top_level: bool = False
) -> tuple[str, str]:
    """The setting and a what/expected/received text for the first pydantic error."""
    first = err.errors()[0]
    loc = [p.rstrip("_") if isinstance(p, str) else p for p in first["loc"]]
    parts = [f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc]
    setting = "".join(parts).lstrip(".")
    key = next((p for p in loc if isinstance(p, str)), "")
    if first["type"] == "extra_forbidden":
        allowed = "version, rules" if top_level else _RULE_KEYS
        return setting, (
            f"unknown setting; expected only {allowed}, received {key!r}. Fix its "
            "spelling or remove it."
        )
    expected = _EXPECTED.get(key, "a valid value")
    if first["type"] == "missing":
        return setting, f"missing; expected {expected}. Add it."
    return setting, (
        f"{first['msg'].lower()}; expected {expected}, received "
        f"{first.get('input')!r:.80}. Fix the value."
    )


def parse_rules(
    data: Any, taxonomy: Taxonomy, *, source: str = "<rules>"
) -> list[Rule]:
    """Validate the content of a rules file (already read from YAML).

    ``source`` names the file in error messages.  Raises :class:`RuleError` naming
    the file, the rule's index and name, the setting, what was expected and what
    was received.
    """
    if not isinstance(data, Mapping):
        raise RuleError(
            f"rules file {source}: expected a mapping with 'version' and 'rules' at "
            f"the top level, received {type(data).__name__} {data!r:.80}"
        )
    try:
        top = RulesFile.model_validate(data)
    except ValidationError as err:
        raise _fail(
            f"rules file {source}", *_validation_message(err, top_level=True)
        ) from None
    if top.version != RULES_VERSION:
        raise _fail(
            f"rules file {source}",
            "version",
            f"unsupported version; expected {RULES_VERSION}, received "
            f"{top.version!r}. Write the file in the version {RULES_VERSION} format.",
        )
    if not top.rules:
        raise _fail(
            f"rules file {source}",
            "rules",
            "no rules; expected at least one rule. Add rules or leave the rules "
            "file out of the config.",
        )

    rules: list[Rule] = []
    seen: dict[str, int] = {}
    for index, raw in enumerate(top.rules):
        where = _rule_where(source, index, raw)
        try:
            spec = RuleSpec.model_validate(raw)
        except ValidationError as err:
            raise _fail(where, *_validation_message(err)) from None
        rule = _build_rule(spec, taxonomy, where)
        if rule.name in seen:
            raise _fail(
                where,
                "name",
                f"duplicate name; expected a name unique in the file, received "
                f"{rule.name!r}, already used by rules[{seen[rule.name]}]. "
                "Rename one of them.",
            )
        seen[rule.name] = index
        rules.append(rule)
    return rules


def _terms(spec_terms: list[str], where: str, setting: str) -> tuple[str, ...]:
    terms = normalize_terms(spec_terms)
    for raw, term in zip(spec_terms, terms, strict=True):
        if not term:
            raise _fail(
                where,
                setting,
                f"term {raw!r} has no letters or digits; expected words or "
                "phrases. Remove it, or use 'regex' to match punctuation.",
            )
    return tuple(dict.fromkeys(terms))


def _build_rule(spec: RuleSpec, taxonomy: Taxonomy, where: str) -> Rule:
    name = spec.name.strip()
    if not name:
        raise _fail(where, "name", "empty name; expected a non-empty, unique name.")

    try:
        category = taxonomy.resolve(spec.category)
    except TaxonomyError:
        example = taxonomy.ids[0]
        raise _fail(
            where,
            "category",
            f"unknown category; expected a category id such as {example!r} or a "
            f"path of names such as {taxonomy.path_str(example)!r}, received "
            f"{spec.category!r}. Fix the spelling or add the category to the "
            "taxonomy.",
        ) from None

    fields = DEFAULT_FIELDS if spec.fields is None else tuple(spec.fields)
    unknown = [f for f in fields if f not in TEXT_FIELDS]
    if unknown or not fields:
        problem = f"unknown field(s) {unknown!r}" if unknown else "no fields"
        raise _fail(
            where,
            "fields",
            f"{problem}; expected a non-empty list of {', '.join(TEXT_FIELDS)}, "
            f"received {list(fields)!r}. Use the canonical catalog column names.",
        )

    regex = spec.regex
    if regex is not None:
        if not regex.strip():
            raise _fail(
                where,
                "regex",
                "empty regex; expected a Python regular expression or null, "
                f"received {regex!r}.",
            )
        try:
            re.compile(regex, re.IGNORECASE)
        except re.error as err:
            raise _fail(
                where,
                "regex",
                f"cannot compile ({err}); expected a Python regular expression, "
                f"received {regex!r}. Escape special characters such as ( or +.",
            ) from None

    any_terms = _terms(spec.any_, where, "any")
    all_terms = _terms(spec.all_, where, "all")
    none_terms = _terms(spec.none, where, "none")
    if not (any_terms or all_terms or regex):
        raise _fail(
            where,
            "any/all/regex",
            "empty rule; expected at least one of 'any', 'all' or 'regex', received "
            f"none (none: {list(none_terms)!r}). A rule with only 'none' would "
            "label almost every product; add the words it should look for.",
        )
    return Rule(
        name=name,
        category=category,
        fields=tuple(dict.fromkeys(fields)),
        any_terms=any_terms,
        all_terms=all_terms,
        none_terms=none_terms,
        regex=regex,
    )


def load_rules(path: str | Path, taxonomy: Taxonomy) -> list[Rule]:
    """Read and validate a rules file; see the module docstring for its format."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise RuleError(
            f"rules file {path}: cannot read it ({err.strerror or err}); check the "
            "path (in a pipeline config it is relative to the config file)"
        ) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise RuleError(
            f"rules file {path}: not valid YAML ({err}); fix the syntax at the "
            "line shown"
        ) from None
    rules = parse_rules(data, taxonomy, source=str(path))
    logger.info("loaded %d rules from %s", len(rules), path)
    return rules


# -- applying rules -------------------------------------------------------------------


def _text_array(frame: pd.DataFrame, column: str) -> pa.Array:
    values = frame[column]
    values = values.where(values.notna(), "").astype(str)
    return pa.array(values.to_numpy(dtype=object), type=pa.large_string())


class _ChunkText:
    """The text of one chunk of the catalog, per field combination, computed once."""

    def __init__(self, frame: pd.DataFrame):
        self.frame = frame
        self._raw: dict[str, pa.Array] = {}
        self._norm: dict[str, pa.Array] = {}
        self._words: dict[tuple[str, ...], pa.Array] = {}
        self._joined: dict[tuple[str, ...], np.ndarray] = {}

    def raw(self, column: str) -> pa.Array:
        if column not in self._raw:
            self._raw[column] = _text_array(self.frame, column)
        return self._raw[column]

    def words(self, fields: tuple[str, ...]) -> pa.Array:
        """Normalized words of the fields, padded with spaces: `` a b | c ``."""
        if fields not in self._words:
            parts = []
            for column in fields:
                if column not in self._norm:
                    self._norm[column] = pc.replace_substring_regex(
                        pc.utf8_lower(self.raw(column)),
                        pattern=_NON_WORD,
                        replacement=" ",
                    )
                parts.append(self._norm[column])
            space = pa.scalar(" ", pa.large_string())
            joined = pc.binary_join_element_wise(
                *parts, pa.scalar(_FIELD_JOIN, pa.large_string())
            )
            self._words[fields] = pc.binary_join_element_wise(
                space, joined, space, pa.scalar("", pa.large_string())
            )
        return self._words[fields]

    def joined(self, fields: tuple[str, ...]) -> np.ndarray:
        """The raw text of the fields joined by newlines, for Python regexes."""
        if fields not in self._joined:
            parts = [self.raw(c) for c in fields]
            self._joined[fields] = pc.binary_join_element_wise(
                *parts, pa.scalar("\n", pa.large_string())
            ).to_numpy(zero_copy_only=False)
        return self._joined[fields]


def _alternation(terms: tuple[str, ...]) -> str:
    # Terms hold only letters, digits and single spaces, none special to RE2.
    return " (?:" + "|".join(terms) + ") "


def _select(text: pa.Array, rows: np.ndarray | None, pattern: str) -> np.ndarray:
    """Rows (among ``rows``, or all when None) whose text matches the RE2 pattern."""
    sub = text if rows is None else text.take(pa.array(rows, type=pa.int64()))
    hit = pc.match_substring_regex(sub, pattern=pattern).to_numpy(zero_copy_only=False)
    found = np.flatnonzero(hit)
    return found if rows is None else rows[found]


def _match_rule(rule: Rule, text: _ChunkText) -> np.ndarray:
    """Row positions in the chunk where every condition of ``rule`` holds."""
    words = text.words(rule.fields)
    rows: np.ndarray | None = None
    if rule.any_terms:
        rows = _select(words, rows, _alternation(rule.any_terms))
    for term in rule.all_terms:
        if rows is not None and not len(rows):
            break
        rows = _select(words, rows, f" {term} ")
    if rows is None:
        rows = np.arange(len(text.frame))
    if rule.none_terms and len(rows):
        excluded = _select(words, rows, _alternation(rule.none_terms))
        rows = np.setdiff1d(rows, excluded, assume_unique=True)
    if rule.regex is not None and len(rows):
        pattern = re.compile(rule.regex, re.IGNORECASE)
        candidates = text.joined(rule.fields)[rows]
        keep = np.fromiter(
            (pattern.search(s) is not None for s in candidates),
            dtype=bool,
            count=len(rows),
        )
        rows = rows[keep]
    return rows


def _match_chunk(rules: Sequence[Rule], frame: pd.DataFrame) -> list[np.ndarray]:
    text = _ChunkText(frame)
    return [_match_rule(rule, text) for rule in rules]


def apply_rules(
    rules: Sequence[Rule],
    catalog_df: pd.DataFrame,
    *,
    chunk_rows: int = 100_000,
    n_threads: int | None = None,
) -> pd.DataFrame:
    """Run every rule on every product of the canonical catalog frame.

    Returns one row per (product, rule) match with columns ``product_id``,
    ``rule`` and ``category`` (the rule's category id), ordered by rule, then by
    catalog row.  Chunks of ``chunk_rows`` products are matched in ``n_threads``
    threads (default: up to 8, one per CPU); pyarrow releases the GIL, so
    threads give real parallelism here.
    """
    needed = {"product_id"} | {f for r in rules for f in r.fields}
    missing = sorted(needed - set(catalog_df.columns))
    if missing:
        raise CatalogError(
            f"apply_rules: the catalog frame has no column(s) {missing!r}, which the "
            f"rules read; expected the canonical frame of raycat.catalog.load_catalog "
            f"with {', '.join(('product_id', *TEXT_FIELDS))}; received columns "
            f"{list(catalog_df.columns)!r}"
        )
    if chunk_rows < 1:
        raise RuleError(f"apply_rules: chunk_rows must be >= 1, received {chunk_rows}")
    started = time.perf_counter()

    n = len(catalog_df)
    starts = list(range(0, n, chunk_rows))
    chunks = [catalog_df.iloc[s : s + chunk_rows] for s in starts]
    workers = n_threads or min(8, os.cpu_count() or 1)
    if len(chunks) <= 1 or workers <= 1:
        results = [_match_chunk(rules, c) for c in chunks]
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(lambda c: _match_chunk(rules, c), chunks))

    ids = catalog_df["product_id"].astype(str).to_numpy(dtype=object)
    columns: dict[str, list[np.ndarray]] = {c: [] for c in MATCH_COLUMNS}
    for k, rule in enumerate(rules):
        rows = np.concatenate(
            [res[k] + s for res, s in zip(results, starts, strict=True)]
            or [np.empty(0, dtype=np.int64)]
        ).astype(np.int64)
        columns["product_id"].append(ids[rows])
        columns["rule"].append(np.full(len(rows), rule.name, dtype=object))
        columns["category"].append(np.full(len(rows), rule.category, dtype=object))
    matches = pd.DataFrame(
        {
            c: pd.array(
                np.concatenate(v) if v else np.empty(0, dtype=object), dtype=str
            )
            for c, v in columns.items()
        }
    )

    logger.info(
        "applied %d rules to %d products in %.1f s: %d matches, %d products labeled",
        len(rules),
        n,
        time.perf_counter() - started,
        len(matches),
        matches["product_id"].nunique(),
    )
    return matches


def rule_label_events(matches: pd.DataFrame) -> list[LabelEvent]:
    """One positive :class:`LabelEvent` per match (source ``rule``, labeler the
    rule's name); all events share one time stamp."""
    missing = [c for c in MATCH_COLUMNS if c not in matches.columns]
    if missing:
        raise RuleError(
            f"rule_label_events: the matches frame lacks column(s) {missing!r}; "
            f"expected the output of apply_rules with columns {MATCH_COLUMNS!r}"
        )
    now = time.time()
    return [
        LabelEvent(
            product_id=pid,
            category=cat,
            value=1,
            source=Source.RULE,
            labeler=rule,
            time=now,
        )
        for pid, rule, cat in zip(
            matches["product_id"], matches["rule"], matches["category"], strict=True
        )
    ]


# -- the report ---------------------------------------------------------------------


def _ratio(num: int, den: int) -> float | None:
    return round(num / den, 4) if den else None


def _f1(tp: int, n_predicted: int, n_true: int, measured: bool) -> float | None:
    # From counts, not from rounded precision and recall.
    if not measured or not (n_predicted or n_true):
        return None
    return round(2 * tp / (n_predicted + n_true), 4)


def _sorted_counts(counts: Mapping[str, int]) -> dict[str, int]:
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def _self_and_ancestors(taxonomy: Taxonomy) -> np.ndarray:
    """Row j: column index of j and of each of its ancestors, padded with -1."""
    table = np.full((len(taxonomy), taxonomy.max_depth), -1, dtype=np.int64)
    for j, cid in enumerate(taxonomy.ids):
        line = [j, *(taxonomy.index[a] for a in taxonomy.ancestors(cid))]
        table[j, : len(line)] = line
    return table


def _unique(codes: np.ndarray) -> np.ndarray:
    # Sorting beats np.unique's hash table on millions of int64 codes.
    ordered = np.sort(codes)
    if len(ordered) < 2:
        return ordered
    return ordered[np.concatenate(([True], ordered[1:] != ordered[:-1]))]


def _closed_codes(
    products: np.ndarray, cats: np.ndarray, up: np.ndarray, n_cats: int
) -> np.ndarray:
    """Sorted unique ``product * n_cats + category`` codes, ancestors added."""
    expanded = up[cats]
    keep = expanded >= 0
    prods = np.broadcast_to(products[:, None], expanded.shape)[keep]
    return _unique(prods * n_cats + expanded[keep])


def rules_report(
    rules: Sequence[Rule],
    catalog_df: pd.DataFrame,
    taxonomy: Taxonomy,
    ground_truth: Mapping[str, set[str]] | None = None,
    *,
    matches: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """Measure the rules on a catalog, against ground truth where given.

    ``ground_truth`` maps product ids to category ids (closed under ancestors
    here again, so leaf-only sets work too); products outside the catalog are
    ignored with a warning.  Pass ``matches`` (from :func:`apply_rules`) to reuse
    a run.  Returns a JSON-serializable dict:

    - ``rules``, per rule: ``products`` labeled; ``overlaps`` (other rule ->
      products both label); ``conflicts`` (``products`` this rule labels that
      another rule puts in a category neither above nor below its own, and the
      count per such rule); ``precision`` (share of its labeled ground-truth
      products whose closed ground truth holds its category, over
      ``gt_labeled`` of them) and ``recall`` (share of the ``gt_support``
      ground-truth products of its category that it labels);
    - ``categories``, per category with labels, ground truth or rules: labels
      propagated to ancestors, the rules for it or below it, precision, recall
      and F1;
    - ``uncovered``: categories with ground truth and no rule for them or below
      them (None without ground truth);
    - ``totals``: coverage, and micro precision and recall over closed
      (product, category) pairs of the ground-truth products.

    Precision and recall are None where there is nothing to measure them on.
    """
    if matches is None:
        matches = apply_rules(rules, catalog_df)
    rule_index = {r.name: k for k, r in enumerate(rules)}
    if len(rule_index) != len(rules):
        twice = sorted(n for n, c in Counter(r.name for r in rules).items() if c > 1)
        raise RuleError(
            f"rules_report: rule names {twice[:5]!r} are used more than once; the "
            "report tells rules apart by name, so give every rule its own"
        )
    foreign = [r.name for r in rules if r.category not in taxonomy]
    if foreign:
        raise RuleError(
            f"rules_report: rules {foreign[:5]!r} name categories that are not in "
            "this taxonomy; load the rules with the taxonomy you report against"
        )
    n_cats = len(taxonomy)
    up = _self_and_ancestors(taxonomy)
    catalog_ids = pd.Index(pd.unique(catalog_df["product_id"].astype(str)))
    n_ids = max(len(catalog_ids), 1)

    # Matches as integer codes: product position, rule position, category column.
    match_rules = matches["rule"].to_numpy(dtype=object)
    m_rule = pd.Index(list(rule_index), dtype=object).get_indexer(match_rules)
    if (m_rule < 0).any():
        strangers = sorted(set(match_rules[m_rule < 0]))
        raise RuleError(
            f"rules_report: the matches name rules {strangers[:5]!r} "
            "that are not among the rules given; pass the matches of these rules, "
            "or none"
        )
    match_ids = matches["product_id"].to_numpy(dtype=object)
    m_prod = catalog_ids.get_indexer(match_ids)
    if (m_prod < 0).any():
        raise RuleError(
            "rules_report: the matches name products that are not in the catalog "
            f"(e.g. {match_ids[m_prod < 0][0]!r}); "
            "pass the matches of apply_rules on this catalog, or none"
        )
    keys = _unique(m_rule * n_ids + m_prod)
    m_rule, m_prod = keys // n_ids, keys % n_ids
    rule_cat = np.asarray([taxonomy.index[r.category] for r in rules], dtype=np.int64)
    m_cat = rule_cat[m_rule] if len(rules) else np.empty(0, dtype=np.int64)

    # Ground truth as closed (product, category) codes over catalog products.
    gt_codes = np.empty(0, dtype=np.int64)
    gt_mask = np.zeros(len(catalog_ids), dtype=bool)
    if ground_truth is not None:
        gt_ids = list(ground_truth)
        pos = catalog_ids.get_indexer(pd.Index(gt_ids, dtype=object).astype(str))
        if (pos < 0).any():
            logger.warning(
                "rules_report: %d ground-truth products are not in the catalog "
                "(e.g. %r); left out of precision and recall",
                int((pos < 0).sum()),
                [p for p, i in zip(gt_ids, pos, strict=True) if i < 0][:3],
            )
        prods, cats = [], []
        for pid, i in zip(gt_ids, pos, strict=True):
            if i >= 0:
                gt_mask[i] = True
                for cid in ground_truth[pid]:
                    prods.append(i)
                    where = f"ground truth of product {pid!r}"
                    cats.append(taxonomy.index[taxonomy.resolve(cid, where=where)])
        if prods:
            gt_codes = _closed_codes(
                np.asarray(prods, dtype=np.int64),
                np.asarray(cats, dtype=np.int64),
                up,
                n_cats,
            )
    has_gt = bool(gt_mask.any())
    gt_support = np.bincount(gt_codes % n_cats, minlength=n_cats)

    # Per rule: labeled products, and how many of them the ground truth confirms.
    n_rules = len(rules)
    labeled = np.bincount(m_rule, minlength=n_rules)
    in_gt = gt_mask[m_prod]
    gt_labeled = np.bincount(m_rule[in_gt], minlength=n_rules)
    hit = np.isin(m_prod * n_cats + m_cat, gt_codes)
    rule_tp = np.bincount(m_rule[hit], minlength=n_rules)

    # Overlaps and conflicts: every pair of rules labeling the same product.
    frame = pd.DataFrame({"p": m_prod, "r": m_rule})
    pairs = frame.merge(frame, on="p", suffixes=("", "_o"))
    pairs = pairs[pairs["r"] != pairs["r_o"]]
    a, b = rule_cat[pairs["r"].to_numpy()], rule_cat[pairs["r_o"].to_numpy()]
    anc = taxonomy.ancestor_matrix
    clash = (anc[a, b] == 0) & (anc[b, a] == 0)
    pair_code = pairs["r"].to_numpy() * n_rules + pairs["r_o"].to_numpy()
    overlap_n = np.bincount(pair_code, minlength=n_rules * n_rules)
    conflict_n = np.bincount(pair_code[clash], minlength=n_rules * n_rules)
    clash_keys = _unique(
        pairs["r"].to_numpy()[clash] * n_ids + pairs["p"].to_numpy()[clash]
    )
    conflict_products = np.bincount(clash_keys // n_ids, minlength=n_rules)
    overlap_n = overlap_n.reshape(n_rules, n_rules)
    conflict_n = conflict_n.reshape(n_rules, n_rules)

    rule_rows = []
    for k, rule in enumerate(rules):
        support = int(gt_support[rule_cat[k]])
        rule_rows.append(
            {
                "name": rule.name,
                "category": rule.category,
                "path": taxonomy.path_str(rule.category),
                "products": int(labeled[k]),
                "overlaps": _sorted_counts(
                    {rules[o].name: int(n) for o, n in enumerate(overlap_n[k]) if n}
                ),
                "conflicts": {
                    "products": int(conflict_products[k]),
                    "rules": _sorted_counts(
                        {
                            rules[o].name: int(n)
                            for o, n in enumerate(conflict_n[k])
                            if n
                        }
                    ),
                },
                "gt_labeled": int(gt_labeled[k]),
                "gt_support": support,
                "precision": _ratio(int(rule_tp[k]), int(gt_labeled[k]))
                if has_gt
                else None,
                "recall": _ratio(int(rule_tp[k]), support) if has_gt else None,
            }
        )

    # Per category, with labels propagated to ancestors.
    pred_codes = _closed_codes(m_prod, m_cat, up, n_cats)
    pred_gt = pred_codes[gt_mask[pred_codes // n_cats]]
    cat_labeled = np.bincount(pred_codes % n_cats, minlength=n_cats)
    cat_gt_labeled = np.bincount(pred_gt % n_cats, minlength=n_cats)
    tp_codes = np.intersect1d(pred_gt, gt_codes, assume_unique=True)
    cat_tp = np.bincount(tp_codes % n_cats, minlength=n_cats)
    covering: dict[int, list[str]] = defaultdict(list)
    for k, rule in enumerate(rules):
        for j in up[rule_cat[k]]:
            if j >= 0:
                covering[int(j)].append(rule.name)

    category_rows = []
    for j, cid in enumerate(taxonomy.ids):
        if not (cat_labeled[j] or gt_support[j] or covering.get(j)):
            continue
        precision = _ratio(int(cat_tp[j]), int(cat_gt_labeled[j])) if has_gt else None
        recall = _ratio(int(cat_tp[j]), int(gt_support[j])) if has_gt else None
        category_rows.append(
            {
                "category": cid,
                "path": taxonomy.path_str(cid),
                "depth": taxonomy.depth(cid),
                "products": int(cat_labeled[j]),
                "rules": covering.get(j, []),
                "gt_labeled": int(cat_gt_labeled[j]),
                "gt_support": int(gt_support[j]),
                "precision": precision,
                "recall": recall,
                "f1": _f1(
                    int(cat_tp[j]), int(cat_gt_labeled[j]), int(gt_support[j]), has_gt
                ),
            }
        )
    uncovered = None
    if has_gt:
        gaps = [j for j in range(n_cats) if gt_support[j] and not covering.get(j)]
        gaps.sort(key=lambda j: (-gt_support[j], taxonomy.ids[j]))
        uncovered = [
            {
                "category": taxonomy.ids[j],
                "path": taxonomy.path_str(taxonomy.ids[j]),
                "gt_support": int(gt_support[j]),
            }
            for j in gaps
        ]

    # Totals: micro averages over closed (product, category) pairs.
    n_products = len(catalog_ids)
    products_labeled = len(_unique(m_prod))
    precision = _ratio(len(tp_codes), len(pred_gt)) if has_gt else None
    recall = _ratio(len(tp_codes), len(gt_codes)) if has_gt else None
    totals = {
        "products": n_products,
        "rules": n_rules,
        "matches": len(keys),
        "products_labeled": products_labeled,
        "coverage": _ratio(products_labeled, n_products),
        "gt_products": int(gt_mask.sum()),
        "gt_products_labeled": len(_unique(pred_gt // n_cats)),
        "precision": precision,
        "recall": recall,
        "f1": _f1(len(tp_codes), len(pred_gt), len(gt_codes), has_gt),
    }
    return {
        "rules": rule_rows,
        "categories": category_rows,
        "uncovered": uncovered,
        "totals": totals,
    }


def print_rules_report(report: Mapping[str, Any], console: Any = None) -> None:
    """Show a :func:`rules_report` as rich tables (a new console when None)."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()

    def num(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}"

    def top(counts: Mapping[str, int], k: int = 3) -> str:
        items = [f"{name} ({n})" for name, n in list(counts.items())[:k]]
        more = len(counts) - k
        return ", ".join(items) + (f", +{more} more" if more > 0 else "")

    t = report["totals"]
    totals = Table(title="Rules: totals", show_header=False)
    totals.add_column("measure")
    totals.add_column("value", justify="right")
    totals.add_row("rules", str(t["rules"]))
    totals.add_row("products", str(t["products"]))
    totals.add_row(
        "products labeled", f"{t['products_labeled']} ({num(t['coverage'])})"
    )
    totals.add_row("matches", str(t["matches"]))
    totals.add_row("ground-truth products", str(t["gt_products"]))
    totals.add_row("micro precision", num(t["precision"]))
    totals.add_row("micro recall", num(t["recall"]))
    totals.add_row("micro F1", num(t["f1"]))
    console.print(totals)

    rules = Table(title="Rules")
    for col, justify in [
        ("rule", "left"),
        ("category", "left"),
        ("products", "right"),
        ("precision", "right"),
        ("recall", "right"),
        ("GT used", "right"),
        ("overlaps", "left"),
        ("conflicts", "left"),
    ]:
        rules.add_column(col, justify=justify)
    for r in report["rules"]:
        conflicts = r["conflicts"]
        rules.add_row(
            r["name"],
            r["path"],
            str(r["products"]),
            num(r["precision"]),
            num(r["recall"]),
            f"{r['gt_labeled']}/{r['gt_support']}",
            top(r["overlaps"]),
            f"{conflicts['products']}: {top(conflicts['rules'])}"
            if conflicts["products"]
            else "",
        )
    console.print(rules)

    cats = Table(title="Categories (labels propagated to ancestors)")
    for col, justify in [
        ("category", "left"),
        ("products", "right"),
        ("GT support", "right"),
        ("precision", "right"),
        ("recall", "right"),
        ("F1", "right"),
        ("rules", "right"),
    ]:
        cats.add_column(col, justify=justify)
    for c in report["categories"]:
        cats.add_row(
            c["path"],
            str(c["products"]),
            str(c["gt_support"]),
            num(c["precision"]),
            num(c["recall"]),
            num(c["f1"]),
            str(len(c["rules"])),
        )
    console.print(cats)

    if report.get("uncovered"):
        gaps = Table(title="Categories with ground truth and no rule")
        gaps.add_column("category")
        gaps.add_column("GT support", justify="right")
        for u in report["uncovered"]:
            gaps.add_row(u["path"], str(u["gt_support"]))
        console.print(gaps)
