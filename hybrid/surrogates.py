"""Surrogates distilled from the CNN: fitted to the CNN's predicted labels, not to the true labels.

`Surrogate` is a scikit-learn classifier wrapping one of three interpretable families
(logistic, tree, xgboost). It keeps the full class space of the CNN (K classes) even when
the CNN never predicts some class on the training split, so probabilities are always (N, K).
"""
from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier

KINDS = ("logistic", "tree", "xgboost", "majority")


class Surrogate(ClassifierMixin, BaseEstimator):
    """kind: logistic (standardised multinomial, inverse regularisation C), tree (max_depth,
    min_samples_leaf), xgboost (n_estimators, max_depth, learning_rate), or majority (the
    trivial baseline: always the most frequent CNN prediction). n_classes: size of the label space."""

    def __init__(self, kind: str = "tree", n_classes: int = 7, C: float = 1.0, max_depth: int = 6,
                 min_samples_leaf: int = 5, n_estimators: int = 200, learning_rate: float = 0.1,
                 random_state: int = 0, n_jobs: int = 0):
        self.kind = kind
        self.n_classes = n_classes
        self.C = C
        self.max_depth = max_depth
        self.min_samples_leaf = min_samples_leaf
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.random_state = random_state
        self.n_jobs = n_jobs

    def _make(self):
        if self.kind == "logistic":
            return make_pipeline(StandardScaler(), LogisticRegression(C=self.C, max_iter=2000))
        if self.kind == "tree":
            return DecisionTreeClassifier(max_depth=self.max_depth, min_samples_leaf=self.min_samples_leaf,
                                          random_state=self.random_state)
        if self.kind == "xgboost":
            from xgboost import XGBClassifier

            return XGBClassifier(n_estimators=self.n_estimators, max_depth=self.max_depth,
                                 learning_rate=self.learning_rate, tree_method="hist",
                                 random_state=self.random_state, n_jobs=self.n_jobs or None,
                                 subsample=0.8, colsample_bytree=0.8)
        if self.kind == "majority":
            return None
        raise ValueError(f"unknown surrogate kind '{self.kind}'; expected one of {KINDS}")

    def fit(self, X, y):
        X = np.asarray(X, dtype=np.float32)
        y = np.asarray(y).astype(int)
        self.n_features_in_ = X.shape[1]
        self.n_samples_fit_ = X.shape[0]
        self.classes_ = np.arange(self.n_classes)
        self.present_ = np.unique(y)  # classes the teacher predicted; the model is fitted on these
        self.model_ = self._make()
        if self.model_ is None or len(self.present_) == 1:
            self.constant_ = int(np.bincount(y, minlength=self.n_classes).argmax())
            self.model_ = None
            return self
        enc = np.searchsorted(self.present_, y)
        self.model_.fit(X, enc)
        return self

    def predict_proba(self, X):
        X = self._check(X)
        out = np.zeros((len(X), self.n_classes))
        if self.model_ is None:
            out[:, self.constant_] = 1.0
            return out
        out[:, self.present_] = self.model_.predict_proba(X)
        return out

    def predict(self, X):
        return self.predict_proba(X).argmax(1)

    def _check(self, X):
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise ValueError(f"surrogate was fitted on {self.n_features_in_} features; got an array of shape {X.shape}")
        return X

    def complexity(self) -> dict:
        """Size of the fitted model: non-zero coefficients, leaves, or trees × depth; `text` reads it out."""
        if self.model_ is None:
            return {"measure": "constant", "value": 1, "depth": 0, "text": "1 constant"}
        if self.kind == "logistic":
            n = int(np.count_nonzero(np.abs(self.model_[-1].coef_) > 1e-8))
            return {"measure": "non-zero coefficients", "value": n, "text": f"{n} non-zero coefficients"}
        if self.kind == "tree":
            n = int(self.model_.get_n_leaves())
            return {"measure": "leaves", "value": n, "depth": int(self.model_.get_depth()), "text": f"{n} leaves"}
        n_trees = len(self.model_.get_booster().get_dump())
        return {"measure": "trees × depth", "value": int(n_trees * self.max_depth), "trees": n_trees,
                "depth": self.max_depth, "text": f"{n_trees} trees × depth {self.max_depth}"}
