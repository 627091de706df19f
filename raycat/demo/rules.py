"""An old keyword-rule system for a demo catalog, with the faults real ones have.

The rules file is what the legacy system would have: one or more keyword
queries per category.  Its faults are deliberate and recorded:

- some leaf categories have no rule at all (``uncovered_fraction``);
- a rule quotes only part of its category's keywords, may demand an ancestor's
  word (``all``) or search the title only, so it misses products (partial
  recall);
- some rules quote a misleading keyword: one that other categories' products
  use too (a shared word, another category's word, or a generic name word such
  as "kits"), so they fire on the wrong products;
- some rules exclude a sibling's word (``none``) or add a regex.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from raycat.demo.world import DemoCategory, DemoWorld
from raycat.taxonomy import slugify

# How often each fault is given to a rule; the values make the old system
# clearly useful (most products get the right label) and clearly flawed.
MISLEADING_RATE = 0.3
NAME_WORD_RATE = 0.3
ALL_RATE = 0.2
NONE_RATE = 0.3
TITLE_ONLY_RATE = 0.15
REGEX_RATE = 0.1
SECOND_RULE_RATE = 0.1
INNER_RULE_RATE = 0.5


@dataclass
class DemoRules:
    rules: list[dict[str, Any]]
    # Indices of categories that no rule names.
    uncovered: list[int]
    # (rule name, keyword, paths of the other categories whose text uses it)
    misleading: list[dict[str, Any]] = field(default_factory=list)
    # Rules left out because no product of the catalog falls under their
    # category (see :func:`drop_absent_categories`).
    dropped: list[str] = field(default_factory=list)


def _rule_name(cat: DemoCategory) -> str:
    return "-".join(slugify(n) for n in cat.path)


def _word_users(world: DemoWorld) -> dict[str, list[str]]:
    """Which categories' products use each keyword (own, shared or name word)."""
    users: dict[str, list[str]] = {}
    for c in world.categories:
        for word in dict.fromkeys((*c.words, *c.shared_words, c.name_word)):
            users.setdefault(word, []).append(c.path_str)
    return users


def _keyword_rule(
    world: DemoWorld,
    cat: DemoCategory,
    rng: random.Random,
    name: str,
    *,
    users: dict[str, list[str]],
    out: DemoRules,
) -> dict[str, Any]:
    words = list(cat.words)
    k = max(1, round(len(words) * rng.uniform(0.3, 0.7)))
    any_words = rng.sample(words, k)

    misleading: list[str] = []
    if rng.random() < NAME_WORD_RATE and cat.name_word not in any_words:
        any_words.append(cat.name_word)
        # Generic name words ("kits") are used by several categories.
        if len(users.get(cat.name_word, [])) > 1:
            misleading.append(cat.name_word)
    if rng.random() < MISLEADING_RATE:
        if cat.shared_words and rng.random() < 0.6:
            word = rng.choice(cat.shared_words)
        else:
            other = rng.randrange(len(world.categories) - 1)
            other += other >= cat.index  # any category but this one
            word = rng.choice(world.categories[other].words)
        if word not in any_words:
            any_words.append(word)
            misleading.append(word)
    for word in misleading:
        also_in = [p for p in users.get(word, []) if p != cat.path_str]
        out.misleading.append({"rule": name, "keyword": word, "also_in": also_in})

    all_words: list[str] = []
    if cat.ancestors and rng.random() < ALL_RATE:
        all_words.append(rng.choice(world.categories[cat.ancestors[0]].words))
    none_words: list[str] = []
    siblings = [
        world.categories[i]
        for i in (
            world.categories[cat.parent].children if cat.parent is not None else []
        )
        if i != cat.index
    ]
    if siblings and rng.random() < NONE_RATE:
        none_words.append(rng.choice(rng.choice(siblings).words))
    fields = ["title"] if rng.random() < TITLE_ONLY_RATE else ["title", "description"]
    regex: str | None = None
    if len(any_words) >= 2 and rng.random() < REGEX_RATE:
        pair = "|".join(sorted(rng.sample(any_words, 2)))
        regex = rf"(?i)\b(?:{pair})s?\b"

    return {
        "name": name,
        "category": cat.path_str,
        "fields": fields,
        "any": any_words,
        "all": all_words,
        "none": none_words,
        "regex": regex,
    }


def build_rules(world: DemoWorld, *, uncovered_fraction: float = 0.2) -> DemoRules:
    """The old system's rules for ``world``; deterministic from its seed."""
    rng = random.Random(f"raycat-demo-rules/{world.seed}")
    leaves = world.leaves
    n_uncovered = round(uncovered_fraction * len(leaves))
    uncovered_leaves = set(rng.sample(leaves, n_uncovered))
    out = DemoRules(rules=[], uncovered=[])
    users = _word_users(world)

    for cat in world.categories:
        name = _rule_name(cat)
        if cat.is_leaf:
            if cat.index in uncovered_leaves:
                out.uncovered.append(cat.index)
                continue
            out.rules.append(_keyword_rule(world, cat, rng, name, users=users, out=out))
            if rng.random() < SECOND_RULE_RATE:
                # A narrow title-only query someone added later.
                extra = _keyword_rule(
                    world, cat, rng, f"{name}-2", users=users, out=out
                )
                extra["fields"] = ["title"]
                out.rules.append(extra)
        elif rng.random() < INNER_RULE_RATE:
            out.rules.append(_keyword_rule(world, cat, rng, name, users=users, out=out))
        else:
            out.uncovered.append(cat.index)
    return out


def drop_absent_categories(rules: DemoRules, present: set[str]) -> None:
    """Leave out the rules whose category no product falls under.

    The catalog's taxonomy is built from its products' paths, so in a small
    catalog a rare category may not exist at all; a rule naming it would name
    an unknown category.
    """
    kept = [r for r in rules.rules if r["category"] in present]
    kept_names = {r["name"] for r in kept}
    rules.dropped = [r["name"] for r in rules.rules if r["name"] not in kept_names]
    rules.rules = kept
    rules.misleading = [m for m in rules.misleading if m["rule"] in kept_names]


def write_rules_yaml(path: Path, rules: DemoRules, *, seed: int) -> None:
    header = (
        f"# Old keyword-rule system of the raycat demo catalog (seed {seed}).\n"
        "# Deliberately flawed: uncovered categories, partial keyword lists and\n"
        "# misleading keywords; demo_world.json says which.\n"
    )
    body = yaml.safe_dump(
        {"version": 1, "rules": rules.rules},
        sort_keys=False,
        default_flow_style=None,
        width=88,
        allow_unicode=True,
    )
    path.write_text(header + body)
