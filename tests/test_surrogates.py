"""Surrogates, fidelity and rules: known answers."""
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.tree import DecisionTreeClassifier

from hybrid.distill import fit_surrogates
from hybrid.fidelity import bootstrap_fidelity, fidelity_scores, kappa, kappa_rows
from hybrid.rules import apply_rules, extract_rules, format_rules
from hybrid.surrogates import Surrogate


def _teacher_data(n=3000, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 6)).astype(np.float32)
    y = (X[:, 0] > 0).astype(int) * 2 + (X[:, 1] > 0.5).astype(int) + (X[:, 2] > 1).astype(int)
    teacher = DecisionTreeClassifier(max_depth=3, random_state=0).fit(X, y % 5)
    return X, teacher


def test_tree_distilled_from_tree_teacher_reaches_fidelity_one():
    X, teacher = _teacher_data()
    y_t = teacher.predict(X)
    student = Surrogate("tree", n_classes=5, max_depth=3, min_samples_leaf=1).fit(X, y_t)
    assert (student.predict(X) == y_t).mean() == 1.0
    X_new, _ = _teacher_data(seed=1)
    assert (student.predict(X_new) == teacher.predict(X_new)).mean() > 0.99


def test_shuffled_targets_give_chance_fidelity():
    X, teacher = _teacher_data()
    y_t = teacher.predict(X)
    rng = np.random.default_rng(0)
    s = Surrogate("tree", n_classes=5, max_depth=4).fit(X[:2000], rng.permutation(y_t[:2000]))
    scores = fidelity_scores(y_t[2000:], s.predict(X[2000:]))
    assert abs(scores["kappa"]) < 0.08


def test_all_families_keep_the_full_class_space_and_sklearn_api():
    X, teacher = _teacher_data()
    y = teacher.predict(X)
    fitted, sweep = fit_surrogates(X[:2000], y[:2000], X[2000:], y[2000:], n_classes=7)
    assert set(fitted) == {"majority", "logistic", "tree", "xgboost"}
    assert [r["depth"] for r in sweep] == list(range(1, 13))
    for name, (s, _) in fitted.items():
        p = s.predict_proba(X[2000:])
        assert p.shape == (1000, 7) and np.allclose(p.sum(1), 1, atol=1e-5)
        assert p[:, [5, 6]].max() == 0  # classes the teacher never predicts
    assert (fitted["xgboost"][0].predict(X[2000:]) == y[2000:]).mean() > 0.97
    assert clone(fitted["tree"][0]).get_params()["kind"] == "tree"
    with pytest.raises(ValueError, match="fitted on 6 features"):
        fitted["tree"][0].predict(X[:, :5])


def test_transfer_set_teaches_xgboost_and_the_tree_not_the_logistic_model():
    """60 teacher-labelled train points are too few; 2,000 more (the transfer set) lift the agreement
    of XGBoost and of the tree with a depth-3 tree teacher on new points (the tree then recovers it),
    while the logistic model is fitted on train alone."""
    X, teacher = _teacher_data()
    y = teacher.predict(X)
    Xtr, Xtf, Xva, Xnew = X[:60], X[60:2060], X[2060:2500], X[2500:]
    base, _ = fit_surrogates(Xtr, y[:60], Xva, y[2060:2500], n_classes=5, n_jobs=1)
    more, _ = fit_surrogates(Xtr, y[:60], Xva, y[2060:2500], n_classes=5, n_jobs=1, transfer=(Xtf, y[60:2060]))
    agree = {k: [(f[k][0].predict(Xnew) == y[2500:]).mean() for f in (base, more)] for k in base}
    assert agree["xgboost"][1] > 0.95 > agree["xgboost"][0] + 0.05
    assert more["xgboost"][0].n_samples_fit_ == more["tree"][0].n_samples_fit_ == 2060
    assert agree["tree"][1] == 1.0 > agree["tree"][0]
    for k in ("logistic", "majority"):
        assert more[k][0].n_samples_fit_ == 60 and agree[k][0] == agree[k][1]


def test_rules_reproduce_the_tree_exactly():
    X, teacher = _teacher_data()
    y = teacher.predict(X)
    rng = np.random.default_rng(2)
    noisy = np.where(rng.random(len(y)) < 0.2, rng.integers(0, 5, len(y)), y)
    s = Surrogate("tree", n_classes=5, max_depth=6).fit(X, noisy)
    names = [f"f{i}" for i in range(6)]
    rules = extract_rules(s, X, noisy, names)
    assert len(rules) == s.model_.get_n_leaves()
    assert np.array_equal(apply_rules(rules, X), s.predict(X))
    assert sum(r.support for r in rules) == len(X)
    text = format_rules(rules, [f"class{k}" for k in range(5)], klass=2, min_support=10)
    assert "THEN class2" in text and "THEN class1" not in text


