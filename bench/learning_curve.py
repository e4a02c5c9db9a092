#!/usr/bin/env python
"""Learning curve of the default backbone: what does more training data buy on DermaMNIST-28?

    python bench/learning_curve.py                        # fractions 0.25 0.5 1.0 of train, seed 0
    python bench/learning_curve.py --fractions 0.5 1.0 --seed 1

Trains the default preset on a stratified, seeded fraction of the train split (the same validation
split chooses the model) and reports test ACC / AUC with and without 8-view TTA. Every fraction
gets the preset's epochs, or with --same-steps the optimiser steps of the full run (epochs scaled
by 1/fraction), which separates more images from more training. The fraction 1.0 is the default
run itself and reproduces its metrics. The gain from each fraction to the next says how far more
images of this kind would carry the recipe. Writes bench/results_learning_curve.md (--out).
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hybrid.config import load_config  # noqa: E402
from hybrid.data import load_dataset  # noqa: E402
from hybrid.metrics import accuracy, auc_ovr  # noqa: E402
from hybrid.train import predict_proba, train_backbone  # noqa: E402


def subset(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Indices of a stratified `fraction` of `labels` (all of them at 1.0)."""
    idx = np.arange(len(labels))
    if fraction >= 1.0:
        return idx
    return np.sort(train_test_split(idx, train_size=fraction, stratify=labels, random_state=seed)[0])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=str(ROOT / "configs" / "default.toml"))
    ap.add_argument("--fractions", type=float, nargs="+", default=[0.25, 0.5, 1.0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--same-steps", action="store_true",
                    help="scale epochs by 1/fraction so every fraction gets the optimiser steps of the full run")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results_learning_curve.md"))
    args = ap.parse_args()
    cfg = load_config(args.config, [f"run.seed={args.seed}"])
    data = load_dataset(cfg["data"]["flag"], cfg["data"]["size"])
    tr, va, te = (data.splits[s] for s in ("train", "val", "test"))
    k = len(data.class_names)
    rows = []
    for f in args.fractions:
        idx = subset(tr.labels, f, args.seed)
        epochs = round(cfg["train"]["epochs"] / f) if args.same_steps else cfg["train"]["epochs"]
        cfg_f = {**cfg, "train": {**cfg["train"], "epochs": epochs}}
        t0 = time.perf_counter()
        model, _, info = train_backbone(tr.images[idx], tr.labels[idx], va.images, va.labels, k, cfg_f, progress=False)
        secs = time.perf_counter() - t0
        fused, bs = model.fused(), cfg["train"]["eval_batch_size"]  # evaluated as the train stage does
        p, p_tta = (predict_proba(fused, te.images, bs, tta=t) for t in (False, True))
        rows.append({"fraction": f, "n": len(idx), "epochs": epochs, "val_auc": info["best_val_auc"], "best_epoch": info["best_epoch"],
                     "acc": accuracy(te.labels, p), "auc": auc_ovr(te.labels, p),
                     "acc_tta": accuracy(te.labels, p_tta), "auc_tta": auc_ovr(te.labels, p_tta), "train_s": secs})
        print(rows[-1], flush=True)

    lines = ["# Learning curve of the default backbone (DermaMNIST-28)", "",
             f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores, python {platform.python_version()}. "
             f"Config `{Path(args.config).relative_to(ROOT) if Path(args.config).is_relative_to(ROOT) else args.config}`, "
             f"seed {args.seed}; " + ("epochs scaled by 1/fraction, so every fraction gets the optimiser steps of the full run"
                                      if args.same_steps else f"{cfg['train']['epochs']} epochs for every fraction")
             + "; model chosen on the full validation split.",
             f"Command: `python bench/learning_curve.py --fractions {' '.join(map(str, args.fractions))} --seed {args.seed}"
             + (" --same-steps" if args.same_steps else "") + "`", "",
             "| train fraction | train images | epochs | best val AUC | test ACC | test AUC | ACC (TTA) | AUC (TTA) | best epoch | train s |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append(f"| {r['fraction']:g} | {r['n']} | {r['epochs']} | {r['val_auc']:.4f} | {r['acc']:.4f} | {r['auc']:.4f} | "
                     f"{r['acc_tta']:.4f} | {r['auc_tta']:.4f} | {r['best_epoch']} | {r['train_s']:.0f} |")
    if len(rows) > 1:
        steps = [f"{a['n']} → {b['n']} images: ACC {b['acc'] - a['acc']:+.4f}, AUC {b['auc'] - a['auc']:+.4f} "
                 f"(TTA: {b['acc_tta'] - a['acc_tta']:+.4f}, {b['auc_tta'] - a['auc_tta']:+.4f})"
                 for a, b in zip(rows, rows[1:])]
        lines += ["", "Gain from each row to the next: " + "; ".join(steps) + "."]
    text = "\n".join(lines) + "\n"
    print(text)
    Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
