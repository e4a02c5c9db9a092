import numpy as np
import pytest
from medmnist import Evaluator
from medmnist.evaluator import getACC, getAUC

from hybrid.metrics import (accuracy, auc_ovr, bootstrap_ci, classification_report,
                            expected_calibration_error)
from hybrid.train import class_weights


def _scores(rng, y, k=7, signal=1.5):
    logits = rng.normal(size=(len(y), k))
    logits[np.arange(len(y)), y] += signal
    return np.exp(logits) / np.exp(logits).sum(1, keepdims=True)


def test_acc_auc_equal_medmnist_evaluator_on_real_test_labels(data_root):
    ev = Evaluator("dermamnist", "test", root=str(data_root))
    y = ev.labels.reshape(-1)
    rng = np.random.default_rng(1)
    score = _scores(rng, y)
    auc, acc = ev.evaluate(score)
    assert accuracy(y, score) == pytest.approx(acc, abs=1e-12)
    assert auc_ovr(y, score) == pytest.approx(auc, abs=1e-12)


def test_auc_with_ties_matches_medmnist():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 7, 500)
    score = np.round(_scores(rng, y), 1)  # many ties
    assert auc_ovr(y, score) == pytest.approx(getAUC(y, score, "multi-class"), abs=1e-12)
    assert accuracy(y, score) == pytest.approx(getACC(y, score, "multi-class"), abs=1e-12)


def test_binary_auc_matches_medmnist():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 300)
    score = _scores(rng, y, k=2)
    assert auc_ovr(y, score) == pytest.approx(getAUC(y, score, "binary-class"), abs=1e-12)


def test_ece_known_answers():
    y = np.array([0, 1, 0, 1])
    perfect = np.eye(2)[y]
    assert expected_calibration_error(y, perfect) == 0.0
    overconfident = np.tile([0.8, 0.2], (4, 1))  # confidence 0.8, accuracy 0.5
    assert expected_calibration_error(y, overconfident) == pytest.approx(0.3)


def test_bootstrap_interval_brackets_estimate_and_shrinks_with_n():
    rng = np.random.default_rng(4)
    y = rng.integers(0, 7, 2000)
    s = _scores(rng, y)
    lo, hi = bootstrap_ci(y, s, accuracy, 300)
    assert lo < accuracy(y, s) < hi
    lo2, hi2 = bootstrap_ci(y[:200], s[:200], accuracy, 300)
    assert (hi2 - lo2) > (hi - lo)


def test_report_confusion_and_per_class():
    y = np.array([0, 0, 1, 2])
    s = np.eye(3)[[0, 1, 1, 2]]
    r = classification_report(y, s, ["a", "b", "c"], n_boot=0)
    assert r["confusion"] == [[1, 1, 0], [0, 1, 0], [0, 0, 1]]
    assert r["per_class"]["a"]["recall"] == 0.5 and r["per_class"]["b"]["precision"] == 0.5
    assert r["balanced_acc"] == pytest.approx((0.5 + 1 + 1) / 3)


def test_class_weights_balance_the_classes():
    labels = np.array([0] * 90 + [1] * 10)
    w = class_weights(labels, 2, "balanced").numpy()
    assert w[0] * 90 == pytest.approx(w[1] * 10)
    assert (w * np.bincount(labels)).sum() == pytest.approx(100)
    assert np.allclose(class_weights(labels, 2, "none").numpy(), 1)


def test_confusion_table_reads_back_rows_true_columns_predicted():
    from hybrid.data import class_names
    from hybrid.stages import confusion_markdown

    names = class_names("dermamnist")
    rng = np.random.default_rng(0)
    cm = rng.integers(0, 50, (7, 7))
    text = confusion_markdown(cm.tolist(), names)
    rows = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line]
    header = [c.strip() for c in rows[0].strip("|").split("|")]
    assert header[1:] == ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]
    read = np.array([[int(c) for c in r.strip("|").split("|")[1:]] for r in rows[1:]])
    assert (read == cm).all() and rows[5].startswith("| mel |")
    assert "mel: melanoma" in text
