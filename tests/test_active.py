"""The pure active-learning core: budgets, pages, surprise and the decision."""

import json
import logging
import math

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from raycat.active import (
    ActiveLearningConfig,
    ActiveLearningError,
    StrategyDecision,
    binary_entropy,
    check_shares,
    class_budget,
    class_budget_by_id,
    class_shares,
    combined_score,
    compose_page,
    decide_strategy,
    depth_factor,
    largest_remainder,
    split_by_shares,
    surprise_analysis,
)
from raycat.taxonomy import Taxonomy

LN2, LN3 = math.log(2), math.log(3)


def sigmoid(z: float) -> float:
    return 1 / (1 + math.exp(-z))


# -- budget -------------------------------------------------------------------


def test_budget_follows_one_minus_f1_and_sums_to_n():
    # errors 1 - F1 = [0.5, 0.25, 0, 1], total 1.75 -> shares [2/7, 1/7, 0, 4/7]
    shares = class_shares([0.5, 0.75, 1.0, 0.0])
    np.testing.assert_allclose(shares, [2 / 7, 1 / 7, 0, 4 / 7])
    # quotas of 10: [2.857, 1.429, 0, 5.714] -> floors [2, 1, 0, 5] = 8; the
    # two left over go to the largest remainders .857 (index 0) and .714 (3).
    assert class_budget([0.5, 0.75, 1.0, 0.0], 10).tolist() == [3, 1, 0, 6]


def test_largest_remainder_ties_go_to_the_lower_index():
    # 10 / 3 = 3.333 each: floors 9, one left, the three remainders tie.
    assert largest_remainder([1 / 3, 1 / 3, 1 / 3], 10).tolist() == [4, 3, 3]
    assert largest_remainder([0.5, 0.5], 0).tolist() == [0, 0]


def test_split_by_shares_keeps_the_mix_over_many_one_label_classes():
    # Rounded class by class, every 1-label class would go to random.
    quota = split_by_shares([1] * 100, [0.5, 0.25, 0.25])
    assert quota.sum(axis=1).tolist() == [1] * 100
    assert quota.sum(axis=0).tolist() == [50, 25, 25]
    # Larger classes: each cell is the floor of its quota or one more, rows
    # exact, columns within one label of their share of the total.
    budgets = [7, 3, 0, 12, 5, 1, 1, 9]
    shares = [0.5, 0.3, 0.2]
    quota = split_by_shares(budgets, shares)
    ideal = np.outer(budgets, shares)
    assert quota.sum(axis=1).tolist() == budgets
    assert ((quota >= np.floor(ideal)) & (quota <= np.floor(ideal) + 1)).all()
    assert np.abs(quota.sum(axis=0) - sum(budgets) * np.array(shares)).max() <= 1
    assert split_by_shares([4, 2], [1.0, 0.0]).tolist() == [[4, 0], [2, 0]]


@pytest.mark.parametrize(
    ("term", "f1", "depths", "expected"),
    [
        # 1 - 0.5/y = [0.5, 0.75, 0.833, 0.75] times errors [0.5, 0.25, 0, 1]
        # = [0.25, 0.1875, 0, 0.75], total 1.1875 = 19/16 -> [4, 3, 0, 12] / 19
        ("inverse", [0.5, 0.75, 1.0, 0.0], [1, 2, 3, 2], [4 / 19, 3 / 19, 0, 12 / 19]),
        # depth 1 -> 0 (the limit, x > 0); 1 - 0.5/ln 2 = 0.27865;
        # 1 - 0.5/ln 3 = 0.54488; equal errors -> 0.27865 / 0.82353 = 0.33836
        (
            "inverse_log",
            [0.5, 0.5, 0.5],
            [1, 2, 3],
            [0, (1 - 0.5 / LN2) / (2 - 0.5 / LN2 - 0.5 / LN3), 0.6616377],
        ),
        # sigmoid(0.27865) = 0.56922, sigmoid(0.54488) = 0.63295, depth 1 -> 0;
        # 0.56922 / 1.20216 = 0.47349
        (
            "sigmoid_inverse_log",
            [0.5, 0.5, 0.5],
            [1, 2, 3],
            [
                0,
                sigmoid(1 - 0.5 / LN2)
                / (sigmoid(1 - 0.5 / LN2) + sigmoid(1 - 0.5 / LN3)),
                0.5265069,
            ],
        ),
        ("none", [0.5, 0.75], [1, 5], [2 / 3, 1 / 3]),
    ],
)
def test_depth_terms_give_hand_computed_shares(term, f1, depths, expected):
    shares = class_shares(f1, depths=depths, depth_term=term, depth_weight=0.5)
    np.testing.assert_allclose(shares, expected, rtol=1e-6)


