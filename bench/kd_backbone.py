#!/usr/bin/env python
"""Experiment (not part of the product): knowledge distillation of finished backbones into one.

    python bench/kd_backbone.py --teachers artifacts/runs/bench/default-seed0 artifacts/runs/bench/default-seed1 \\
        artifacts/runs/bench/default-seed2 --seed 0 --alpha 0.5 --temperature 2

The teacher is the mean of the teachers' 8-view TTA probabilities on the (unaugmented) train images;
flips and 90° rotations leave it unchanged, so it stays a valid target for the student's augmented
views (the 2-px shift nearly so). The student is the default preset's recipe and seed with the loss
(1 − α) · CE(labels, smoothing 0.1) + α · T² · CE(teacher^(1/T) renormalised, softmax(logits / T))
(Hinton et al. 2015), selected on val AUC as the product selects. Prints best val AUC and test
ACC / AUC without and with TTA. Val chooses; test reports.
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

import hybrid.train as T  # noqa: E402
from hybrid.artifacts import RunDir  # noqa: E402
from hybrid.config import load_config  # noqa: E402
from hybrid.data import load_dataset  # noqa: E402
from hybrid.metrics import accuracy, auc_ovr  # noqa: E402
from hybrid.stages import load_backbone  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--teachers", nargs="+", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--alpha", type=float, default=0.5)
    ap.add_argument("--temperature", type=float, default=2.0)
    ap.add_argument("--config", default=str(ROOT / "configs/default.toml"))
    a = ap.parse_args()
    t0 = time.perf_counter()
    cfg = load_config(a.config, [f"run.seed={a.seed}"])
    d = load_dataset("dermamnist", cfg["data"]["size"])
    tr, va, te = d.splits["train"], d.splits["val"], d.splits["test"]
    p_t = np.mean([T.predict_proba(load_backbone(RunDir.open(r))[0].fused(), tr.images, tta=True)
                   for r in a.teachers], axis=0)
    print(f"teacher on train: agreement with the labels {accuracy(tr.labels, p_t):.3f} ({time.perf_counter() - t0:.0f} s)")
    soft = torch.tensor(p_t, dtype=torch.float64) ** (1 / a.temperature)
    soft = (soft / soft.sum(1, keepdim=True)).float()
    hard = torch.from_numpy(tr.labels.astype(np.int64))
    tau, alpha = a.temperature, a.alpha

    def kd_loss(module, x, idx, weights, smoothing, mix, cw, ct_batch):
        logits = module(x).float()
        ce = F.cross_entropy(logits, hard[idx], label_smoothing=smoothing)
        kd = F.cross_entropy(logits / tau, soft[idx]) * tau ** 2
        return (1 - alpha) * ce + alpha * kd

    T._loss = kd_loss  # the student's labels are row indices into `hard` and `soft`
    T.class_weights = lambda labels, n, mode: torch.ones(n)
    assert cfg["train"]["class_weight"] == "none" and cfg["train"]["mixup_alpha"] == 0
    model, hist, info = T.train_backbone(tr.images, np.arange(len(tr.labels)), va.images, va.labels, 7, cfg)
    out = {"best val AUC": max(h["val_auc"] for h in hist)}
    for tta in (False, True):
        p = T.predict_proba(model.fused(), te.images, tta=tta)
        out["test TTA" if tta else "test"] = (round(accuracy(te.labels, p), 4), round(auc_ovr(te.labels, p), 4))
    print(f"alpha {alpha} T {tau} seed {a.seed}: {out} ({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
