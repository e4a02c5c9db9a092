#!/usr/bin/env python
"""Is the depth-6 concept tree limited by greedy growth? A tree whose top levels are chosen by lookahead.

    python bench/lookahead_tree.py artifacts/runs/bench/default-seed0 [--look 2] [--copies]   # after `hybrid features`

CART picks each split for its own Gini gain. Here the top `look` levels are chosen by what they lead
to: at a node, every concept's best Gini threshold is a candidate; under each candidate both
children are grown (recursively the same way, greedy CART below the lookahead levels, min 5 samples
a leaf) and the candidate whose finished depth-6 subtree agrees most with the CNN on the fitting
rows wins. Same depth, same concepts, same leaf rule as the product's tree — only the choice of the
top splits differs. Fitted on the train split with the CNN's labels, and with --copies also on the
run's transfer copies (as the product's tree is; about 6× the rows and the time), for both trees
alike; agreement on the fitting rows is what the search maximises, val and test report. Prints
fidelity and κ with the CNN for greedy CART and for the lookahead tree.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.tree import DecisionTreeClassifier

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hybrid.artifacts import RunDir  # noqa: E402
from hybrid.distill import READABLE_DEPTH  # noqa: E402
from hybrid.features import feature_matrix  # noqa: E402
from hybrid.fidelity import kappa  # noqa: E402
from hybrid.surrogate_stage import load_tables, load_transfer  # noqa: E402
from hybrid.surrogates import Surrogate  # noqa: E402

DEPTH, MIN_LEAF = READABLE_DEPTH, Surrogate().min_samples_leaf  # the product's readable tree


def cart(X, y, depth, seed):
    return DecisionTreeClassifier(max_depth=depth, min_samples_leaf=MIN_LEAF, random_state=seed).fit(X, y)


def candidates(X, y, seed):
    """Each feature's best Gini threshold at this node: [(feature, threshold)]."""
    out = []
    for f in range(X.shape[1]):
        t = cart(X[:, [f]], y, 1, seed).tree_
        if t.node_count == 3:
            out.append((f, float(t.threshold[0])))
    return out


def grow(X, y, depth, look, seed):
    """A node: ('split', f, t, left, right) chosen by lookahead, or ('cart', fitted tree)."""
    if look == 0 or depth <= 1 or len(y) < 2 * MIN_LEAF or len(np.unique(y)) == 1:
        return ("cart", cart(X, y, depth, seed))
    best, best_hits = None, -1
    for f, t in candidates(X, y, seed):
        m = X[:, f] <= t
        left, right = grow(X[m], y[m], depth - 1, look - 1, seed), grow(X[~m], y[~m], depth - 1, look - 1, seed)
        hits = int((predict(left, X[m]) == y[m]).sum() + (predict(right, X[~m]) == y[~m]).sum())
        if hits > best_hits:
            best, best_hits = ("split", f, t, left, right), hits
    greedy = cart(X, y, depth, seed)
    if best is None or int((greedy.predict(X) == y).sum()) >= best_hits:
        return ("cart", greedy)
    return best


def predict(node, X):
    if node[0] == "cart":
        return node[1].predict(X)
    _, f, t, left, right = node
    out = np.empty(len(X), dtype=np.int64)
    m = X[:, f] <= t
    if m.any():
        out[m] = predict(left, X[m])
    if (~m).any():
        out[~m] = predict(right, X[~m])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run")
    ap.add_argument("--look", type=int, default=2, help="levels chosen by lookahead (default 2)")
    ap.add_argument("--copies", action="store_true", help="fit on train + the run's transfer copies")
    a = ap.parse_args()
    run = RunDir.open(a.run)
    seed = run.manifest["config"]["run"]["seed"]
    t = load_tables(run)
    X = {s: feature_matrix(t[s], "concepts")[0].astype(np.float64) for s in t}
    y = {s: t[s]["pred"].astype(np.int64) for s in t}
    Xfit, yfit = X["train"], y["train"]
    if a.copies:
        tf = load_transfer(run)
        Xfit = np.concatenate([Xfit, feature_matrix(tf, "concepts")[0].astype(np.float64)])
        yfit = np.concatenate([yfit, tf["pred"].astype(np.int64)])
    for name, fit in (("greedy CART", lambda: ("cart", cart(Xfit, yfit, DEPTH, seed))),
                      (f"lookahead {a.look}", lambda: grow(Xfit, yfit, DEPTH, a.look, seed))):
        t0 = time.perf_counter()
        tree = fit()
        cells = []
        for sp in ("train", "val", "test"):
            p = predict(tree, X[sp])
            cells.append(f"{sp} {float((p == y[sp]).mean()):.3f} / κ {kappa(y[sp], p):.3f}")
        print(f"{name} (depth {DEPTH}, {len(yfit)} rows, fit {time.perf_counter() - t0:.0f} s): " + "; ".join(cells), flush=True)


if __name__ == "__main__":
    main()