def test_depth_terms_at_zero_weight_and_negative_terms():
    # Without weight, depth 1 gets the limit 1 (or sigmoid(1)): no preference.
    np.testing.assert_allclose(depth_factor([1, 2, 3], "inverse_log", 0.0), [1, 1, 1])
    np.testing.assert_allclose(
        depth_factor([1, 4], "sigmoid_inverse_log", 0.0), [sigmoid(1)] * 2
    )
    # 1 - 1/ln 2 = -0.443 is clipped to 0; 1 - 1/ln 3 = 0.0898 stays.
    np.testing.assert_allclose(
        depth_factor([2, 3], "inverse_log", 1.0), [0, 1 - 1 / LN3]
    )
    np.testing.assert_allclose(depth_factor([1, 2], "inverse", 1.0), [0, 0.5])


def test_budget_edge_cases_are_logged(caplog):
    caplog.set_level(logging.INFO, logger="raycat.active.budget")
    assert class_budget([1.0, 1.0, 1.0], 4).tolist() == [2, 1, 1]
    assert "every category has F1 = 1" in caplog.text

    # Only top-level categories have errors and inverse_log zeroes depth 1:
    # the depth term is dropped, shares follow 1 - F1 = [0.5, 0.5, 0].
    shares = class_shares(
        [0.5, 0.5, 1.0],
        depths=[1, 1, 3],
        depth_term="inverse_log",
        depth_weight=0.5,
    )
    np.testing.assert_allclose(shares, [0.5, 0.5, 0])
    assert "ignoring the depth term this iteration" in caplog.text


def test_budget_by_id_reads_depths_from_the_taxonomy():
    tax = Taxonomy.from_paths([["A", "B"], ["A", "C"]])  # a (1), a/b, a/c (2)
    # inverse, x = 1: a gets 1 - 1/1 = 0; a/b, a/c get 1/2 each, equal errors.
    got = class_budget_by_id(
        {"a": 0.0, "a/b": 0.5, "a/c": 0.5},
        10,
        taxonomy=tax,
        depth_term="inverse",
        depth_weight=1.0,
    )
    assert got == {"a": 0, "a/b": 5, "a/c": 5}


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (
            {"f1": [0.5, math.nan], "categories": ["a", "b"]},
            r"F1 of category 'b' is NaN \(1 NaN in all\)",
        ),
        ({"f1": [1.5]}, r"F1 of category at index 0 is 1.5, outside \[0, 1\]"),
        ({"f1": [[0.5]]}, r"f1 must be a 1-D array .* got shape \(1, 1\)"),
        (
            {"f1": [0.5], "depth_term": "inverse"},
            r"depth_term='inverse' needs the category depths",
        ),
        (
            {"f1": [0.5], "depths": [1, 2]},
            r"depths has 2 entries but f1 has 1",
        ),
        (
            {"f1": [0.5], "depths": [1], "depth_term": "log"},
            r"depth_term must be one of none, inverse, inverse_log, "
            r"sigmoid_inverse_log; got 'log'",
        ),
        (
            {"f1": [0.5], "depths": [1], "depth_term": "inverse", "depth_weight": 2},
            r"depth_weight must be between 0 and 1; got 2",
        ),
        (
            {"f1": [0.5], "depths": [0], "depth_term": "inverse"},
            r"depths must be a 1-D array of category depths >= 1",
        ),
        ({"f1": [0.5], "n": -1}, r"the number of labels must be >= 0; got -1"),
    ],
)
def test_budget_errors(kwargs, match):
    kwargs = {"n": 10, **kwargs}
    with pytest.raises(ActiveLearningError, match=match):
        class_budget(kwargs.pop("f1"), kwargs.pop("n"), **kwargs)


