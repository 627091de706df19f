"""The old system's keyword rules: file format, matching, report."""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
from rich.console import Console

from raycat.errors import CatalogError, RuleError, TaxonomyError
from raycat.labels.events import Source
from raycat.rules import (
    MATCH_COLUMNS,
    Rule,
    apply_rules,
    load_rules,
    normalize_terms,
    parse_rules,
    print_rules_report,
    rule_label_events,
    rules_report,
)
from raycat.taxonomy import Taxonomy

REPO = Path(__file__).resolve().parents[1]
FLIPKART = REPO.parent / "shared" / "data" / "flipkart-1050"
FLIPKART_RULES = REPO / "configs" / "rules" / "flipkart-1050.yaml"


@pytest.fixture
def tax() -> Taxonomy:
    return Taxonomy.from_paths(
        [
            ["Watches", "Wrist Watches"],
            ["Watches", "Clocks"],
            ["Kitchen", "Mugs"],
            ["Kitchen", "Pans"],
        ]
    )


def catalog(*rows: tuple[str, ...]) -> pd.DataFrame:
    """Rows of (id, title[, description[, extra_text[, colour]]])."""
    full = [(*r, *[""] * (5 - len(r))) for r in rows]
    cols = ["product_id", "title", "description", "extra_text", "colour"]
    return pd.DataFrame(full, columns=cols)


def rules_of(tax: Taxonomy, *specs: dict) -> list:
    return parse_rules({"version": 1, "rules": list(specs)}, tax, source="t.yaml")


def matched(rules, df) -> list[str]:
    return apply_rules(rules, df)["product_id"].tolist()


# -- matching -----------------------------------------------------------------------


def test_any_matches_whole_words_case_insensitively(tax):
    df = catalog(
        ("p1", "Steel watch"),
        ("p2", "Watches box"),
        ("p3", "Stopwatch timer"),
        ("p4", "WATCH!"),
        ("p5", "a chronograph"),
    )
    rules = rules_of(
        tax, {"name": "w", "category": "Watches", "any": ["watch", "Chronograph"]}
    )
    assert matched(rules, df) == ["p1", "p4", "p5"]


def test_phrase_matches_words_in_sequence_within_one_field(tax):
    df = catalog(
        ("p1", "Round Wall-Clock"),
        ("p2", "wall   clock, quartz"),
        ("p3", "clock for the wall"),
        ("p4", "painted wall", "clock sold apart"),
    )
    rules = rules_of(
        tax, {"name": "c", "category": "Watches > Clocks", "any": ["wall clock"]}
    )
    assert rules[0].any_terms == ("wall clock",)
    assert matched(rules, df) == ["p1", "p2"]
    # A rule built by hand gets its terms normalized too.
    by_hand = Rule(name="h", category="watches/clocks", any_terms=("Wall-Clock",))
    assert by_hand.any_terms == ("wall clock",)
    assert matched([by_hand], df) == ["p1", "p2"]


def test_all_and_none_conditions(tax):
    df = catalog(
        ("p1", "steel watch"),
        ("p2", "steel wall clock", "with a watch face"),
        ("p3", "leather watch"),
        ("p4", "steel strap"),
    )
    rules = rules_of(
        tax,
        {
            "name": "w",
            "category": "Watches > Wrist Watches",
            "all": ["steel", "watch"],
            "none": ["clock"],
        },
    )
    assert matched(rules, df) == ["p1"]


def test_regex_is_case_insensitive_on_raw_text_and_combines_with_words(tax):
    df = catalog(
        ("p1", "Coffee Mug - 325 ML"),
        ("p2", "Coffee mug", "large"),
        ("p3", "Tea cup 200ml"),
    )
    rules = rules_of(
        tax,
        {
            "name": "m",
            "category": "Kitchen > Mugs",
            "any": ["mug"],
            "regex": r"\d+\s*ml\b",
        },
        {"name": "v", "category": "Kitchen", "regex": r"\d+\s*ml\b"},
    )
    out = apply_rules(rules, df)
    assert out.values.tolist() == [
        ["p1", "m", "kitchen/mugs"],
        ["p1", "v", "kitchen"],
        ["p3", "v", "kitchen"],
    ]


