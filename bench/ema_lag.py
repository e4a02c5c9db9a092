#!/usr/bin/env python
"""How far does a run's weight average (EMA) lag its live weights? Validation AUC / ACC of both.

    python bench/ema_lag.py artifacts/runs/bench/gpu-seed0-e20

Reads the run's last checkpoint (checksum-verified, weights only), which holds the live weights
and their exponential moving average after the last epoch, and scores both on the validation split
without TTA — the numbers training logs for the average. A large gap after a short schedule means
the average still carries the random initial weights (see `train.ema_warmup`).
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hybrid.artifacts import RunDir  # noqa: E402
from hybrid.backbone import from_config  # noqa: E402
from hybrid.data import load_dataset  # noqa: E402
from hybrid.metrics import accuracy, auc_ovr  # noqa: E402
from hybrid.stages import load_backbone  # noqa: E402
from hybrid.train import predict_proba  # noqa: E402


def main(path: str) -> None:
    run = RunDir.open(path)
    _, saved = load_backbone(run)
    ckpt = run.load_torch("checkpoints/last.pt")
    if ckpt.get("ema") is None:
        sys.exit(f"{path}: the run kept no weight average (train.ema_decay = 0); nothing to compare.")
    cfg = run.manifest["config"]
    val = load_dataset(cfg["data"]["flag"], cfg["data"]["size"], cfg["data"]["root"] or None).splits["val"]
    print(f"{path}: epoch {ckpt['epoch']}, ema_decay {cfg['train']['ema_decay']}, "
          f"ema_warmup {cfg['train'].get('ema_warmup', False)}")
    for name in ("model", "ema"):
        model = from_config(saved["config"])
        model.load_state_dict(ckpt[name])
        model.eval()
        p = predict_proba(model.fused(), val.images, cfg["train"]["eval_batch_size"], False)
        label = "live weights" if name == "model" else "weight average"
        print(f"  {label:15s} val AUC {auc_ovr(val.labels, p):.4f}  val ACC {accuracy(val.labels, p):.4f}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