def test_a_tree_fitted_to_a_one_class_cnn_is_one_unconditional_rule():
    """A collapsed CNN (one class for every image) still gets rules, a rule path and a complexity."""
    from hybrid.explain import rule_path

    X = np.random.default_rng(0).random((50, 3))
    s = Surrogate("tree", n_classes=7).fit(X, np.full(50, 5))
    rules = extract_rules(s, X[:20], np.r_[np.full(15, 5), np.full(5, 4)], ["a", "b", "c"])
    assert len(rules) == 1 and rules[0].klass == 5 and rules[0].bounds == {}
    assert rules[0].support == 20 and rules[0].agreement == 0.75 and rules[0].train_support == 50
    assert np.array_equal(apply_rules(rules, X), s.predict(X))
    assert format_rules(rules, [f"c{k}" for k in range(7)]).startswith("IF  (always)\nTHEN c5   [support 20")
    assert rule_path(s, X[0], ["a", "b", "c"])[-1] == "→ class 5"
    assert s.complexity() == {"measure": "constant", "value": 1, "depth": 0, "text": "1 constant"}


def test_majority_baseline_has_zero_kappa():
    y = np.array([5] * 70 + [4] * 30)
    s = Surrogate("majority", n_classes=7).fit(np.zeros((100, 2)), y)
    sc = fidelity_scores(y, s.predict(np.zeros((100, 2))))
    assert sc["fidelity"] == 0.7 and sc["kappa"] == 0.0 and sc["non_majority_fidelity"] == 0.0


def test_vectorised_bootstrap_kappa_equals_sklearn_row_by_row():
    from sklearn.metrics import cohen_kappa_score

    rng = np.random.default_rng(3)
    a = rng.integers(0, 7, (40, 300))
    b = np.where(rng.random((40, 300)) < 0.6, a, rng.integers(0, 7, (40, 300)))  # agree 60% + chance
    b[0] = a[0]  # perfect agreement: kappa 1
    a[1], b[1] = 5, 5  # a single label on both sides: kappa defined as 0, as `kappa`
    got = kappa_rows(a, b)
    want = [cohen_kappa_score(a[r], b[r]) for r in range(2, 40)]
    np.testing.assert_allclose(got[2:], want, atol=1e-12)
    assert got[0] == pytest.approx(1.0) and got[1] == 0.0 == kappa(a[1], b[1])
    ci = bootstrap_fidelity(a[2], b[2], n_boot=400)
    assert ci["kappa_ci95"][0] < cohen_kappa_score(a[2], b[2]) < ci["kappa_ci95"][1]
    assert ci["fidelity_ci95"][0] < (a[2] == b[2]).mean() < ci["fidelity_ci95"][1]


def test_ablation_ranks_the_feature_the_teacher_uses_first():
    from hybrid.distill import concept_ablation

    rng = np.random.default_rng(3)
    X = rng.normal(size=(1500, 4)).astype(np.float32)
    y = (X[:, 2] > 0).astype(int)
    rows = concept_ablation(X[:1000], y[:1000], X[1000:], y[1000:], ["a", "b", "c", "d"], n_classes=2,
                            kind="tree", params={"max_depth": 3})
    assert rows[0]["concept"] == "c" and rows[0]["kappa_drop"] > 0.5
    assert all(abs(r["kappa_drop"]) < 0.05 for r in rows[1:])


def test_complexity_reads_out_trees_and_depth_leaves_and_coefficients():
    """One boosting round grows one tree per class: 20 rounds × 5 classes = 100 trees of depth ≤ 3."""
    X, teacher = _teacher_data()
    y = teacher.predict(X)
    c = Surrogate("xgboost", n_classes=5, max_depth=3, n_estimators=20).fit(X, y).complexity()
    assert (c["trees"], c["depth"], c["value"]) == (100, 3, 300)
    assert c["text"] == "100 trees × depth 3"
    tree = Surrogate("tree", n_classes=5, max_depth=3, min_samples_leaf=1).fit(X, y)
    assert tree.complexity()["text"] == f"{tree.model_.get_n_leaves()} leaves"
    assert Surrogate("logistic", n_classes=5).fit(X, y).complexity()["text"].endswith("non-zero coefficients")