def test_fields_choose_the_text_searched(tax):
    df = catalog(
        ("p1", "Gift", "a watch", "", ""),
        ("p2", "Gift", "", "watch brand", ""),
        ("p3", "Gift", "", "", "watch"),
    )
    default = rules_of(tax, {"name": "a", "category": "Watches", "any": ["watch"]})
    colour = rules_of(
        tax,
        {"name": "b", "category": "Watches", "any": ["watch"], "fields": ["colour"]},
    )
    assert default[0].fields == ("title", "description", "extra_text")
    assert matched(default, df) == ["p1", "p2"]
    assert matched(colour, df) == ["p3"]


def test_missing_text_and_non_latin_words(tax):
    df = pd.DataFrame(
        {
            "product_id": ["p1", "p2", "p3"],
            "title": ["Montre café", None, "Uhr"],
            "description": [None, "café mug", float("nan")],
            "extra_text": "",
            "colour": "",
        }
    )
    rules = rules_of(tax, {"name": "c", "category": "Kitchen > Mugs", "any": ["Café"]})
    assert normalize_terms(["Café", "USB-3.0 "]) == ["café", "usb 3 0"]
    assert matched(rules, df) == ["p1", "p2"]


def test_chunks_and_threads_give_the_same_matches(tax):
    titles = ["watch", "mug", "wall clock", "watch mug", "pan", "clock"]
    df = catalog(*[(f"p{i}", t) for i, t in enumerate(titles)])
    rules = rules_of(
        tax,
        {"name": "w", "category": "Watches > Wrist Watches", "any": ["watch"]},
        {"name": "m", "category": "Kitchen > Mugs", "any": ["mug"]},
        {
            "name": "c",
            "category": "Watches > Clocks",
            "any": ["clock"],
            "regex": "^wall",
        },
    )
    one = apply_rules(rules, df)
    many = apply_rules(rules, df, chunk_rows=2, n_threads=2)
    pd.testing.assert_frame_equal(one, many)
    assert one.values.tolist() == [
        ["p0", "w", "watches/wrist-watches"],
        ["p3", "w", "watches/wrist-watches"],
        ["p1", "m", "kitchen/mugs"],
        ["p3", "m", "kitchen/mugs"],
        ["p2", "c", "watches/clocks"],
    ]


def test_empty_catalog_and_missing_column(tax):
    rules = rules_of(tax, {"name": "w", "category": "Watches", "any": ["watch"]})
    empty = apply_rules(rules, catalog())
    assert list(empty.columns) == MATCH_COLUMNS and empty.empty
    assert apply_rules([], catalog(("p1", "watch"))).empty
    with pytest.raises(CatalogError, match=r"no column\(s\) \['extra_text'\]"):
        apply_rules(rules, catalog(("p1", "watch")).drop(columns="extra_text"))


def test_rule_label_events(tax):
    rules = rules_of(tax, {"name": "w", "category": "Watches", "any": ["watch"]})
    events = rule_label_events(apply_rules(rules, catalog(("p1", "a watch"))))
    assert len(events) == 1
    ev = events[0]
    assert (ev.product_id, ev.category, ev.value) == ("p1", "watches", 1)
    assert (ev.source, ev.labeler) == (Source.RULE, "w")
    with pytest.raises(RuleError, match=r"lacks column\(s\) \['rule'\]"):
        rule_label_events(pd.DataFrame({"product_id": [], "category": []}))


# -- the file and its errors --------------------------------------------------------


