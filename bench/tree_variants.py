#!/usr/bin/env python
"""Can another way of growing a depth-6 concept tree imitate the CNN better than the product's?

    python bench/tree_variants.py artifacts/runs/default          # after `hybrid features`
    python bench/tree_variants.py RUN --out bench/results_tree_variants.md

Every tree has depth ≤ 6 and sees the same measured concepts of the run's feature tables; all are
fitted to the CNN on the train split. Variants: CART on the CNN's labels (gini — the product's
surrogate — or entropy; min_samples_leaf 1 / 5 / 20); a regression tree on the CNN's probabilities,
read by argmax; and a "born-again" tree fitted to the train images plus 20 jittered copies of them
(each concept + N(0, 0.1 sd)) labelled by the concept XGBoost, which lets the tree see the teacher's
decision where no image lies. The concept XGBoost itself is the reference. Choose on validation;
the test columns are for the report.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from sklearn.metrics import cohen_kappa_score
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hybrid.artifacts import RunDir  # noqa: E402
from hybrid.features import feature_matrix  # noqa: E402
from hybrid.surrogate_stage import load_tables  # noqa: E402
from hybrid.surrogates import Surrogate  # noqa: E402

SPLITS = ("train", "val", "test")


def variants(X: dict, cnn: dict, proba_train: np.ndarray, seed: int = 0):
    """Yield (name, predict function over a split name) for every tree variant and the XGBoost reference."""
    for crit in ("gini", "entropy"):
        for msl in (1, 5, 20):
            m = DecisionTreeClassifier(max_depth=6, min_samples_leaf=msl, criterion=crit, random_state=seed)
            m.fit(X["train"], cnn["train"])
            yield f"CART {crit}, min_samples_leaf {msl}", lambda s, m=m: m.predict(X[s])
    for msl in (1, 5, 20):
        m = DecisionTreeRegressor(max_depth=6, min_samples_leaf=msl, random_state=seed).fit(X["train"], proba_train)
        yield f"regression tree on probabilities, min_samples_leaf {msl}", lambda s, m=m: m.predict(X[s]).argmax(1)
    xgb = Surrogate("xgboost", n_classes=proba_train.shape[1], random_state=seed).fit(X["train"], cnn["train"])
    yield "concept XGBoost (the product's surrogate, reference)", lambda s: xgb.predict(X[s])
    rng = np.random.default_rng(seed)
    Xt = X["train"]
    jitter = [Xt + rng.normal(0, 0.1, Xt.shape) * Xt.std(0) for _ in range(20)]
    S = np.concatenate([Xt, *jitter])
    y = np.concatenate([cnn["train"], xgb.predict(np.concatenate(jitter))])
    for msl in (5, 50):
        m = DecisionTreeClassifier(max_depth=6, min_samples_leaf=msl, random_state=seed).fit(S, y)
        yield f"born-again from XGBoost on 21× jittered train, min_samples_leaf {msl}", lambda s, m=m: m.predict(X[s])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run")
    ap.add_argument("--out", default="")
    a = ap.parse_args()
    t = load_tables(RunDir.open(a.run))
    X = {s: feature_matrix(t[s], "concepts")[0] for s in SPLITS}
    cnn = {s: t[s]["pred"] for s in SPLITS}
    lines = [f"# Depth-6 concept trees grown other ways — `python bench/tree_variants.py {a.run}`", "",
             "Fidelity = top-1 agreement with the CNN; κ = Cohen's kappa with the CNN on test.", "",
             "| surrogate | train fidelity | val fidelity | test fidelity | test κ |", "| --- | --- | --- | --- | --- |"]
    for name, predict in variants(X, cnn, t["train"]["proba"]):
        f = {s: float(np.mean(predict(s) == cnn[s])) for s in SPLITS}
        k = cohen_kappa_score(cnn["test"], predict("test"))
        lines.append(f"| {name} | {f['train']:.3f} | {f['val']:.3f} | {f['test']:.3f} | {k:.3f} |")
        print(lines[-1], flush=True)
    if a.out:
        Path(a.out).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