def test_budget_by_id_and_rounding_errors():
    tax = Taxonomy.from_paths([["A"]])
    with pytest.raises(ActiveLearningError, match=r"f1 names 1 categories .* 'zz'"):
        class_budget_by_id({"zz": 0.5}, 3, taxonomy=tax)
    with pytest.raises(ActiveLearningError, match=r"shares must be non-negative"):
        largest_remainder([0.7, 0.7], 3)


# -- page ---------------------------------------------------------------------

IDS = ["p0", "p1", "p2", "p3", "p4", "p5"]
# entropy in bits: p0 1.0, p2 0.9928, p5 0.8813, p1 0.4690, p4 0.4690, p3 0.0808
P_MODEL = np.array([[0.5, 0.9, 0.45, 0.99, 0.1, 0.7]]).T
P_TEXT = np.full((6, 1), 0.5)
# disagreement |image - text|: p3 0.4, p0 0.1, the rest 0
P_IMAGE = np.array([[0.6, 0.5, 0.5, 0.1, 0.5, 0.5]]).T


def targeted_page(**kwargs) -> pd.DataFrame:
    args = {
        "categories": ["a"],
        "budgets": [2],
        "p_text": P_TEXT,
        "p_image": P_IMAGE,
        "shares": {"disagreement": 0.5, "uncertainty": 0.5},
        "uncertainty_candidates_factor": 1,
    }
    return compose_page(IDS, P_MODEL, **{**args, **kwargs})


def test_page_records_hand_computed_scores():
    page = targeted_page(rule_positive={("p3", "a")}, thresholds={"a": 0.4})
    # disagreement takes p3 (0.4); uncertainty, with factor 1, the most
    # uncertain product p0 (entropy 1 bit).
    assert page[["product_id", "strategy"]].values.tolist() == [
        ["p3", "disagreement"],
        ["p0", "uncertainty"],
    ]
    np.testing.assert_allclose(page["score"], [0.4, 1.0])
    np.testing.assert_allclose(page["p_model"], [0.99, 0.5])
    np.testing.assert_allclose(page["disagreement"], [0.4, 0.1])
    np.testing.assert_allclose(page["entropy"], binary_entropy([0.99, 0.5]))
    assert page["rule_positive"].tolist() == [True, False]
    assert page["threshold"].tolist() == [0.4, 0.4]
    assert page["also_for"].tolist() == [[], []]


def test_page_excludes_already_labeled_pairs():
    labeled = pd.DataFrame({"product_id": ["p3", "p0"], "category": ["a", "a"]})
    page = targeted_page(labeled=labeled)
    # p3 and p0 are labeled for a: disagreement falls to the zero-disagreement
    # products (lowest row first: p1); uncertainty takes p2 (0.9928).
    assert page["product_id"].tolist() == ["p1", "p2"]


def test_page_follows_the_shares():
    rng = np.random.default_rng(0)
    n = 40
    ids = np.array([f"p{i}" for i in range(n)])
    p_text, p_image = rng.random((n, 1)), rng.random((n, 1))
    page = compose_page(
        ids,
        rng.random((n, 1)),
        categories=["a"],
        budgets=[8],
        p_text=p_text,
        p_image=p_image,
        seed=3,
    )
    # 8 x [0.5, 0.25, 0.25] = [4, 2, 2]
    assert page["strategy"].value_counts().to_dict() == {
        "random": 4,
        "disagreement": 2,
        "uncertainty": 2,
    }
    assert page["product_id"].is_unique
    assert page.loc[page["strategy"] == "random", "score"].isna().all()
    unc = page[page["strategy"] == "uncertainty"]
    np.testing.assert_allclose(unc["score"], unc["entropy"])
    # disagreement takes the two largest |image - text| that random left free.
    dis = page[page["strategy"] == "disagreement"]
    np.testing.assert_allclose(dis["score"], dis["disagreement"])
    d = pd.Series(np.abs(p_image - p_text)[:, 0], index=ids)
    d = d.drop(page.loc[page["strategy"] == "random", "product_id"])
    assert dis["product_id"].tolist() == d.nlargest(2).index.tolist()


