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
from sklearn.base import BaseEstimator
from sklearn.covariance import LedoitWolf


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
        """Share of rows beyond the threshold and the median distance, for a report."""
        d = self.distance(X)
        return {"outside_fraction": float((d > self.threshold_).mean()), "median_distance": float(np.median(d)),
                "threshold": self.threshold_, "quantile": self.quantile}
