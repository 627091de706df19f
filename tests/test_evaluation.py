import json
import logging

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score

from raycat.evaluation import (
    EvaluationError,
    choose_thresholds,
    evaluate,
    metrics_table,
    predict_labels,
)
from raycat.taxonomy import Taxonomy

# ids (columns): a, e, a/b, a/c, a/c/d; depths 1, 1, 2, 2, 3.
PATHS = [["A", "B"], ["A", "C", "D"], ["E"]]

# Three products, labels closed under ancestors.
Y_TRUE = np.array(
    [
        [1, 0, 1, 0, 0],  # a/b
        [1, 0, 0, 1, 1],  # a/c/d
        [0, 1, 0, 0, 0],  # e
    ]
)
PROBS = np.array(
    [
        [0.9, 0.1, 0.8, 0.2, 0.1],  # decides {a, a/b}: right
        [0.8, 0.3, 0.6, 0.7, 0.2],  # decides {a, a/b, a/c}: extra a/b, misses a/c/d
        [0.4, 0.6, 0.1, 0.1, 0.7],  # decides {e, a/c/d}, closed to {e, a/c/d, a/c, a}
    ]
)


@pytest.fixture
def tax() -> Taxonomy:
    return Taxonomy.from_paths(PATHS)


@pytest.fixture
def result(tax) -> dict:
    return evaluate(Y_TRUE, PROBS, tax)


# -- predictions ----------------------------------------------------------------


def test_predict_labels_closes_decisions_under_ancestors(tax):
    pred = predict_labels(PROBS, 0.5, tax)

    assert pred.dtype == np.uint8
    assert pred.tolist() == [
        [1, 0, 1, 0, 0],
        [1, 0, 1, 1, 0],
        # a/c/d alone passes 0.5; a/c and a follow from it.
        [1, 1, 0, 1, 1],
    ]


def test_predict_labels_uses_one_threshold_per_category(tax):
    probs = np.array([[0.2, 0.2, 0.2, 0.2, 0.2]])

    pred = predict_labels(probs, [0.9, 0.1, 0.9, 0.2, 0.9], tax)

    # e passes 0.1 and a/c passes 0.2 (>=); a/c pulls in its parent a.
    assert pred.tolist() == [[1, 1, 0, 1, 0]]


# -- flat metrics ---------------------------------------------------------------


def test_micro_and_macro_f1_on_three_products(result):
    # Per category (hits / predicted / support), from the decisions above:
    #   a      2/3/2 -> F1 = 2*2/(3+2) = 0.8
    #   e      1/1/1 -> F1 = 1
    #   a/b    1/2/1 -> F1 = 2/3
    #   a/c    1/2/1 -> F1 = 2/3
    #   a/c/d  0/1/1 -> F1 = 0
    # Flat micro counts only the most specific labels of each product:
    #   p1 true {a/b}, predicted {a/b}: 1 hit
    #   p2 true {a/c/d}, predicted {a/b, a/c}: 0 hits
    #   p3 true {e}, predicted {e, a/c/d}: 1 hit
    # hits 2, predicted 5, true 3: P = 2/5, R = 2/3, F1 = 2*2/(5+3) = 1/2.
    assert result["micro_precision"] == pytest.approx(2 / 5)
    assert result["micro_recall"] == pytest.approx(2 / 3)
    assert result["micro_f1"] == pytest.approx(1 / 2)
    # Hierarchical: the closed sets, totals 5/9/6 from the table above:
    # hP = 5/9, hR = 5/6, hF = 2*5/(9+6) = 2/3.
    assert result["hierarchical_precision"] == pytest.approx(5 / 9)
    assert result["hierarchical_recall"] == pytest.approx(5 / 6)
    assert result["hierarchical_f1"] == pytest.approx(2 / 3)
    # macro: (0.8 + 1 + 2/3 + 2/3 + 0) / 5 = 47/75; every category has support.
    assert result["macro_f1"] == pytest.approx(47 / 75)
    assert result["macro_f1_all"] == pytest.approx(47 / 75)
    assert result["n_products"] == 3
    assert result["n_categories"] == 5