def test_page_is_deterministic_by_seed():
    rng = np.random.default_rng(1)
    ids = [f"p{i}" for i in range(60)]
    p, t, i = rng.random((60, 2)), rng.random((60, 2)), rng.random((60, 2))
    args = {"categories": ["a", "b"], "budgets": [6, 4], "p_text": t, "p_image": i}
    first = compose_page(ids, p, seed=7, **args)
    pd.testing.assert_frame_equal(first, compose_page(ids, p, seed=7, **args))
    other = compose_page(ids, p, seed=8, **args)
    assert first["product_id"].tolist() != other["product_id"].tolist()
    assert len(first) == 10 and first["product_id"].is_unique


def test_a_product_picked_twice_is_queued_once():
    # Both classes rank p0 first by disagreement: a (column 0) takes it, b
    # records itself in p0's also_for and takes its next best, p1.
    p_text = np.zeros((3, 2))
    p_image = np.array([[0.9, 0.8], [0.1, 0.5], [0.0, 0.2]])
    page = compose_page(
        ["p0", "p1", "p2"],
        np.full((3, 2), 0.5),
        categories=["a", "b"],
        budgets={"a": 1, "b": 1},
        p_text=p_text,
        p_image=p_image,
        shares={"disagreement": 1.0},
    )
    assert page[["product_id", "category"]].values.tolist() == [
        ["p0", "a"],
        ["p1", "b"],
    ]
    assert page["also_for"].tolist() == [["b"], []]


def test_missing_image_moves_the_disagreement_share(caplog):
    rng = np.random.default_rng(2)
    ids = [f"p{i}" for i in range(10)]
    page = compose_page(ids, rng.random((10, 1)), categories=["a"], budgets=[8])
    # shares without disagreement: 0.5 / 0.75 and 0.25 / 0.75 of 8 =
    # 5.33 and 2.67 -> floors 5 + 2, the one left to the larger remainder .67.
    assert page["strategy"].value_counts().to_dict() == {"random": 5, "uncertainty": 3}
    assert page["p_image"].isna().all() and page["disagreement"].isna().all()
    assert (
        "p_text and p_image not given, so disagreement (share 0.25) has no "
        "candidates; its "
        "labels go to random and uncertainty" in caplog.text
    )


def test_a_short_strategy_and_a_short_class_are_filled():
    # Disagreement is NaN (no image prediction) for all but p0: its second label
    # goes to uncertainty.  Class a has only p0..p2 unlabeled (budget 4): its
    # shortfall goes to b, so the page still has 6 items.
    ids = [f"p{i}" for i in range(8)]
    p_image = np.full((8, 2), np.nan)
    p_image[0] = 0.9
    labeled = [(f"p{i}", "a") for i in range(3, 8)]
    page = compose_page(
        ids,
        np.full((8, 2), 0.3),
        categories=["a", "b"],
        budgets=[4, 2],
        p_text=np.full((8, 2), 0.5),
        p_image=p_image,
        shares={"disagreement": 0.5, "uncertainty": 0.5},
        labeled=labeled,
    )
    assert len(page) == 6 and page["product_id"].is_unique
    assert page.groupby("category").size().to_dict() == {"a": 3, "b": 3}
    assert page.query("strategy == 'disagreement'")["product_id"].tolist() == ["p0"]


def test_a_pool_too_small_is_reported(caplog):
    page = compose_page(
        ["p0", "p1"], np.full((2, 1), 0.5), categories=["a"], budgets=[5]
    )
    assert len(page) == 2
    assert "the page has 2 of 5 items; the pool of 2 products" in caplog.text


def test_combined_strategies_on_the_page():
    # p0: d 0.1, h 1 -> product 0.1, average 0.55
    # p3: d 0.4, h 0.0808 -> product 0.0323, average 0.2404
    for how, expected in (("product", 0.1), ("average", 0.55)):
        page = targeted_page(shares={f"combined_{how}": 1.0}, budgets=[1])
        assert page["product_id"].tolist() == ["p0"]
        np.testing.assert_allclose(page["score"], [expected])


