"""Calibration, the melanoma operating point and external sets, on known answers and on real PH2."""
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from hybrid.errors import HybridError
from hybrid.external import default_external, load_external
from hybrid.operating import binary_view, calibrate, fit_temperature, threshold_for_sensitivity


def test_temperature_recovers_a_known_overconfidence():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(5000, 7)) * 3
    truth = np.exp(logits / 3) / np.exp(logits / 3).sum(1, keepdims=True)  # labels drawn at T = 3
    y = np.array([rng.choice(7, p=p) for p in truth])
    proba = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)  # the model reports T = 1
    t = fit_temperature(proba, y)
    assert 2.7 < t < 3.3

    def nll(p):
        return -np.log(p[np.arange(len(y)), y]).mean()

    assert nll(calibrate(proba, t)) < nll(proba) - 0.1  # calibration lowers the negative log-likelihood
    cal = calibrate(proba, t)
    np.testing.assert_array_equal(cal.argmax(1), proba.argmax(1))  # never changes the decision
    np.testing.assert_allclose(cal.sum(1), 1, atol=1e-9)
    np.testing.assert_allclose(calibrate(proba, 1.0), proba, atol=1e-9)


def test_threshold_is_the_highest_reaching_the_target_sensitivity():
    score = np.array([0.9, 0.8, 0.7, 0.6, 0.1, 0.95, 0.2])
    positive = np.array([1, 1, 1, 1, 0, 0, 0], bool)
    assert threshold_for_sensitivity(score, positive, 0.75) == 0.7  # 3 of 4 positives
    assert threshold_for_sensitivity(score, positive, 0.8) == 0.6  # needs all 4
    rng = np.random.default_rng(1)
    s, pos = rng.uniform(size=500), rng.uniform(size=500) < 0.3
    t = threshold_for_sensitivity(s, pos, 0.8)
    assert (s[pos] >= t).mean() >= 0.8 and (s[pos] > t).mean() < 0.8
    with pytest.raises(ValueError):
        threshold_for_sensitivity(s, np.zeros(500, bool), 0.8)


def test_binary_view_against_sklearn_and_hand_counts():
    proba = np.array([[.1, .6, .3], [.2, .5, .3], [.7, .2, .1], [.1, .3, .6], [.3, .3, .4], [.5, .4, .1]])
    y = np.array([1, 1, 1, 2, 2, 0])  # class 0 is neither positive nor negative: left out
    r = binary_view(proba, y, threshold=0.5, positive=1, negative=2, n_boot=50)
    assert (r["n_positive"], r["n_negative"]) == (3, 2)
    keep = y != 0
    assert r["auc"] == pytest.approx(roc_auc_score(y[keep] == 1, proba[keep, 1]))
    assert r["sensitivity"] == pytest.approx(2 / 3) and r["specificity"] == 1.0
    assert r["sensitivity_argmax"] == pytest.approx(2 / 3) and r["specificity_argmax"] == 1.0
    lo, hi = r["sensitivity_ci95"]
    assert 0 <= lo <= r["sensitivity"] <= hi <= 1


@pytest.fixture(scope="module")
def ph2():
    p = default_external("ph2", 28)
    if p is None:
        pytest.skip("PH2 not found at ../shared/data/external/ph2")
    return p


def test_ph2_loads_and_resizes_like_the_dataset(ph2):
    images, labels = load_external(ph2, 28)
    assert images.shape == (200, 28, 28, 3) and images.dtype == np.uint8
    assert np.bincount(labels, minlength=7)[[4, 5]].tolist() == [40, 160]
    from_64, labels_64 = load_external(default_external("ph2", 64), 28)  # bicubic, full frame
    np.testing.assert_array_equal(labels_64, labels)
    assert np.abs(from_64.astype(int) - images).mean() < 1.0


@pytest.mark.parametrize("arrays, words", [
    ({"images": np.zeros((2, 28, 28, 3), np.uint8), "test_labels": np.zeros((2, 1))}, "no key(s) test_images"),
    ({"test_images": np.zeros((2, 28, 28, 3), np.uint8), "test_labels": np.array([[4], [7]])}, "expected labels 0–6"),
    ({"test_images": np.zeros((0, 28, 28, 3), np.uint8), "test_labels": np.zeros((0, 1), int)}, "is empty"),
    ({"test_images": np.zeros((2, 28, 28, 3), np.float32), "test_labels": np.zeros((2, 1), int)}, "expected uint8"),
    ({"test_images": np.zeros((2, 28, 28, 3), np.uint8), "test_labels": np.zeros((3, 1), int)}, "one per image"),
])
def test_bad_external_sets_get_one_clear_sentence(tmp_path, arrays, words):
    p = tmp_path / "bad.npz"
    np.savez(p, **arrays)
    with pytest.raises(HybridError, match="bad.npz") as e:
        load_external(p, 28)
    assert words in str(e.value)


def test_missing_and_truncated_external_files(tmp_path, ph2):
    with pytest.raises(HybridError, match="does not exist"):
        load_external(tmp_path / "nope.npz", 28)
    cut = tmp_path / "cut.npz"
    cut.write_bytes(ph2.read_bytes()[:5000])
    with pytest.raises(HybridError, match="not a readable npz.*truncated"):
        load_external(cut, 28)
    text = tmp_path / "text.npz"
    text.write_text("test_images,test_labels\n")
    with pytest.raises(HybridError, match="text.npz is not a readable npz.*another kind of file"):
        load_external(text, 28)
