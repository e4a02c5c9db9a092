#!/usr/bin/env python
"""Experiment: how much of DermaMNIST's melanoma-vs-nevus AUC is a HAM10000 acquisition confound?

    python bench/device_confound.py --runs artifacts/runs/bench/default-seed0 [...]

HAM10000 records how each diagnosis was confirmed (`dx_type`). 56% of its nevi are `follow_up`:
lesions photographed again by sequential digital dermoscopy and left unchanged — another
device and another kind of patient than the histopathology-confirmed melanomas and nevi. This
script prints, for the train split, the surrounding skin's CIELAB a* (concept `skin_a`) by class
and confirmation, and for each run:

- melanoma-vs-nevus AUC of the CNN's p(melanoma) on DermaMNIST val and test, against all nevi,
  the follow-up nevi alone and the other nevi (histopathology or consensus) alone; PH2 beside
  (evaluation only, nothing is chosen on it);
- a counterfactual: the non-lesion skin of each test image shifted in CIELAB so that its mean
  equals the median skin colour of the train follow-up nevi, or of the train melanomas, the lesion
  untouched — how far p(melanoma) moves and how the AUCs change. For the melanomas the first is
  the swap and the second the control (their own class's typical skin); for the follow-up nevi the
  other way round. A model that reads the lesion should barely move.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hybrid import audit as AU  # noqa: E402
from hybrid.artifacts import RunDir  # noqa: E402
from hybrid.concepts import lesion_masks  # noqa: E402
from hybrid.data import load_dataset  # noqa: E402
from hybrid.external import load_external  # noqa: E402
from hybrid.stages import load_backbone  # noqa: E402
from hybrid.train import predict_proba  # noqa: E402

MEL, NEV = 4, 5


def skin_lab(images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(CIELAB images (N, S, S, 3), lesion masks (N, S, S), mean skin colour (N, 3)) of uint8 RGB images."""
    from skimage.color import rgb2lab

    masks = lesion_masks(rgb2lab(images))
    lab, mean = AU.skin_lab(images, masks)
    return lab, masks, mean


def auc_against(p_mel: np.ndarray, y: np.ndarray, negatives: np.ndarray) -> float:
    """Melanoma-vs-`negatives` AUC of p(melanoma); negatives a boolean mask of the nevi to count."""
    keep = (y == MEL) | negatives
    return float(roc_auc_score(y[keep] == MEL, p_mel[keep]))


def nevus_groups(y: np.ndarray, dx_type: np.ndarray) -> dict[str, np.ndarray]:
    nev = y == NEV
    return {"all nevi": nev, "follow-up nevi": nev & (dx_type == "follow_up"),
            "other nevi": nev & (dx_type != "follow_up")}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", nargs="+", required=True)
    ap.add_argument("--external", default=str(ROOT.parent / "shared/data/external/ph2/ph2_28.npz"),
                    help="external npz (evaluation only; nothing is chosen on it)")
    a = ap.parse_args()
    t0 = time.perf_counter()
    print(f"# HAM10000's follow-up nevi: photographed apart from the melanomas\n\nMade by `python bench/device_confound.py {' '.join(sys.argv[1:])}`"
          " (bench/device_confound.py says what each table is).\n")
    data = load_dataset("dermamnist", 28).splits
    if data["train"].metadata is None:
        raise SystemExit("HAM10000 metadata not found; this experiment needs dx_type.")
    dx = {s: data[s].metadata["dx_type"].to_numpy() for s in data}
    xtr, ytr = data["train"].images, data["train"].labels
    _, _, tr_skin = skin_lab(xtr)
    print("## Train split: mean CIELAB colour of the skin around the lesion (median over images)\n")
    print("| group | images | skin L* | skin a* | skin b* |\n| --- | --- | --- | --- | --- |")
    groups = {"melanoma": ytr == MEL, **nevus_groups(ytr, dx["train"])}
    for name, g in groups.items():
        L, A, B = np.median(tr_skin[g], 0)
        print(f"| {name} | {g.sum()} | {L:.1f} | {A:.1f} | {B:.1f} |")
    fu = groups["follow-up nevi"]
    for name, g in (("follow-up nevi", fu), ("other nevi", groups["other nevi"])):
        keep = (ytr == MEL) | g
        print(f"\nSkin a* alone as a melanoma score (the lower, the more melanoma), melanomas vs {name} of the "
              f"train split: AUC {1 - roc_auc_score(ytr[keep] == MEL, tr_skin[keep, 1]):.3f}")
    targets = {"follow-up nevi's skin": np.median(tr_skin[fu], 0), "melanomas' skin": np.median(tr_skin[ytr == MEL], 0)}

    xt, yt = data["test"].images, data["test"].labels
    lab, masks, t_skin = skin_lab(xt)
    cf_images = {k: AU.recolour_skin(lab, masks, t_skin, v) for k, v in targets.items()}
    xe, ye = load_external(a.external, 28)
    print("\n## Melanoma-vs-nevus AUC of p(melanoma), by how the nevi were confirmed\n")
    print("| run | val: all / follow-up / other nevi | test: all / follow-up / other nevi | PH2 (read only) |")
    print("| --- | --- | --- | --- |")
    rows = []
    for r in a.runs:
        label = "/".join(Path(r).parts[-2:])
        model, _ = load_backbone(RunDir.open(r))
        fused = model.fused()
        pv = predict_proba(fused, data["val"].images)[:, MEL]
        pt = predict_proba(fused, xt)[:, MEL]
        pe = predict_proba(fused, xe)[:, MEL]
        yv = data["val"].labels
        v = [auc_against(pv, yv, g) for g in nevus_groups(yv, dx["val"]).values()]
        t = [auc_against(pt, yt, g) for g in nevus_groups(yt, dx["test"]).values()]
        e = auc_against(pe, ye, ye == NEV)
        print(f"| {label} | {' / '.join(f'{x:.3f}' for x in v)} | {' / '.join(f'{x:.3f}' for x in t)} | {e:.3f} |")
        cf = {k: predict_proba(fused, im)[:, MEL] for k, im in cf_images.items()}
        rows.append((label, pt, cf))
    print("\n## Counterfactual: the test images' skin recoloured, the lesion kept\n")
    print("| run | skin set to | mean Δp(mel), melanomas / other nevi / follow-up nevi | test AUC all / follow-up / other nevi (before → after) |")
    print("| --- | --- | --- | --- |")
    g = nevus_groups(yt, dx["test"])
    for name, pt, cf in rows:
        for k, pc in cf.items():
            d = [float((pc - pt)[m].mean()) for m in (yt == MEL, g["other nevi"], g["follow-up nevi"])]
            aucs = " / ".join(f"{auc_against(pt, yt, m):.3f} → {auc_against(pc, yt, m):.3f}" for m in g.values())
            print(f"| {name} | {k} | {' / '.join(f'{x:+.3f}' for x in d)} | {aucs} |")
    print(f"\n({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
