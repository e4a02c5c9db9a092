#!/usr/bin/env python
"""Does the depth-≤ 6 concept tree imitate the CNN better with CIELAB hue angle and chroma?

    python bench/hue_chroma_tree.py artifacts/runs/bench/default-seed0   # after `hybrid features`

A split on a* or b* alone cannot say "yellower than it is red"; hue angle atan2(b*, a*) (degrees)
and chroma hypot(a*, b*) can. Six columns (centre, outer zone, lesion mask) are derived from the
run's concept means and added to the 41 concepts; the tree is the product's (depth 1–6 chosen on
val fidelity, fitted on train + the transfer copies, CNN labels). Prints train / val / test
fidelity and κ with the CNN for both feature sets. Val chooses, test reports.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from hybrid.artifacts import RunDir  # noqa: E402
from hybrid.concepts import CONCEPT_NAMES  # noqa: E402
from hybrid.features import feature_matrix  # noqa: E402
from hybrid.fidelity import kappa  # noqa: E402
from hybrid.surrogate_stage import load_tables, load_transfer  # noqa: E402
from transfer_tree import best_tree  # noqa: E402


def with_hue_chroma(X: np.ndarray) -> np.ndarray:
    """(n, 41) concepts → (n, 47): + hue angle (°) and chroma for the centre, outer zone and lesion."""
    i = {n: k for k, n in enumerate(CONCEPT_NAMES)}
    cols = []
    for zone in ("centre", "outer", "lesion"):
        a, b = X[:, i[f"{zone}_a"]], X[:, i[f"{zone}_b"]]
        cols += [np.degrees(np.arctan2(b, a)), np.hypot(a, b)]
    return np.column_stack([X] + cols)


def main(path: str) -> None:
    run = RunDir.open(path)
    seed = run.manifest["config"]["run"]["seed"]
    t, tf = load_tables(run), load_transfer(run)
    X = {s: feature_matrix(t[s], "concepts")[0] for s in t}
    y = {s: t[s]["pred"] for s in t}
    Xfit = np.concatenate([X["train"], feature_matrix(tf, "concepts")[0]])
    yfit = np.concatenate([y["train"], tf["pred"]])
    for name, f in (("41 concepts", lambda Z: Z), ("41 + hue/chroma", with_hue_chroma)):
        tree = best_tree(f(Xfit), yfit, f(X["val"]), y["val"], seed)
        cells = []
        for sp in ("train", "val", "test"):
            p = tree.predict(f(X[sp]))
            cells.append(f"{sp} {float((p == y[sp]).mean()):.3f} / κ {kappa(y[sp], p):.3f}")
        print(f"{name}: depth {tree.complexity()['depth']}; " + "; ".join(cells), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
