#!/usr/bin/env python
"""Experiment (not part of the product): how far does averaging finished backbones move test ACC/AUC
and PH2? It measures the lever a deep ensemble would give, at N times the training cost.

    python bench/bench_ensemble.py --runs artifacts/runs/bench/default-seed0 artifacts/runs/bench/default-seed1 \\
        artifacts/runs/bench/default-seed2 artifacts/runs/bench/gpu-seed0-e60

Every probability is the run's 8-view TTA average (predictions/<split>_tta_proba.npy for val and
test, the same TTA on PH2 at the run's own size). An ensemble is the arithmetic mean of its members'
probabilities, with nothing fitted or chosen on test or PH2. Rows: each run alone, the mean of the
runs of each image size (when a size has more than one run), and the mean of all runs. The melanoma
operating point is the product's, fitted on validation (temperature, 80%-sensitivity threshold).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hybrid.artifacts import RunDir  # noqa: E402
from hybrid.evaluate_stage import operating_point, set_metrics  # noqa: E402
from hybrid.external import default_external, load_external  # noqa: E402
from hybrid.metrics import accuracy, auc_ovr, bootstrap_ci  # noqa: E402
from hybrid.stages import load_backbone  # noqa: E402
from hybrid.train import predict_proba  # noqa: E402

N_BOOT = 500


def member(path: str) -> dict:
    """One finished run's TTA probabilities on val, test and PH2, and its labels and image size."""
    rd = RunDir.open(ROOT / path)
    pred = ROOT / path / "predictions"
    if not (pred / "test_tta_proba.npy").is_file():
        raise SystemExit(f"{path} has no predictions/test_tta_proba.npy; train it with tta = true first.")
    size = rd.manifest["config"]["data"]["size"]   # as `hybrid evaluate` picks PH2 for a run
    ph2_x, ph2_y = load_external(default_external("ph2", size), size)
    return {"name": Path(path).name, "run": rd, "size": size,
            "p": {"val": np.load(pred / "val_tta_proba.npy"), "test": np.load(pred / "test_tta_proba.npy"),
                  "ph2": predict_proba(load_backbone(rd)[0].fused(), ph2_x, tta=True)},
            "y": {"val": np.load(pred / "val_labels.npy").reshape(-1),
                  "test": np.load(pred / "test_labels.npy").reshape(-1), "ph2": ph2_y}}


def row(name: str, members: list[dict]) -> dict:
    """Metrics of the mean probability of `members` (one member: the run alone)."""
    p = {s: np.mean([m["p"][s] for m in members], axis=0) for s in ("val", "test", "ph2")}
    y = members[0]["y"]
    op = operating_point(members[0]["run"], {"val": {"proba": p["val"], "labels": y["val"]}})
    ph2 = set_metrics(p["ph2"], y["ph2"], op, {}, n_boot=N_BOOT)["binary"]
    return {"name": name, "n": len(members), "val_auc": auc_ovr(y["val"], p["val"]),
            "acc": accuracy(y["test"], p["test"]), "acc_ci": bootstrap_ci(y["test"], p["test"], accuracy, N_BOOT),
            "auc": auc_ovr(y["test"], p["test"]), "auc_ci": bootstrap_ci(y["test"], p["test"], auc_ovr, N_BOOT),
            "ph2_auc": ph2["auc"], "ph2_ci": ph2["auc_ci95"], "ph2_sens": ph2["sensitivity"],
            "ph2_spec": ph2["specificity"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", nargs="+", required=True, help="finished run folders with TTA predictions")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results_ensemble.md"))
    args = ap.parse_args()
    members = [member(r) for r in args.runs]
    for m in members[1:]:
        if any(not np.array_equal(m["y"][s], members[0]["y"][s]) for s in m["y"]):
            raise SystemExit(f"{m['name']} has other val/test/PH2 labels than {members[0]['name']}; "
                             "an ensemble needs the same images in the same order.")
    rows = [row(m["name"], [m]) for m in members]
    sizes = sorted({m["size"] for m in members})
    for s in sizes:
        group = [m for m in members if m["size"] == s]
        if 1 < len(group) < len(members):
            rows.append(row(f"mean of the {len(group)} {s}-px runs", group))
    if len(members) > 1:
        rows.append(row(f"mean of all {len(members)} runs", members))

    command = "python bench/bench_ensemble.py --runs " + " ".join(args.runs) + (
        f" --out {args.out}" if args.out != ap.get_default("out") else "")
    lines = ["# Ensembles of finished backbones (an experiment, not in the product)", "",
             f"Command: `{command}`", "",
             "8-view TTA probabilities; an ensemble is the plain mean of its members' probabilities. "
             f"Test intervals: bootstrap 95% ({N_BOOT} resamples). PH2 (40 melanomas, 160 nevi) is evaluation "
             "only; its operating point (temperature, 80%-sensitivity threshold) is fitted on validation.", "",
             "| model | val AUC | test ACC [95%] | test AUC [95%] | PH2 mel-vs-nevus AUC [95%] | PH2 sensitivity / specificity |",
             "| --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append(f"| {r['name']} | {r['val_auc']:.4f} | {r['acc']:.3f} [{r['acc_ci'][0]:.3f}, {r['acc_ci'][1]:.3f}] | "
                     f"{r['auc']:.3f} [{r['auc_ci'][0]:.3f}, {r['auc_ci'][1]:.3f}] | "
                     f"{r['ph2_auc']:.3f} [{r['ph2_ci'][0]:.2f}, {r['ph2_ci'][1]:.2f}] | "
                     f"{r['ph2_sens']:.1%} / {r['ph2_spec']:.1%} |")
    text = "\n".join(lines) + "\n"
    print(text)
    Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
