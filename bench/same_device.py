#!/usr/bin/env python
"""Experiment (not part of the product): train without the nevi photographed by the other device.

    python bench/same_device.py --seed 0 [--config configs/default.toml] [--set KEY=VALUE]

bench/device_confound.py shows that HAM10000's follow-up nevi (56% of the train nevi) come from
another device, that their skin colour alone tells them from melanomas, and that the CNN's
melanoma-vs-nevus AUC against the other nevi — histopathology- or consensus-confirmed, photographed
like the melanomas — is 0.80–0.85, not the 0.91–0.93 of all nevi. Would the CNN rank melanomas above
those nevi better if it never saw the easy ones? This trains the preset's recipe (seed, selection on
val AUC as the product selects) on the train split without its follow-up nevi and prints the
melanoma-vs-nevus AUC on val and test against all / follow-up / other nevi, 7-way test ACC / AUC
and PH2's melanoma-vs-nevus AUC (evaluation only: nothing is chosen on it). The question is decided
on val's "other nevi" column; compare with device_confound.py's rows for the default runs.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from device_confound import MEL, NEV, auc_against, nevus_groups  # noqa: E402

import hybrid.train as T  # noqa: E402
from hybrid.config import load_config  # noqa: E402
from hybrid.data import load_dataset  # noqa: E402
from hybrid.external import load_external  # noqa: E402
from hybrid.metrics import accuracy, auc_ovr  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--config", default=str(ROOT / "configs/default.toml"))
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--external", default=str(ROOT.parent / "shared/data/external/ph2/ph2_28.npz"))
    a = ap.parse_args()
    t0 = time.perf_counter()
    cfg = load_config(a.config, [f"run.seed={a.seed}", *a.set])
    d = load_dataset("dermamnist", cfg["data"]["size"]).splits
    dx = {s: d[s].metadata["dx_type"].to_numpy() for s in d}
    tr = d["train"]
    keep = ~((tr.labels == NEV) & (dx["train"] == "follow_up"))
    print(f"train images kept: {keep.sum()} of {len(keep)} (dropped {int((~keep).sum())} follow-up nevi)")
    model, hist, info = T.train_backbone(tr.images[keep], tr.labels[keep], d["val"].images, d["val"].labels, 7, cfg)
    t_train = time.perf_counter() - t0
    fused = model.fused()
    xe, ye = load_external(a.external, cfg["data"]["size"])
    row = {}
    for s in ("val", "test"):
        p = T.predict_proba(fused, d[s].images)
        y = d[s].labels
        row[s] = " / ".join(f"{auc_against(p[:, MEL], y, g):.3f}" for g in nevus_groups(y, dx[s]).values())
        if s == "test":
            pt = T.predict_proba(fused, d[s].images, tta=True)
            row["test 7-way"] = (f"{accuracy(y, p):.4f} / {auc_ovr(y, p):.4f}, TTA "
                                 f"{accuracy(y, pt):.4f} / {auc_ovr(y, pt):.4f}")
    pe = T.predict_proba(fused, xe)
    row["PH2"] = f"{auc_against(pe[:, MEL], ye, ye == NEV):.3f}"
    print(f"seed {a.seed}: best val AUC {info['best_val_auc']:.4f} (epoch {info['best_epoch']}); mel-vs-nevus AUC "
          f"all / follow-up / other nevi: val {row['val']}, test {row['test']}; test ACC / AUC {row['test 7-way']}; "
          f"PH2 {row['PH2']} (training {t_train:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