def test_combined_score_by_hand():
    # x: d 0.5, h 0.5 -> product 0.25, average 0.5
    # y: d 1.0, h 0.1 -> product 0.10, average 0.55
    d, h = np.array([0.5, 1.0]), np.array([0.5, 0.1])
    np.testing.assert_allclose(combined_score(d, h, "product"), [0.25, 0.1])
    np.testing.assert_allclose(combined_score(d, h, "average"), [0.5, 0.55])
    with pytest.raises(ActiveLearningError, match=r"how must be 'product' or 'av"):
        combined_score(d, h, "max")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (
            {"shares": {"random": 0.5, "uncertainty": 0.4}},
            r"shares must add up to 1; got 0.9 from",
        ),
        ({"shares": {"smart": 1.0}}, r"shares names unknown strategy 'smart'"),
        (
            {"shares": {"random": 1.5, "uncertainty": -0.5}},
            r"shares.uncertainty must be a number >= 0; got -0.5",
        ),
        (
            {"shares": {"disagreement": 1.0}, "p_image": None},
            r"shares put every label on disagreement, which need both p_text and "
            r"p_image, but p_image not given",
        ),
        ({"budgets": [-1]}, r"budgets must be whole numbers >= 0"),
        ({"budgets": [1, 2]}, r"budgets has shape \(2,\); expected one per categ"),
        ({"budgets": {"z": 1}}, r"budgets names category 'z', which is not among"),
        (
            {"uncertainty_candidates_factor": 0.5},
            r"uncertainty_candidates_factor must be >= 1 .* got 0.5",
        ),
        ({"thresholds": {"b": 0.5}}, r"thresholds has no entry for category 'a'"),
        ({"thresholds": 1.0}, r"thresholds must lie strictly between 0 and 1"),
        (
            {"labeled": pd.DataFrame({"product_id": ["p0"]})},
            r"labeled needs columns product_id and category; it lacks category",
        ),
        ({"labeled": [("p0",)]}, r"labeled must hold \(product_id, category\) pair"),
        ({"p_text": np.full((6, 2), 0.5)}, r"p_text has shape \(6, 2\); expected"),
        ({"categories": ["a", "a"]}, r"categories must be unique; 'a' appears"),
    ],
)
def test_page_errors(kwargs, match):
    with pytest.raises(ActiveLearningError, match=match):
        targeted_page(**kwargs)


def test_page_errors_on_bad_pool():
    with pytest.raises(ActiveLearningError, match=r"'p0' appears more than once"):
        compose_page(["p0", "p0"], np.zeros((2, 1)), categories=["a"], budgets=[1])
    bad = P_MODEL.copy()
    bad[4, 0] = np.nan
    with pytest.raises(
        ActiveLearningError,
        match=r"p_model is nan for product 'p4', category 'a'; probabilities must "
        r"lie in \[0, 1\] \(NaN is not allowed here\)",
    ):
        compose_page(IDS, bad, categories=["a"], budgets=[1])


# -- surprise -----------------------------------------------------------------

ITEMS = pd.DataFrame(
    {
        "product_id": ["p0", "p1", "p2", "p3", "p4", "p5"],
        "category": ["a"] * 6,
        "strategy": ["random"] * 2 + ["uncertainty"] * 2 + ["disagreement"] * 2,
        "p_model": [0.9, 0.2, 0.6, 0.5, 1.0, 0.3],
    }
)
LABELS = pd.DataFrame(
    {
        # p5 got no label; (p0, b) was never queued and is ignored.
        "product_id": ["p0", "p1", "p2", "p3", "p4", "p0"],
        "category": ["a"] * 5 + ["b"],
        "value": [1, 1, 0, 1, 0, 0],
    }
)
# Cross-entropies, natural log:
# p0: 0.9 vs 1 -> -ln 0.9 = 0.10536, no surprise
# p1: 0.2 vs 1 -> -ln 0.2 = 1.60944, surprise
# p2: 0.6 vs 0 -> -ln 0.4 = 0.91629, surprise
# p3: 0.5 vs 1 -> -ln 0.5 = 0.69315, no surprise (0.5 >= threshold 0.5)
# p4: 1.0 vs 0 -> clipped to 1 - 1e-7: -ln 1e-7 = 16.11810, surprise
CE = {"p0": 0.10536, "p1": 1.60944, "p2": 0.91629, "p3": 0.69315, "p4": 16.11810}