def test_macro_f1_leaves_out_categories_without_support(tax):
    y = np.array([[1, 0, 1, 0, 0], [1, 0, 0, 0, 0]])  # a/b, a
    probs = np.array([[0.9, 0.0, 0.9, 0.0, 0.0], [0.9, 0.9, 0.0, 0.0, 0.0]])

    out = evaluate(y, probs, tax)

    # a: F1 1; a/b: F1 1; e predicted once with no support: F1 0; a/c, a/c/d
    # neither predicted nor true: F1 undefined, counted 0 in macro_f1_all.
    assert out["macro_f1"] == pytest.approx(1.0)  # (1 + 1) / 2
    assert out["macro_f1_all"] == pytest.approx(0.4)  # (1 + 0 + 1 + 0 + 0) / 5
    e = out["per_category"][1]
    assert e["category"] == "e"
    assert (e["support"], e["precision"], e["recall"], e["f1"]) == (0, 0.0, 0.0, 0.0)
    assert e["average_precision"] is None


def test_per_category_entries(result):
    rows = {row["category"]: row for row in result["per_category"]}

    assert list(rows) == ["a", "e", "a/b", "a/c", "a/c/d"]
    assert rows["a"]["precision"] == pytest.approx(2 / 3)
    assert rows["a"]["recall"] == 1.0
    assert rows["a"]["f1"] == pytest.approx(0.8)
    assert rows["a/c/d"]["depth"] == 3
    assert rows["a/c/d"]["support"] == 1
    assert rows["a/c/d"]["threshold"] == 0.5
    # a/c/d scores 0.1, 0.2, 0.7; its one positive (0.2) ranks second:
    # precision 1/2 at recall 1, so AP = 0.5.
    assert rows["a/c/d"]["average_precision"] == pytest.approx(0.5)


# -- hierarchical metrics -----------------------------------------------------


def test_hierarchical_metrics_give_partial_credit_for_a_wrong_leaf(tax):
    y = tax.multi_hot([["a/c/d"], ["a/b"]])
    probs = np.array(
        [
            [0.9, 0.0, 0.0, 0.9, 0.1],  # stops at a/c, the parent of the truth
            [0.9, 0.0, 0.2, 0.1, 0.8],  # a/c/d instead of a/b: only a is shared
        ]
    )

    out = evaluate(y, probs, tax)

    # P1 = {a, a/c}, T1 = {a, a/c, a/c/d}: 2 shared.
    # P2 = {a, a/c, a/c/d}, T2 = {a, a/b}: 1 shared.
    # hP = (2 + 1) / (2 + 3) = 3/5, hR = (2 + 1) / (3 + 2) = 3/5, hF = 3/5.
    assert out["hierarchical_precision"] == pytest.approx(3 / 5)
    assert out["hierarchical_recall"] == pytest.approx(3 / 5)
    assert out["hierarchical_f1"] == pytest.approx(3 / 5)


def test_per_level_metrics(result):
    levels = result["per_level"]

    assert list(levels) == ["1", "2", "3"]
    # Depth 1 (a, e): hits 2+1, predicted 3+1, support 2+1.
    # hP = 3/4, hR = 3/3, hF = 2*3/(4+3) = 6/7; macro = (0.8 + 1)/2.
    # Flat: the only most-specific label at depth 1 is p3's e, predicted: F1 1.
    one = levels["1"]
    assert one["hierarchical_precision"] == pytest.approx(3 / 4)
    assert one["hierarchical_recall"] == pytest.approx(1.0)
    assert one["hierarchical_f1"] == pytest.approx(6 / 7)
    assert one["micro_f1"] == pytest.approx(1.0)
    assert one["macro_f1"] == pytest.approx(0.9)
    assert one["n_categories"] == 2
    # Depth 2 (a/b, a/c): hits 1+1, predicted 2+2, support 1+1.
    # hP = 1/2, hR = 1, F1 = 2*2/(4+2) = 2/3; macro = (2/3 + 2/3)/2.
    # Flat: true {a/b} (p1); predicted a/b (p1), a/b and a/c (p2):
    # hits 1, predicted 3, true 1, F1 = 2/(3+1) = 1/2.
    two = levels["2"]
    assert two["hierarchical_precision"] == pytest.approx(1 / 2)
    assert two["hierarchical_recall"] == pytest.approx(1.0)
    assert two["hierarchical_f1"] == pytest.approx(2 / 3)
    assert two["micro_f1"] == pytest.approx(1 / 2)
    assert two["macro_f1"] == pytest.approx(2 / 3)
    # Depth 3 (a/c/d): no hit, 1 predicted, 1 true.
    three = levels["3"]
    assert three["hierarchical_precision"] == 0.0
    assert three["hierarchical_recall"] == 0.0
    assert three["micro_f1"] == 0.0


