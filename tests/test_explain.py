"""Surrogate SHAP (additivity against the surrogate's own output), rule paths, region shares."""
import numpy as np
import pytest

from hybrid.concepts import CONCEPT_NAMES, REGIONS
from hybrid.explain import (concept_region_scores, concept_units, global_importance, rule_path, shap_unit,
                            surrogate_explanation, value_labels)
from hybrid.surrogates import Surrogate


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 5)).astype(np.float32)
    y = np.where(X[:, 0] > 0.5, 2, np.where(X[:, 1] > 0, 0, 4))  # classes 1, 3, 5, 6 never predicted
    return X, y, [f"f{i}" for i in range(5)]


def test_tree_shap_adds_up_to_the_tree_probabilities(data):
    X, y, names = data
    s = Surrogate("tree", n_classes=7, max_depth=3).fit(X, y)
    e = surrogate_explanation(s, X[:20], names)
    assert e.values.shape == (20, 5, 7) and e.feature_names == names
    np.testing.assert_allclose(e.values.sum(1) + e.base_values, s.predict_proba(X[:20]), atol=1e-6)
    assert shap_unit(s.kind) == "probability"  # the unit the figures print
    assert np.all(e.values[:, :, [1, 3, 5, 6]] == 0)
    assert global_importance(e)[2:, :].max() < 1e-9  # f2..f4 carry nothing


def test_xgboost_shap_adds_up_to_the_margin(data):
    X, y, names = data
    s = Surrogate("xgboost", n_classes=7, max_depth=3, n_estimators=20).fit(X, y)
    e = surrogate_explanation(s, X[:20], names)
    margin = s.model_.predict(X[:20], output_margin=True)
    np.testing.assert_allclose((e.values.sum(1) + e.base_values)[:, s.present_], margin, atol=1e-4)
    assert shap_unit(s.kind) == "log-odds"


def test_logistic_shap_adds_up_to_the_decision_function(data):
    X, y, names = data
    s = Surrogate("logistic", n_classes=7, C=1.0).fit(X, y)
    e = surrogate_explanation(s, X[:20], names, background=X)
    got = (e.values.sum(1) + e.base_values)[:, s.present_]
    np.testing.assert_allclose(got, s.model_.decision_function(X[:20]), atol=1e-4)  # log-odds per class
    assert shap_unit(s.kind) == "log-odds"
    with pytest.raises(ValueError, match="background"):
        surrogate_explanation(s, X[:2], names)


def test_shap_explanations_work_in_shap_plots(data):
    import matplotlib

    matplotlib.use("Agg")
    import shap

    X, y, names = data
    s = Surrogate("tree", n_classes=7, max_depth=3).fit(X, y)
    e = surrogate_explanation(s, X[:20], names)
    shap.plots.waterfall(e[0, :, 2], show=False)
    shap.plots.bar(e[:, :, 2], show=False)


def test_rule_path_follows_the_sample_to_its_leaf(data):
    X, y, names = data
    s = Surrogate("tree", n_classes=7, max_depth=3).fit(X, y)
    for i in range(10):
        lines = rule_path(s, X[i], names)
        assert lines[-1] == f"→ class {s.predict(X[i:i + 1])[0]}"
        for ln in lines[:-1]:
            name, op, thr = ln.split()[:3]
            v = X[i, names.index(name)]
            assert (v <= float(thr) + 1e-3) if op == "≤" else (v > float(thr) - 1e-3)


def test_concept_region_scores_are_shares_by_declared_region():
    vals = np.zeros((2, len(CONCEPT_NAMES)))
    vals[0, CONCEPT_NAMES.index("skin_ita")] = -3.0
    vals[1, CONCEPT_NAMES.index("hair")] = 1.0
    vals[1, CONCEPT_NAMES.index("area")] = 1.0
    sc = concept_region_scores(vals, CONCEPT_NAMES)
    np.testing.assert_allclose(sc.sum(1), 1.0)
    assert sc[0, REGIONS.index("skin")] == 1.0
    assert sc[1, REGIONS.index("artifact")] == sc[1, REGIONS.index("lesion")] == 0.5
    cnn = concept_region_scores(vals, [f"cnn_{n}" for n in CONCEPT_NAMES])
    np.testing.assert_allclose(cnn, sc)


def test_layout_concepts_are_left_out_of_the_regions_and_their_share_is_reported():
    from hybrid.explain import layout_shap_share

    vals = np.zeros((2, len(CONCEPT_NAMES)))
    vals[0, CONCEPT_NAMES.index("centre_L")] = 3.0  # layout only
    vals[1, CONCEPT_NAMES.index("outer_a_std")] = -1.0  # layout and a lesion concept, equal |SHAP|
    vals[1, CONCEPT_NAMES.index("lesion_L")] = 1.0
    sc = concept_region_scores(vals, CONCEPT_NAMES)
    np.testing.assert_allclose(sc[0], 1 / len(REGIONS))  # nothing on a region: no region preferred
    assert sc[1, REGIONS.index("lesion")] == 1.0
    assert layout_shap_share(vals, CONCEPT_NAMES) == 0.8  # (3 + 1) of 5
    assert layout_shap_share(vals, [f"cnn_{n}" for n in CONCEPT_NAMES]) == 0.8


def test_shap_bars_are_labelled_with_the_images_own_values_and_units():
    """A measured concept and its CNN-probed twin share the registry unit; an embedding dimension has none."""
    names = ["contrast", "cnn_contrast", "emb_3"]
    units = concept_units(names)
    assert units == ["ΔE", "ΔE", ""]
    assert value_labels(names, np.array([7.5312, -0.25, 0.123456]), units) == [
        "contrast = 7.53 ΔE", "cnn_contrast = -0.25 ΔE", "emb_3 = 0.123"]
