#!/usr/bin/env python
"""Experiment (not part of the product): do more test-time views help than the product's 8?

    python bench/tta_views.py --runs artifacts/runs/bench/default-seed0 [...] [--out FILE.md]

The product's TTA averages softmax probabilities over the 8 dihedral views (flips × 90° rotations),
the transformations training saw. Training also shifted images by up to 2 px (reflect-pad and
crop), so this script adds each dihedral view shifted by one pixel up, down, left and right: 8 × 5 =
40 views. Val ACC / AUC decide; test is reported. Same trained backbones, no retraining.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hybrid.artifacts import RunDir  # noqa: E402
from hybrid.augment import dihedral_views, to_float  # noqa: E402
from hybrid.data import load_dataset  # noqa: E402
from hybrid.metrics import accuracy, auc_ovr  # noqa: E402
from hybrid.stages import load_backbone  # noqa: E402

SHIFTS = ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1))


def shifted(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """(B, C, S, S) moved by (dy, dx) pixels, the border filled by reflection (as training's crop_pad)."""
    if dy == dx == 0:
        return x
    s = x.shape[-1]
    p = F.pad(x, (1, 1, 1, 1), mode="reflect")
    return p[:, :, 1 - dy:1 - dy + s, 1 - dx:1 - dx + s]


@torch.no_grad()
def proba(model, images_u8: np.ndarray, views: str, batch: int = 256) -> np.ndarray:
    """Softmax (N, K) averaged over 'plain' (1), 'dihedral' (8) or 'dihedral+shift' (40) views."""
    out = []
    for i in range(0, len(images_u8), batch):
        x = to_float(torch.from_numpy(images_u8[i:i + batch])).contiguous(memory_format=torch.channels_last)
        vs = [x] if views == "plain" else list(dihedral_views(x))
        if views == "dihedral+shift":
            vs = [shifted(v, dy, dx) for v in vs for dy, dx in SHIFTS]
        out.append((sum(F.softmax(model(v), 1) for v in vs) / len(vs)).numpy())
    return np.concatenate(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", nargs="+", required=True)
    ap.add_argument("--out", help="also write the table to this markdown file")
    a = ap.parse_args()
    t0 = time.perf_counter()
    rows = ["| run | views | val ACC / AUC | test ACC / AUC |", "| --- | --- | --- | --- |"]
    for r in a.runs:
        model, _ = load_backbone(RunDir.open(r))
        model = model.fused()
        d = load_dataset("dermamnist", model.config["image_size"])
        va, te = d.splits["val"], d.splits["test"]
        for views in ("plain", "dihedral", "dihedral+shift"):
            pv, pt = proba(model, va.images, views), proba(model, te.images, views)
            rows.append(f"| {Path(r).name} | {views} | {accuracy(va.labels, pv):.4f} / {auc_ovr(va.labels, pv):.4f} | "
                        f"{accuracy(te.labels, pt):.4f} / {auc_ovr(te.labels, pt):.4f} |")
            print(rows[-1], flush=True)
    text = "\n".join(rows) + f"\n\n{time.perf_counter() - t0:.0f} s\n"
    if a.out:
        Path(a.out).write_text(f"`python bench/tta_views.py --runs {' '.join(a.runs)}`\n\n" + text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