def test_result_is_json_serializable(result):
    assert json.loads(json.dumps(result))["micro_f1"] == pytest.approx(1 / 2)


def test_labels_not_closed_are_closed_with_a_warning(tax, caplog):
    y_leaf_only = np.array([[0, 0, 1, 0, 0]])  # a/b without its parent a
    probs = np.array([[0.9, 0.0, 0.9, 0.0, 0.0]])

    with caplog.at_level(logging.WARNING, logger="raycat.evaluation"):
        out = evaluate(y_leaf_only, probs, tax)

    assert "not closed under ancestors for 1 of 1 products" in caplog.text
    assert out["micro_f1"] == 1.0


# -- thresholds -----------------------------------------------------------------


def test_thresholds_chosen_on_validation(tax):
    y = np.array(
        [
            [1, 0, 1, 0, 0],
            [1, 0, 1, 0, 0],
            [0, 1, 0, 0, 0],
            [0, 1, 0, 0, 0],
        ]
    )
    probs = np.array(
        [
            # a: positives 0.9, negatives 0.05 -> F1 1 for every grid value
            #    0.10 ... 0.90, so the tie goes to the default 0.5.
            # a/b: positives all 0.3, negatives 0.1 and 0.2 -> F1 1 only for
            #    thresholds in (0.2, 0.3]: 0.25 or 0.30; 0.30 is nearer 0.5.
            # a/c, a/c/d: no positives -> default.
            [0.9, 0.2, 0.3, 0.4, 0.0],
            [0.9, 0.2, 0.3, 0.4, 0.0],
            [0.05, 0.2, 0.1, 0.0, 0.0],
            [0.05, 0.2, 0.2, 0.0, 0.0],
        ]
    )

    thr = choose_thresholds(y, probs)

    assert thr[0] == 0.5
    assert thr[2] == pytest.approx(0.3)
    assert thr[3] == 0.5 and thr[4] == 0.5
    # e scores 0.2 for everyone: any threshold <= 0.2 gives F1 = 2*2/(4+2);
    # 0.20 is the grid value nearest the default.
    assert thr[1] == pytest.approx(0.2)
    assert predict_labels(probs, thr, tax)[:, 2].tolist() == [1, 1, 0, 0]
    assert choose_thresholds(y, probs, default=0.7)[0] == pytest.approx(0.7)
    assert choose_thresholds(y, probs, grid="observed")[2] == pytest.approx(0.3)


def test_thresholds_keep_default_below_min_positives():
    y = np.array([[1, 1], [0, 1], [0, 0]])
    probs = np.array([[0.3, 0.3], [0.1, 0.3], [0.1, 0.1]])

    thr = choose_thresholds(y, probs, default=0.5, min_positives=2)

    # Column 0 has one positive (< 2): default.  Column 1 has two at 0.3 and
    # a negative at 0.1: 0.30 is the best grid value nearest 0.5.
    assert thr.tolist() == pytest.approx([0.5, 0.3])


def test_thresholds_with_an_explicit_grid():
    y = np.array([[1], [0]])
    probs = np.array([[0.45], [0.2]])

    # 0.1 predicts both (F1 = 2*1/(2+1) = 2/3), 0.4 only the positive (F1 1),
    # 0.9 neither (F1 0).
    assert choose_thresholds(y, probs, grid=[0.9, 0.1, 0.4]).tolist() == [0.4]


def _f1(truth: np.ndarray, pred: np.ndarray) -> float:
    return 2 * np.sum(truth & pred) / (np.sum(truth) + np.sum(pred))


@pytest.mark.parametrize("grid", [None, "observed"])
def test_chosen_thresholds_reach_the_best_f1_on_a_random_case(grid):
    rng = np.random.default_rng(3)
    y = rng.random((80, 6)) < 0.3
    probs = np.round(rng.random((80, 6)), 2)

    thr = choose_thresholds(y, probs, grid=grid)

    for j in range(6):
        if grid is None:
            candidates = np.round(np.arange(0.05, 0.951, 0.05), 2)
        else:
            candidates = np.unique(probs[y[:, j], j])
        best = max(_f1(y[:, j], probs[:, j] >= t) for t in candidates)
        assert _f1(y[:, j], probs[:, j] >= thr[j]) == pytest.approx(best)


