"""How far an image set lies from what the CNN was trained on, measured in its own embedding space.

Each image's Mahalanobis distance from the train embeddings' mean, with scikit-learn's Ledoit-Wolf
shrunk covariance (a 256-d embedding from a few thousand images needs shrinkage to invert). The
threshold is a high quantile of the same distance on a held-out reference split (validation), so a
set drawn like the training data has about 1 − quantile of its images beyond it, and a set from
another device more. A set-level warning, not a per-image one: an image beyond the threshold is
unusual for the model, not necessarily misclassified.

The warning itself compares the set's whole distance distribution with validation's (one-sided
Mann–Whitney test; effect size: the distance AUC, P(a set image is farther than a validation image),
0.5 when unshifted). Counting images beyond the line was the first rule; on DermaMNIST test through
simulated clinics (bench/results_shift_indicator.md) the rank test caught more shifted 200-image
sets and raised no alarm on unshifted test, where the count, which treats the estimated line as
exact, did for one model.
"""
from __future__ import annotations

import numpy as np
from scipy.stats import binomtest, mannwhitneyu
from sklearn.base import BaseEstimator
from sklearn.covariance import LedoitWolf

SHIFT_ALPHA = 1e-3  # warn when distances this much larger than validation's would be this unlikely for an unshifted set


class EmbeddingDistance(BaseEstimator):
    """fit(train_embeddings, reference_embeddings) → distance(X) (N,) and outside(X) (N,) bool."""

    def __init__(self, quantile: float = 0.99):
        self.quantile = quantile

    def fit(self, X_train: np.ndarray, X_reference: np.ndarray) -> "EmbeddingDistance":
        if not 0 < self.quantile < 1:
            raise ValueError(f"quantile must lie in (0, 1), got {self.quantile}")
        self.covariance_ = LedoitWolf().fit(np.asarray(X_train, np.float64))
        self.reference_distances_ = self.distance(X_reference)
        self.threshold_ = float(np.quantile(self.reference_distances_, self.quantile))
        return self

    def distance(self, X: np.ndarray) -> np.ndarray:
        """Mahalanobis distance (N,) of each row from the train mean, in units of the train spread."""
        return np.sqrt(self.covariance_.mahalanobis(np.asarray(X, np.float64)))

    def outside(self, X: np.ndarray) -> np.ndarray:
        return self.distance(X) > self.threshold_

    def summary(self, X: np.ndarray) -> dict:
        """Share of rows beyond the threshold and the binomial p-value of that many if the set were drawn
        like the reference (tail_p_value); the distance AUC against the reference rows (0.5 = alike, 1 =
        every row farther) and its one-sided Mann–Whitney p-value (p_value, the one the warning uses)."""
        d = self.distance(X)
        k = int((d > self.threshold_).sum())
        ref = self.reference_distances_
        mw = mannwhitneyu(d, ref, alternative="greater")
        return {"outside_fraction": k / len(d), "n_outside": k, "median_distance": float(np.median(d)),
                "reference_median_distance": float(np.median(ref)),
                "tail_p_value": float(binomtest(k, len(d), 1 - self.quantile, alternative="greater").pvalue),
                "distance_auc": float(mw.statistic / (len(d) * len(ref))), "p_value": float(mw.pvalue),
                "threshold": self.threshold_, "quantile": self.quantile}


def shift_warning(name: str, metrics: dict) -> str | None:
    """One plain-language warning when a set's embedding distances are significantly larger than
    validation's (metrics: a set's entry with 'n' and 'shift'); else None."""
    s = metrics.get("shift")
    if not s or s["p_value"] >= SHIFT_ALPHA:
        return None
    return (f"**Warning — {name} is shifted:** its images lie farther from the training data in the CNN's embedding "
            f"than validation's do (median distance {s['median_distance']:.1f} against "
            f"{s['reference_median_distance']:.1f}; a random {name} image is the farther of a pair with a validation "
            f"image {s['distance_auc']:.0%} of the time, 50% if alike; Mann–Whitney p = {s['p_value']:.1e}). "
            f"{s['n_outside']} of {metrics['n']} images ({s['outside_fraction']:.1%}) lie beyond validation's "
            f"{s['quantile']:.0%} distance, where about {1 - s['quantile']:.0%} would. The validation operating point "
            "and calibration may not hold here: choose the threshold on labelled images of this clinic before use.")
