"""Classification metrics: medmnist's ACC/AUC definitions plus balanced accuracy, calibration and intervals.

y_true: int labels (N,); y_score: class probabilities (N, K).
"""
from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

# Published DermaMNIST anchors (test ACC, AUC): MedMNIST v2 (Yang et al. 2023) and MedMNIST+ (Doerrich et al. 2024).
ANCHORS = [
    ("MedMNIST v2 ResNet-18 (28)", 28, 0.735, 0.917),
    ("MedMNIST v2 ResNet-50 (28)", 28, 0.735, 0.913),
    ("MedMNIST v2 auto-sklearn (28)", 28, 0.719, 0.902),
    ("MedMNIST v2 AutoKeras (28)", 28, 0.749, 0.915),
    ("MedMNIST v2 Google AutoML Vision (28)", 28, 0.768, 0.914),
    ("MedMNIST+ best 28 px (VGG16 ImageNet, padded to 224)", 28, 0.766, 0.927),
    ("MedMNIST+ best 64 px (DINO ViT-B/16 linear probe)", 64, 0.799, 0.954),
]


def accuracy(y_true, y_score) -> float:
    """medmnist's multi-class ACC: argmax of the scores against the labels."""
    return float(np.mean(np.asarray(y_score).argmax(1) == np.asarray(y_true).reshape(-1)))


def auc_ovr(y_true, y_score) -> float:
    """medmnist's multi-class AUC: the unweighted mean of one-vs-rest ROC AUCs over all K classes.

    Rank (Mann–Whitney) form with average ranks for ties, identical to sklearn's roc_auc_score;
    a class with no positives or no negatives makes it undefined (nan), as in medmnist it raises.
    """
    y_true = np.asarray(y_true).reshape(-1)
    y_score = np.asarray(y_score, dtype=np.float64)
    if y_score.ndim == 1 or y_score.shape[1] == 1:  # binary-class with a single score column
        y_score = np.column_stack([1 - y_score.reshape(-1), y_score.reshape(-1)])
    aucs = []
    classes = range(y_score.shape[1]) if y_score.shape[1] > 2 else [1]
    for k in classes:
        pos = y_true == k
        n_pos, n_neg = int(pos.sum()), int((~pos).sum())
        if n_pos == 0 or n_neg == 0:
            return float("nan")
        r = rankdata(y_score[:, k])
        aucs.append((r[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
    return float(np.mean(aucs))


def balanced_accuracy(y_true, y_pred) -> float:
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    return float(np.mean([np.mean(y_pred[y_true == k] == k) for k in np.unique(y_true)]))


def confusion(y_true, y_pred, n_classes: int) -> np.ndarray:
    """Counts (K, K): rows are true classes, columns predicted."""
    m = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(m, (np.asarray(y_true), np.asarray(y_pred)), 1)
    return m


def expected_calibration_error(y_true, y_score, n_bins: int = 15) -> float:
    """Top-label ECE: Σ_b (n_b / N) |accuracy_b − confidence_b| over equal-width confidence bins."""
    y_score = np.asarray(y_score)
    conf = y_score.max(1)
    correct = y_score.argmax(1) == np.asarray(y_true)
    bins = np.minimum((conf * n_bins).astype(int), n_bins - 1)
    ece = 0.0
    for b in range(n_bins):
        m = bins == b
        if m.any():
            ece += m.mean() * abs(correct[m].mean() - conf[m].mean())
    return float(ece)


def bootstrap_ci(y_true, y_score, fn, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05):
    """Percentile bootstrap (1 − alpha) interval of fn(y_true, y_score) over resampled images."""
    rng = np.random.default_rng(seed)
    y_true, y_score = np.asarray(y_true), np.asarray(y_score)
    n = len(y_true)
    vals = []
    for _ in range(n_boot):
        idx = rng.integers(0, n, n)
        v = fn(y_true[idx], y_score[idx])
        if not np.isnan(v):
            vals.append(v)
    if not vals:
        return None, None
    lo, hi = np.quantile(vals, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def fmt_ci(v, ci=None, pct: bool = False) -> str:
    """'0.812 [0.790, 0.833]' (or percentages); '–' for a missing value, no brackets for a missing interval."""
    if v is None:
        return "–"
    f = (lambda x: f"{x:.1%}") if pct else (lambda x: f"{x:.3f}")
    return f(v) + (f" [{f(ci[0])}, {f(ci[1])}]" if ci and ci[0] is not None else "")


def classification_report(y_true, y_score, class_names, n_boot: int = 1000, ece_bins: int = 15, seed: int = 0) -> dict:
    """All headline metrics as a JSON-ready dict."""
    y_true = np.asarray(y_true).reshape(-1)
    y_score = np.asarray(y_score)
    y_pred = y_score.argmax(1)
    k = len(class_names)
    cm = confusion(y_true, y_pred, k)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.diag(cm) / cm.sum(0)
        recall = np.diag(cm) / cm.sum(1)
    out = {
        "n": int(len(y_true)),
        "acc": accuracy(y_true, y_score),
        "auc": _num(auc_ovr(y_true, y_score)),
        "balanced_acc": balanced_accuracy(y_true, y_pred),
        "ece": expected_calibration_error(y_true, y_score, ece_bins),
        "per_class": {
            name: {"precision": _num(precision[i]), "recall": _num(recall[i]), "support": int(cm[i].sum())}
            for i, name in enumerate(class_names)
        },
        "confusion": cm.tolist(),
    }
    if n_boot:
        out["acc_ci95"] = bootstrap_ci(y_true, y_score, accuracy, n_boot, seed)
        out["auc_ci95"] = bootstrap_ci(y_true, y_score, auc_ovr, n_boot, seed)
    return out


def _num(v) -> float | None:
    return None if np.isnan(v) else float(v)


def confusion_table(counts, rows: list[str], cols: list[str]) -> list[str]:
    """Markdown table lines of a confusion matrix, counts (R, C): rows true class, columns predicted."""
    lines = ["| true \\ predicted | " + " | ".join(cols) + " |", "| --- |" + " --- |" * len(cols)]
    return lines + [f"| {r} | " + " | ".join(str(int(v)) for v in row) + " |" for r, row in zip(rows, counts)]


def anchors_markdown(results: dict[str, dict], size: int) -> str:
    """Our rows (name → report) beside the published anchors, as a markdown table."""
    lines = [
        "| model | input | test ACC | test AUC |",
        "| --- | --- | --- | --- |",
    ]
    def f(v):
        return "n/a" if v is None else f"{v:.3f}"

    for name, r in results.items():
        ci = f" [{f(r['acc_ci95'][0])}, {f(r['acc_ci95'][1])}]" if "acc_ci95" in r else ""
        aci = f" [{f(r['auc_ci95'][0])}, {f(r['auc_ci95'][1])}]" if "auc_ci95" in r else ""
        lines.append(f"| **{name}** (this run) | {size} px | **{f(r['acc'])}**{ci} | **{f(r['auc'])}**{aci} |")
    for name, s, acc, auc in ANCHORS:
        lines.append(f"| {name} | {s} px | {acc:.3f} | {auc:.3f} |")
    lines.append("")
    lines.append(
        "Anchors are published numbers on the official DermaMNIST files. Our files re-render the same "
        "official split from HAM10000 sources (pixels not byte-identical), so the comparison is close, not exact. "
        "Brackets: bootstrap 95% intervals over test images."
    )
    return "\n".join(lines)