# -- average precision ----------------------------------------------------------


def test_average_precision_matches_sklearn():
    rng = np.random.default_rng(7)
    tax = Taxonomy.from_paths([["A", "B"], ["A", "C"], ["D"], ["D", "E", "F"]])
    leaves = rng.choice(tax.leaves, size=60)
    y = tax.multi_hot([[leaf] for leaf in leaves])
    # One decimal makes many ties, the case where AP definitions differ.
    probs = np.round(rng.random(y.shape), 1)

    out = evaluate(y, probs, tax)

    for j, row in enumerate(out["per_category"]):
        expected = average_precision_score(y[:, j], probs[:, j])
        assert row["average_precision"] == pytest.approx(expected), row["category"]
    aps = [row["average_precision"] for row in out["per_category"]]
    assert out["macro_average_precision"] == pytest.approx(np.mean(aps))


# -- metrics table --------------------------------------------------------------


def test_metrics_table_has_one_row_per_model(tax, result):
    other = evaluate(Y_TRUE, PROBS, tax, thresholds=0.15)

    table = metrics_table({"base": result, "low": other})

    assert isinstance(table, pd.DataFrame)
    assert table.index.tolist() == ["base", "low"]
    assert table.loc["base", "micro_f1"] == pytest.approx(1 / 2)
    assert table.loc["base", "level_1_micro_f1"] == pytest.approx(1.0)
    assert table.columns[-1] == "n_products"
    assert metrics_table({}).empty


def test_metrics_table_rejects_foreign_dicts(result):
    with pytest.raises(EvaluationError, match=r"results\['x'\] lacks 'micro_f1'"):
        metrics_table({"x": {"f1": 1.0}})


# -- bad input ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("y", "probs", "message"),
    [
        (Y_TRUE[0], PROBS, r"y_true must be a 2-D array .* got shape \(5,\)"),
        (Y_TRUE, PROBS[:, :4], r"same shape .* y_true \(3, 5\) and probs \(3, 4\)"),
        (Y_TRUE[:0], PROBS[:0], "y_true has no rows"),
        (Y_TRUE * 2, PROBS, r"only 0 and 1; got 2 at row 0, column 0"),
        (Y_TRUE / 2, PROBS, r"only 0 and 1; got 0.5 at row 0, column 0"),
        (Y_TRUE, PROBS * 2, r"probs must lie in \[0, 1\]; got 1.8 at row 0"),
        (Y_TRUE, np.where(PROBS > 0.85, np.nan, PROBS), r"got nan at row 0, col"),
    ],
)
def test_bad_matrices_are_rejected(tax, y, probs, message):
    with pytest.raises(EvaluationError, match=message):
        evaluate(y, probs, tax)


def test_matrix_must_match_the_taxonomy(tax):
    y = np.zeros((2, 4), dtype=int)

    with pytest.raises(EvaluationError, match="4 columns but the taxonomy has 5"):
        evaluate(y, np.zeros((2, 4)), tax)
    with pytest.raises(EvaluationError, match="4 columns but the taxonomy has 5"):
        predict_labels(np.zeros((2, 4)), 0.5, tax)


def test_bad_thresholds_are_rejected(tax):
    with pytest.raises(EvaluationError, match=r"shape \(5,\), one per category"):
        evaluate(Y_TRUE, PROBS, tax, thresholds=[0.5, 0.5])
    with pytest.raises(EvaluationError, match="finite numbers; got nan for column 1"):
        predict_labels(PROBS, [0.5, np.nan, 0.5, 0.5, 0.5], tax)


def test_bad_threshold_settings_are_rejected():
    with pytest.raises(EvaluationError, match=r"default must be in \[0, 1\]; got 2"):
        choose_thresholds(Y_TRUE, PROBS, default=2)
    with pytest.raises(EvaluationError, match="grid must be None, 'observed'"):
        choose_thresholds(Y_TRUE, PROBS, grid="distinct")
    with pytest.raises(EvaluationError, match=r"grid thresholds .* got \[1.5\]"):
        choose_thresholds(Y_TRUE, PROBS, grid=[0.5, 1.5])
    with pytest.raises(EvaluationError, match="min_positives must be >= 0; got -1"):
        choose_thresholds(Y_TRUE, PROBS, min_positives=-1)


def test_evaluation_error_is_a_value_error():
    assert issubclass(EvaluationError, ValueError)
