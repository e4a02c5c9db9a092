"""How far an image set lies from what the CNN was trained on, measured in its own embedding space.

Each image's Mahalanobis distance from the train embeddings' mean, with scikit-learn's Ledoit-Wolf
shrunk covariance (a 256-d embedding from a few thousand images needs shrinkage to invert). The
threshold is a high quantile of the same distance on a held-out reference split (validation), so a
set drawn like the training data has about 1 − quantile of its images beyond it, and a set from
another device more. A set-level warning, not a per-image one: an image beyond the threshold is
unusual for the model, not necessarily misclassified.
"""
from __future__ import annotations

import numpy as np
from scipy.stats import binomtest
from sklearn.base import BaseEstimator
from sklearn.covariance import LedoitWolf

SHIFT_ALPHA = 1e-3  # warn when that many images beyond the line would be this unlikely for an unshifted set


class EmbeddingDistance(BaseEstimator):
    """fit(train_embeddings, reference_embeddings) → distance(X) (N,) and outside(X) (N,) bool."""

    def __init__(self, quantile: float = 0.99):
        self.quantile = quantile

    def fit(self, X_train: np.ndarray, X_reference: np.ndarray) -> "EmbeddingDistance":
        if not 0 < self.quantile < 1:
            raise ValueError(f"quantile must lie in (0, 1), got {self.quantile}")
        self.covariance_ = LedoitWolf().fit(np.asarray(X_train, np.float64))
        self.threshold_ = float(np.quantile(self.distance(X_reference), self.quantile))
        return self

    def distance(self, X: np.ndarray) -> np.ndarray:
        """Mahalanobis distance (N,) of each row from the train mean, in units of the train spread."""
        return np.sqrt(self.covariance_.mahalanobis(np.asarray(X, np.float64)))

    def outside(self, X: np.ndarray) -> np.ndarray:
        return self.distance(X) > self.threshold_

    def summary(self, X: np.ndarray) -> dict:
        """Share of rows beyond the threshold, the median distance, and the one-sided binomial p-value
        of that many rows beyond it if the set were drawn like the reference (1 − quantile each)."""
        d = self.distance(X)
        k = int((d > self.threshold_).sum())
        return {"outside_fraction": k / len(d), "n_outside": k, "median_distance": float(np.median(d)),
                "p_value": float(binomtest(k, len(d), 1 - self.quantile, alternative="greater").pvalue),
                "threshold": self.threshold_, "quantile": self.quantile}


def shift_warning(name: str, metrics: dict) -> str | None:
    """One plain-language warning when a set's share beyond the line is significantly above what a set
    drawn like the training data shows (metrics: a set's entry with 'n' and 'shift'); else None."""
    s = metrics.get("shift")
    if not s or s["p_value"] >= SHIFT_ALPHA:
        return None
    return (f"**Warning — {name} is shifted:** {s['n_outside']} of {metrics['n']} images ({s['outside_fraction']:.1%}) "
            f"lie beyond validation's {s['quantile']:.0%} embedding distance, where about {1 - s['quantile']:.0%} would "
            f"for images like the training data (binomial p = {s['p_value']:.1e}). The validation operating point and "
            "calibration may not hold here: choose the threshold on labelled images of this clinic before use.")
