"""Calibration and a clinical operating point, fitted on validation only.

Temperature scaling (Guo et al. 2017) rescales log-probabilities by one scalar T chosen to minimise
validation NLL; it changes confidence, never the argmax. The melanoma threshold is the highest
calibrated p(melanoma) at which validation sensitivity still reaches the target — "call melanoma
when p ≥ t" — so a report can state sensitivity and specificity, not only argmax accuracy.
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax
from sklearn.metrics import roc_auc_score


def calibrate(proba: np.ndarray, temperature: float) -> np.ndarray:
    """Probabilities (N, K) → softmax(log p / T)."""
    return np.exp(log_softmax(np.log(np.clip(proba, 1e-12, None)) / temperature, axis=1))


def fit_temperature(proba: np.ndarray, y: np.ndarray) -> float:
    """The T in [0.05, 20] minimising the mean negative log-likelihood of calibrate(proba, T)."""
    logp = np.log(np.clip(proba, 1e-12, None))
    y = np.asarray(y).reshape(-1)

    def nll(log_t: float) -> float:
        return float(-log_softmax(logp / np.exp(log_t), axis=1)[np.arange(len(y)), y].mean())

    res = minimize_scalar(nll, bounds=(np.log(0.05), np.log(20.0)), method="bounded")
    return float(np.exp(res.x))


def threshold_for_sensitivity(score: np.ndarray, positive: np.ndarray, target: float) -> float:
    """Highest threshold t with mean(score[positive] ≥ t) ≥ target (needs ≥ 1 positive)."""
    pos = np.sort(np.asarray(score)[np.asarray(positive, bool)])[::-1]
    if len(pos) == 0:
        raise ValueError("no positive cases to choose a sensitivity threshold on")
    if not 0 < target <= 1:
        raise ValueError(f"target sensitivity must be in (0, 1]; got {target}")
    k = int(np.ceil(target * len(pos) - 1e-9))
    return float(pos[max(k, 1) - 1])


def binary_view(proba: np.ndarray, y: np.ndarray, threshold: float, positive: int, negative: int,
                n_boot: int = 1000, seed: int = 0) -> dict:
    """Positive-vs-negative class on the images whose true label is one of the two.

    Score = p(positive) of the K-way output. AUC, and sensitivity/specificity both at `threshold`
    and at the K-way argmax, each with a percentile-bootstrap 95% interval.
    """
    y = np.asarray(y).reshape(-1)
    keep = (y == positive) | (y == negative)
    s, t = proba[keep, positive], y[keep] == positive
    call_t, call_arg = s >= threshold, proba[keep].argmax(1) == positive
    out = {"n_positive": int(t.sum()), "n_negative": int((~t).sum())}
    stats = {"auc": lambda i: roc_auc_score(t[i], s[i]) if 0 < t[i].sum() < len(i) else np.nan,
             "sensitivity": lambda i: call_t[i][t[i]].mean() if t[i].any() else np.nan,
             "specificity": lambda i: (~call_t[i][~t[i]]).mean() if (~t[i]).any() else np.nan,
             "sensitivity_argmax": lambda i: call_arg[i][t[i]].mean() if t[i].any() else np.nan,
             "specificity_argmax": lambda i: (~call_arg[i][~t[i]]).mean() if (~t[i]).any() else np.nan}
    rng = np.random.default_rng(seed)
    boots = [rng.integers(0, len(t), len(t)) for _ in range(n_boot)]
    for k, fn in stats.items():
        v = fn(np.arange(len(t))) if len(t) else np.nan
        out[k] = None if np.isnan(v) else float(v)
        vals = np.array([fn(i) for i in boots]) if len(t) else np.array([])
        vals = vals[~np.isnan(vals)]
        out[k + "_ci95"] = [float(q) for q in np.quantile(vals, [0.025, 0.975])] if len(vals) else None
    return out
