#!/usr/bin/env python
"""Experiment (not part of the product): which melanoma score travels to another clinic?

    python bench/pairwise_score.py --runs artifacts/runs/bench/default-seed0 [...]

The product scores melanoma with the calibrated 7-way p(melanoma). Under an acquisition shift the
CNN may move a melanoma's probability to a third class (say benign keratosis) rather than to nevus,
lowering p(mel) without making the image look more like a nevus. The pairwise score
p(mel) / (p(mel) + p(nevus)) — the probability of melanoma given melanoma-or-nevus — ignores that
mass. This script compares the two on DermaMNIST val (where a choice would be made) and test, and
reports PH2 (evaluation only): mel-vs-nevus AUC, and sensitivity / specificity at the threshold
chosen on val for the target sensitivity, as hybrid.operating chooses it. The pairwise score is also
applied to every non-nevus class, so its cost on the other five classes (their share called
melanoma) is printed beside. A third score follows the two-step habit of dermoscopy (first
melanocytic or not, then melanoma or nevus): the pairwise score where p(mel) + p(nevus) ≥ 0.5,
else 0.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hybrid.artifacts import RunDir  # noqa: E402
from hybrid.external import load_external  # noqa: E402
from hybrid.operating import calibrate, fit_temperature, threshold_for_sensitivity  # noqa: E402
from hybrid.stages import load_backbone  # noqa: E402
from hybrid.train import predict_proba  # noqa: E402

MEL, NEV = 4, 5


def scores(p: np.ndarray) -> dict[str, np.ndarray]:
    """Calibrated probabilities (N, 7) → the melanoma scores (N,)."""
    melanocytic = p[:, MEL] + p[:, NEV]
    pairwise = p[:, MEL] / np.clip(melanocytic, 1e-12, None)
    return {"p(mel)": p[:, MEL], "pairwise": pairwise, "gated pairwise": np.where(melanocytic >= 0.5, pairwise, 0.0)}


def view(s: np.ndarray, y: np.ndarray, thr: float) -> dict:
    keep = (y == MEL) | (y == NEV)
    t, c = y[keep] == MEL, s[keep] >= thr
    other = (y != MEL) & (y != NEV)
    return {"auc": roc_auc_score(t, s[keep]), "sens": c[t].mean(), "spec": (~c[~t]).mean(),
            "other called mel": (s[other] >= thr).mean() if other.any() else np.nan}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", nargs="+", required=True)
    ap.add_argument("--external", default=str(ROOT.parent / "shared/data/external/ph2/ph2_28.npz"),
                    help="external npz (evaluation only; nothing is chosen on it)")
    ap.add_argument("--sensitivity", type=float, default=0.80)
    ap.add_argument("--tta", action="store_true", help="8-view TTA probabilities (default: plain, as the product's tables)")
    a = ap.parse_args()
    print("| run | score | val AUC | test AUC / sens / spec / other→mel | PH2 AUC / sens / spec |")
    print("| --- | --- | --- | --- | --- |")
    for r in a.runs:
        run = RunDir.open(r)
        model, _ = load_backbone(run)
        kind = "tta_proba" if a.tta else "proba"
        load = lambda split, what: np.load(run.verify(f"predictions/{split}_{what}.npy"))  # noqa: E731
        pv, yv = load("val", kind), load("val", "labels").reshape(-1)
        pt, yt = load("test", kind), load("test", "labels").reshape(-1)
        xe, ye = load_external(a.external, model.config["image_size"])
        pe = predict_proba(model.fused(), xe, tta=a.tta)
        temp = fit_temperature(pv, yv)
        sv, st, se = (scores(calibrate(p, temp)) for p in (pv, pt, pe))
        for name in sv:
            thr = threshold_for_sensitivity(sv[name], yv == MEL, a.sensitivity)
            v, t, e = view(sv[name], yv, thr), view(st[name], yt, thr), view(se[name], ye, thr)
            print(f"| {Path(r).name} | {name} | {v['auc']:.4f} | {t['auc']:.4f} / {t['sens']:.3f} / {t['spec']:.3f} / "
                  f"{t['other called mel']:.3f} | {e['auc']:.4f} / {e['sens']:.3f} / {e['spec']:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