def test_load_rules_reads_the_documented_format(tax, tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text(
        "# comments welcome\n"
        "version: 1\n"
        "rules:\n"
        "  - name: wrist-watches\n"
        "    category: Watches > Wrist Watches\n"
        "    fields: [title, description]\n"
        "    any: [watch, chronograph]\n"
        "    all: []\n"
        "    none: [clock, wall]\n"
        "    regex: null\n"
        "  - name: mugs\n"
        "    category: kitchen/mugs\n"
        "    any: [mug]\n"
    )
    rules = load_rules(path, tax)
    assert [(r.name, r.category) for r in rules] == [
        ("wrist-watches", "watches/wrist-watches"),
        ("mugs", "kitchen/mugs"),
    ]
    assert rules[0].none_terms == ("clock", "wall")
    assert rules[0].fields == ("title", "description")


def _one(**rule) -> dict:
    return {"version": 1, "rules": [{"name": "r", "category": "Watches", **rule}]}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            _one(category="Watches > Sundials", any=["x"]),
            r"t\.yaml, rules\[0\] \(name 'r'\), setting 'category': unknown "
            r"category; expected a category id such as 'kitchen' or a path of "
            r"names such as 'Kitchen', received 'Watches > Sundials'",
        ),
        (
            {
                "version": 1,
                "rules": [
                    {"name": "r", "category": "Watches", "any": ["a"]},
                    {"name": "r", "category": "Kitchen", "any": ["b"]},
                ],
            },
            r"rules\[1\] \(name 'r'\), setting 'name': duplicate name; expected a "
            r"name unique in the file, received 'r', already used by rules\[0\]",
        ),
        (
            _one(regex="(watch"),
            r"rules\[0\] \(name 'r'\), setting 'regex': cannot compile \(missing "
            r"\), unterminated subpattern at position 0\); expected a Python "
            r"regular expression, received '\(watch'",
        ),
        (
            _one(any=["x"], fields=["title", "titel"]),
            r"setting 'fields': unknown field\(s\) \['titel'\]; expected a "
            r"non-empty list of title, description, extra_text, colour, received "
            r"\['title', 'titel'\]",
        ),
        (
            _one(none=["clock"]),
            r"setting 'any/all/regex': empty rule; expected at least one of 'any', "
            r"'all' or 'regex', received none \(none: \['clock'\]\)",
        ),
        (
            {"version": 2, "rules": []},
            r"rules file t\.yaml, setting 'version': unsupported version; "
            r"expected 1, received 2",
        ),
        (
            {"rules": []},
            r"rules file t\.yaml, setting 'version': missing; expected version: 1",
        ),
        (
            {"version": 1, "rules": []},
            r"setting 'rules': no rules; expected at least one rule",
        ),
        (
            _one(anyy=["x"]),
            r"setting 'anyy': unknown setting; expected only name, category, "
            r"fields, any, all, none, regex, received 'anyy'",
        ),
        (
            _one(any="watch"),
            r"setting 'any': input should be a valid list; expected a list of "
            r"words or phrases \(strings\), received 'watch'",
        ),
        (
            _one(any=["++"]),
            r"setting 'any': term '\+\+' has no letters or digits; expected words",
        ),
        (
            {"version": 1, "rules": [{"category": "Watches", "any": ["x"]}]},
            r"rules\[0\], setting 'name': missing; expected a non-empty string",
        ),
        (
            ["not", "a", "mapping"],
            r"rules file t\.yaml: expected a mapping with 'version' and 'rules'",
        ),
    ],
)
def test_rule_errors_say_where_what_and_how(tax, data, message):
    with pytest.raises(RuleError, match=message):
        parse_rules(data, tax, source="t.yaml")