def test_surprise_analysis_by_hand(caplog):
    caplog.set_level(logging.INFO, logger="raycat.active.surprise")
    got = surprise_analysis(ITEMS, LABELS)
    assert got.index.tolist() == ["random", "disagreement", "uncertainty"]
    assert got["queued"].tolist() == [2, 2, 2]
    assert got["labels"].tolist() == [2, 1, 2]
    assert got["surprises"].tolist() == [1, 1, 1]
    np.testing.assert_allclose(
        got["cross_entropy_sum"],
        [CE["p0"] + CE["p1"], CE["p4"], CE["p2"] + CE["p3"]],
        atol=1e-5,
    )
    np.testing.assert_allclose(
        got["cross_entropy_mean"],
        [(CE["p0"] + CE["p1"]) / 2, CE["p4"], (CE["p2"] + CE["p3"]) / 2],
        atol=1e-5,
    )
    np.testing.assert_allclose(
        got["surprise_cross_entropy_sum"], [CE["p1"], CE["p4"], CE["p2"]], atol=1e-5
    )
    np.testing.assert_allclose(
        got["surprise_cross_entropy_per_label"],
        [CE["p1"] / 2, CE["p4"], CE["p2"] / 2],
        atol=1e-5,
    )
    assert "clipped 1 predictions to [1e-07, 1 - 1e-07]" in caplog.text
    assert "1 labels are for (product, category) pairs that were not queued" in (
        caplog.text
    )


def test_surprise_uses_per_category_thresholds():
    # With threshold 0.55, p3 (0.5) was predicted out and labeled in: a surprise.
    got = surprise_analysis(ITEMS, LABELS, thresholds={"a": 0.55})
    assert got.loc["uncertainty", "surprises"] == 2
    np.testing.assert_allclose(
        got.loc["uncertainty", "surprise_cross_entropy_sum"],
        CE["p2"] + CE["p3"],
        atol=1e-5,
    )


@pytest.mark.parametrize(
    ("items", "labels", "match"),
    [
        (
            ITEMS.assign(p_model=[0.9, 0.2, 0.6, 0.5, 1.2, 0.3]),
            LABELS,
            r"items row 4 \('p4', 'a'\) has p_model 1.2; the earlier prediction",
        ),
        (
            ITEMS,
            LABELS.assign(value=[1, 1, 2, 1, 0, 0]),
            r"labels row 2 \('p2', 'a'\) has value 2; a label is 0",
        ),
        (ITEMS.drop(columns="strategy"), LABELS, r"items lacks column 'strategy'"),
        (
            pd.concat([ITEMS, ITEMS.head(1)]),
            LABELS,
            r"items queue \('p0', 'a'\) more than once",
        ),
    ],
)
def test_surprise_errors(items, labels, match):
    with pytest.raises(ActiveLearningError, match=match):
        surprise_analysis(items, labels)


# -- decision -----------------------------------------------------------------


def test_decision_picks_a_clear_winner_and_serializes():
    analysis = surprise_analysis(ITEMS, LABELS)
    # disagreement 16.118 per label against uncertainty 0.916 / 2 = 0.458
    got = decide_strategy(analysis, ITEMS, LABELS, margin=0.2, random_share=0.4)
    assert isinstance(got, StrategyDecision)
    assert got.chosen == "disagreement"
    assert got.shares == {"random": 0.4, "disagreement": 0.6}
    assert "disagreement wins" in got.reason
    data = json.loads(json.dumps(got.to_dict()))
    assert data["analysis"]["disagreement"]["labels"] == 1


