import numpy as np
import pytest

from raycat.errors import TaxonomyError
from raycat.taxonomy import Taxonomy, slugify

PATHS = [["A", "B"], ["A", "C", "D"], ["E"]]


@pytest.fixture
def tax() -> Taxonomy:
    return Taxonomy.from_paths(PATHS)


def test_ids_are_path_based_and_ordered_by_depth(tax):
    assert tax.ids == ["a", "e", "a/b", "a/c", "a/c/d"]
    assert tax.path_str("a/c/d") == "A > C > D"
    assert tax.depth("a/c/d") == 3
    assert slugify("Curtains & Accessories") == "curtains-accessories"


def test_tree_queries(tax):
    assert tax.ancestors("a/c/d") == ["a/c", "a"]
    assert tax.descendants("a") == ["a/b", "a/c", "a/c/d"]
    assert tax.leaves == ["e", "a/b", "a/c/d"]
    assert tax.roots == ["a", "e"]
    assert tax.top_level("a/c/d") == "a"
    assert tax.level_sizes() == {1: 2, 2: 2, 3: 1}
    assert tax.resolve("A > C") == "a/c"
    assert tax.resolve("a/c") == "a/c"


def test_closure_and_multi_hot(tax):
    assert tax.closure(["a/c/d"]) == {"a", "a/c", "a/c/d"}
    y = tax.multi_hot([["a/c/d"], ["e"], []])
    assert y.tolist() == [[1, 0, 0, 1, 1], [0, 1, 0, 0, 0], [0, 0, 0, 0, 0]]


def test_consistent_min_and_max(tax):
    p = np.array([[0.2, 0.5, 0.9, 0.4, 0.7]])
    lo = tax.consistent(p, mode="min")
    assert lo.tolist() == [[0.2, 0.5, 0.2, 0.2, 0.2]]
    hi = tax.consistent(p, mode="max")
    assert hi.tolist() == [[0.9, 0.5, 0.9, 0.7, 0.7]]
    assert tax.is_consistent(lo) and tax.is_consistent(hi)
    assert not tax.is_consistent(p)
    with pytest.raises(TaxonomyError, match=r"shape \(n_products, 5\)"):
        tax.consistent(np.zeros((2, 3)))


def test_unknown_category_is_named(tax):
    with pytest.raises(TaxonomyError, match=r"unknown category 'A > Z'"):
        tax.resolve("A > Z", where="rules.yaml, rule 3")
    with pytest.raises(TaxonomyError, match=r"unknown category id 'zzz'"):
        tax["zzz"]


def test_empty_path_names_the_row():
    with pytest.raises(TaxonomyError, match=r"paths, row 1: empty category path"):
        Taxonomy.from_paths([["A"], []])
    with pytest.raises(TaxonomyError, match=r"row 0: empty category path or empty el"):
        Taxonomy.from_paths([["A", " "]])


def test_duplicate_children_from_paths():
    with pytest.raises(TaxonomyError, match=r"row 1: duplicate children under 'a'"):
        Taxonomy.from_paths([["A", "Bed Linen"], ["A", "Bed-Linen!"]])


def test_from_edges_builds_the_same_tree(tax):
    edges = [(None, "A"), ("A", "B"), ("A", "C"), ("C", "D"), ("", "E")]
    assert Taxonomy.from_edges(edges).ids == tax.ids


def test_edges_errors_name_the_row():
    with pytest.raises(TaxonomyError, match=r"row 1: unknown parent 'X' of 'B'"):
        Taxonomy.from_edges([(None, "A"), ("X", "B")])
    with pytest.raises(TaxonomyError, match=r"row 2: duplicate child 'B' \(first seen"):
        Taxonomy.from_edges([(None, "A"), ("A", "B"), ("A", "B")])
    with pytest.raises(TaxonomyError, match=r"cycle through"):
        Taxonomy.from_edges([("B", "A"), ("A", "B")])
    with pytest.raises(TaxonomyError, match=r"row 0: cycle: 'A' is its own parent"):
        Taxonomy.from_edges([("A", "A")])
    with pytest.raises(TaxonomyError, match=r"row 1: empty child name"):
        Taxonomy.from_edges([(None, "A"), ("A", "")])


def test_save_load_round_trip(tax, tmp_path):
    tax.save(tmp_path / "t.json")
    back = Taxonomy.load(tmp_path / "t.json")
    assert back.ids == tax.ids
    assert back.path_str("a/c/d") == "A > C > D"
    assert (back.ancestor_matrix == tax.ancestor_matrix).all()