def test_load_rules_file_errors(tax, tmp_path):
    with pytest.raises(RuleError, match=r"nope\.yaml: cannot read it"):
        load_rules(tmp_path / "nope.yaml", tax)
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nrules: [\n")
    with pytest.raises(RuleError, match=r"bad\.yaml: not valid YAML"):
        load_rules(bad, tax)


# -- the report ---------------------------------------------------------------------

REPORT_PRODUCTS = [
    ("p1", "steel wrist watch"),
    ("p2", "wall clock with watch hands"),
    ("p3", "coffee mug"),
    ("p4", "watch mug"),
    ("p5", "table clock"),
    ("p6", "frying pan"),
]
REPORT_RULES = [
    {"name": "r_watch", "category": "Watches > Wrist Watches", "any": ["watch"]},
    {"name": "r_clock", "category": "Watches > Clocks", "any": ["clock"]},
    {"name": "r_mug", "category": "Kitchen > Mugs", "any": ["mug"]},
    {"name": "r_time", "category": "Watches", "any": ["watch", "clock"]},
]
# Leaf labels only: the report closes them under ancestors.  p99 is not in the
# catalog and must be left out.
REPORT_GT = {
    "p1": {"watches/wrist-watches"},
    "p2": {"watches/clocks"},
    "p3": {"kitchen/mugs"},
    "p4": {"kitchen/mugs"},
    "p5": {"watches/clocks"},
    "p6": {"kitchen/pans"},
    "p99": {"kitchen/mugs"},
}


@pytest.fixture
def report(tax, caplog) -> dict:
    rules = rules_of(tax, *REPORT_RULES)
    with caplog.at_level(logging.WARNING, logger="raycat.rules"):
        out = rules_report(rules, catalog(*REPORT_PRODUCTS), tax, REPORT_GT)
    assert "1 ground-truth products are not in the catalog" in caplog.text
    return out


def test_report_overlaps_and_conflicts(report):
    by_name = {r["name"]: r for r in report["rules"]}
    assert by_name["r_watch"]["products"] == 3  # p1, p2, p4
    assert by_name["r_watch"]["overlaps"] == {"r_time": 3, "r_clock": 1, "r_mug": 1}
    assert by_name["r_time"]["overlaps"] == {"r_watch": 3, "r_clock": 2, "r_mug": 1}
    # Wrist Watches clashes with its sibling Clocks (p2) and with Mugs (p4), never
    # with its parent Watches.
    assert by_name["r_watch"]["conflicts"] == {
        "products": 2,
        "rules": {"r_clock": 1, "r_mug": 1},
    }
    assert by_name["r_clock"]["conflicts"] == {"products": 1, "rules": {"r_watch": 1}}
    assert by_name["r_mug"]["conflicts"] == {
        "products": 1,
        "rules": {"r_time": 1, "r_watch": 1},
    }
    assert by_name["r_time"]["conflicts"] == {"products": 1, "rules": {"r_mug": 1}}


def test_report_rule_precision_and_recall(report):
    got = {
        r["name"]: (r["precision"], r["recall"], r["gt_labeled"], r["gt_support"])
        for r in report["rules"]
    }
    assert got == {
        "r_watch": (0.3333, 1.0, 3, 1),  # only p1 of p1, p2, p4 is a wrist watch
        "r_clock": (1.0, 1.0, 2, 2),
        "r_mug": (1.0, 1.0, 2, 2),
        "r_time": (0.75, 1.0, 4, 3),  # p4 is a mug
    }


def test_report_categories_uncovered_and_totals(report):
    cats = {c["category"]: c for c in report["categories"]}
    watches = cats["watches"]
    assert (watches["products"], watches["gt_support"]) == (4, 3)
    assert (watches["precision"], watches["recall"], watches["f1"]) == (
        0.75,
        1.0,
        0.8571,
    )
    assert watches["rules"] == ["r_watch", "r_clock", "r_time"]
    kitchen = cats["kitchen"]
    assert (kitchen["precision"], kitchen["recall"], kitchen["f1"]) == (
        1.0,
        0.6667,
        0.8,
    )
    assert cats["watches/wrist-watches"]["f1"] == 0.5
    assert cats["kitchen/pans"]["products"] == 0
    assert report["uncovered"] == [
        {"category": "kitchen/pans", "path": "Kitchen > Pans", "gt_support": 1}
    ]
    # 13 closed predicted pairs, 12 closed ground-truth pairs, 10 in common.
    assert report["totals"] == {
        "products": 6,
        "rules": 4,
        "matches": 11,
        "products_labeled": 5,
        "coverage": 0.8333,
        "gt_products": 6,
        "gt_products_labeled": 5,
        "precision": 0.7692,
        "recall": 0.8333,
        "f1": 0.8,
    }
    json.dumps(report)


def test_report_without_ground_truth(tax):
    rules = rules_of(tax, *REPORT_RULES)
    out = rules_report(rules, catalog(*REPORT_PRODUCTS), tax)
    assert out["uncovered"] is None
    assert out["totals"]["precision"] is None
    assert {r["precision"] for r in out["rules"]} == {None}
    assert out["totals"]["products_labeled"] == 5


def test_report_rejects_foreign_matches(tax):
    rules = rules_of(tax, *REPORT_RULES)
    df = catalog(*REPORT_PRODUCTS)
    stray = pd.DataFrame([["p1", "r_other", "watches"]], columns=MATCH_COLUMNS)
    with pytest.raises(RuleError, match=r"name rules \['r_other'\] that are not"):
        rules_report(rules, df, tax, matches=stray)
    twice = [*rules, rules[0]]
    with pytest.raises(RuleError, match=r"rule names \['r_watch'\] are used more"):
        rules_report(twice, df, tax)
    with pytest.raises(TaxonomyError, match=r"ground truth of product 'p1'"):
        rules_report(rules, df, tax, {"p1": {"Watches > Sundials"}})


def test_print_rules_report(report):
    console = Console(record=True, width=160)
    print_rules_report(report, console)
    text = console.export_text()
    assert "r_watch" in text and "Watches > Wrist Watches" in text
    assert "no rule" in text and "Kitchen > Pans" in text
    assert "micro precision" in text and "0.77" in text


# -- the Flipkart rules -------------------------------------------------------------


def _flipkart() -> tuple[Taxonomy, list[list[str]], pd.DataFrame]:
    products = FLIPKART / "products.csv"
    if not products.is_file():
        pytest.skip(
            f"the Flipkart sample is not at {FLIPKART} (it lives in ../shared next "
            "to the repository); this test needs the real data"
        )
    raw = pd.read_csv(products, dtype=str, keep_default_na=False)
    paths = [
        [n.strip() for n in json.loads(tree)[0].split(" >> ")][:3]
        for tree in raw["product_category_tree"]
    ]
    return Taxonomy.from_paths(paths, source=str(products)), paths, raw


@pytest.mark.flipkart
def test_flipkart_rules_resolve_and_cover_every_big_category():
    tax, paths, raw = _flipkart()
    rules = load_rules(FLIPKART_RULES, tax)
    assert all(r.category in tax for r in rules)

    sizes = Counter(
        tuple(p[:depth]) for p in paths for depth in (1, 2) if len(p) >= depth
    )
    big = {tax.id_for_path(list(p)) for p, n in sizes.items() if n >= 10}
    ruled = {r.category for r in rules}
    assert len(big) >= 30
    assert big - ruled == set()

    # Noisy but useful, as an old system is: neither perfect nor useless.
    df = pd.DataFrame(
        {
            "product_id": raw["uniq_id"],
            "title": raw["product_name"],
            "description": raw["description"],
            "extra_text": raw["brand"],
            "colour": "",
        }
    )
    gt = {
        pid: tax.closure([tax.id_for_path(p)])
        for pid, p in zip(raw["uniq_id"], paths, strict=True)
    }
    totals = rules_report(rules, df, tax, gt)["totals"]
    assert 0.7 <= totals["precision"] <= 0.97
    assert 0.4 <= totals["recall"] <= 0.9