# Both targeted strategies have one surprise of -ln 0.1 = 2.30259 per label, so
# neither wins.  disagreement and entropy are set by hand for the ranking:
#          d    h    product average  surprise CE
#   i1    1.0  0.1   0.10    0.55     2.30259 (0.9 labeled 0)
#   i2    0.5  0.5   0.25    0.50     2.30259 (0.1 labeled 1)
#   i3    0.4  0.4   0.16    0.40     0.69315 (0.5 labeled 0)
#   i4    0.0  0.9   0.00    0.45     0       (0.2 labeled 0, no surprise)
# top half (2) by product: i2, i3 -> 2.30259 + 0.69315 = 2.99573
# top half by average:     i1, i2 -> 2.30259 + 2.30259 = 4.60517 -> average
TIED_ITEMS = pd.DataFrame(
    {
        "product_id": ["i1", "i2", "i3", "i4"],
        "category": ["a"] * 4,
        "strategy": ["disagreement", "uncertainty", "random", "random"],
        "p_model": [0.9, 0.1, 0.5, 0.2],
        "disagreement": [1.0, 0.5, 0.4, 0.0],
        "entropy": [0.1, 0.5, 0.4, 0.9],
    }
)
TIED_LABELS = pd.DataFrame(
    {
        "product_id": ["i1", "i2", "i3", "i4"],
        "category": ["a"] * 4,
        "value": [0, 1, 0, 0],
    }
)


def test_decision_combines_when_no_strategy_wins():
    analysis = surprise_analysis(TIED_ITEMS, TIED_LABELS)
    got = decide_strategy(analysis, TIED_ITEMS, TIED_LABELS, margin=0.2)
    assert got.chosen == "combined_average"
    assert got.shares == {"random": 0.5, "combined_average": 0.5}
    assert got.combination_scores == pytest.approx(
        {"product": 2.99573, "average": 4.60517}, abs=1e-5
    )
    assert got.reason.startswith("no clear winner")

    forced = decide_strategy(
        analysis, TIED_ITEMS, TIED_LABELS, margin=0.2, combine="product"
    )
    assert forced.chosen == "combined_product"
    assert forced.combination_scores == {}


def test_decision_without_disagreement_labels():
    items = ITEMS[ITEMS["strategy"] != "disagreement"]
    got = decide_strategy(surprise_analysis(items, LABELS), items, LABELS, margin=0)
    assert got.chosen == "uncertainty"
    assert got.to_dict()["measures"]["disagreement"] is None
    assert "disagreement got no labels back" in got.reason


def test_decision_without_any_targeted_labels_keeps_an_even_split():
    items = ITEMS[ITEMS["strategy"] == "random"]
    got = decide_strategy(surprise_analysis(items, LABELS), items, LABELS, margin=0)
    assert got.chosen == "unchanged"
    assert got.shares == {"random": 0.5, "disagreement": 0.25, "uncertainty": 0.25}


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"margin": -1}, r"decision_margin must be a number >= 0 .* got -1"),
        ({"combine": "max"}, r"combine must be 'auto', 'product' or 'average'"),
        ({"random_share": 2}, r"random_share must lie in \[0, 1\]; got 2"),
    ],
)
def test_decision_errors(kwargs, match):
    analysis = surprise_analysis(TIED_ITEMS, TIED_LABELS)
    with pytest.raises(ActiveLearningError, match=match):
        decide_strategy(analysis, TIED_ITEMS, TIED_LABELS, **{"margin": 0, **kwargs})
    with pytest.raises(ActiveLearningError, match=r"items lack column 'disagreem"):
        decide_strategy(
            analysis, TIED_ITEMS.drop(columns="disagreement"), TIED_LABELS, margin=0.2
        )


# -- config -------------------------------------------------------------------


def test_config_defaults_and_validation():
    cfg = ActiveLearningConfig()
    assert cfg.labels_per_iteration == 10_000
    assert cfg.shares == {"random": 0.5, "disagreement": 0.25, "uncertainty": 0.25}
    assert (cfg.depth_term, cfg.combine, cfg.uncertainty_candidates_factor) == (
        "none",
        "auto",
        3.0,
    )
    with pytest.raises(
        ValidationError, match=r"active_learning.shares must add up to 1; got 0.75"
    ):
        ActiveLearningConfig(shares={"random": 0.5, "uncertainty": 0.25})
    with pytest.raises(ValidationError, match=r"depth_weight"):
        ActiveLearningConfig(depth_weight=1.5)
    with pytest.raises(ValidationError, match=r"Extra inputs are not permitted"):
        ActiveLearningConfig(label_per_iteration=5)
    assert check_shares({"uncertainty": 0.5, "random": 0.5}) == {
        "random": 0.5,
        "uncertainty": 0.5,
    }
