"""Feature tables per split: what the CNN sees and says, and what can be measured on the image.

CNN-emitted concepts are linear probes on the frozen embedding (standardised ridge regression,
one output per measured concept, penalty chosen by efficient leave-one-out CV on train). A probe
does not change the classifier, so its test R² says how linearly the CNN's own embedding encodes
each concept — the question an auditor asks — and its scores are what a surrogate on "CNN
concepts" reads. A backbone trained with a joint concept head (train.concept_weight > 0) is probed
the same way: its head is itself linear on the embedding, fitted to the same targets, so the probe
reads what the head was trained to emit.
"""
from __future__ import annotations

import numpy as np
from sklearn.linear_model import RidgeCV
from sklearn.metrics import r2_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from .concepts import CONCEPT_NAMES, measure_concepts
from .train import embed_and_proba, predict_proba

FEATURE_SETS = ("embeddings", "concepts", "cnn_concepts", "concepts+cnn_concepts")


def fit_concept_probes(train_emb: np.ndarray, train_concepts: np.ndarray):
    """Ridge probes embedding (N, D) → concepts (N, C), concepts standardised so R² is comparable."""
    probe = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-2, 4, 13)))
    mu, sd = train_concepts.mean(0), train_concepts.std(0) + 1e-8
    probe.fit(train_emb, (train_concepts - mu) / sd)
    probe.concept_mean_, probe.concept_std_ = mu, sd
    return probe


def probe_predict(probe, emb: np.ndarray) -> np.ndarray:
    return probe.predict(emb) * probe.concept_std_ + probe.concept_mean_


def probe_r2(probe, emb: np.ndarray, concepts: np.ndarray) -> dict[str, float]:
    pred = probe_predict(probe, emb)
    return {name: float(r2_score(concepts[:, j], pred[:, j])) for j, name in enumerate(CONCEPT_NAMES)}


def split_table(model, images: np.ndarray, labels: np.ndarray, index: np.ndarray, tta: bool = False) -> dict:
    """Arrays for one split: embeddings (N, D), proba (N, K), pred (N,), concepts (N, C), masks (N, S, S)."""
    emb, proba = embed_and_proba(model, images)
    if tta:
        proba = predict_proba(model, images, tta=True)
    concepts, masks = measure_concepts(images, return_masks=True, n_jobs=-1)
    return {"embeddings": emb, "proba": proba.astype(np.float32),
            "pred": proba.argmax(1).astype(np.int64), "concepts": concepts, "masks": masks,
            "labels": labels.astype(np.int64), "index": index.astype(np.int64)}


def feature_matrix(table: dict, feature_set: str) -> tuple[np.ndarray, list[str]]:
    """(X, names) for a feature set of one split's table."""
    if feature_set == "embeddings":
        X = table["embeddings"]
        return X, [f"emb_{i}" for i in range(X.shape[1])]
    if feature_set == "concepts":
        return table["concepts"], list(CONCEPT_NAMES)
    if feature_set == "cnn_concepts":
        return table["cnn_concepts"], [f"cnn_{n}" for n in CONCEPT_NAMES]
    if feature_set == "concepts+cnn_concepts":
        return (np.hstack([table["concepts"], table["cnn_concepts"]]),
                list(CONCEPT_NAMES) + [f"cnn_{n}" for n in CONCEPT_NAMES])
    raise ValueError(f"unknown feature set '{feature_set}'; expected one of {FEATURE_SETS}")
