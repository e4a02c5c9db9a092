#!/usr/bin/env python
"""Joint concept head: what its weight buys in concept-surrogate fidelity and costs the CNN.

For each weight λ (train.concept_weight; 0 = the default, no head) and seed, trains the default
preset (or reuses a finished run), runs `hybrid features` and `hybrid surrogates` on it, and
tabulates the CNN's best val AUC and test ACC/AUC beside the measured-concept surrogates' test
fidelity and kappa with that CNN. Validation AUC is the selection criterion; test is reported.

    python bench/concept_weight.py --weights 0 1 5 20 --seeds 0

Run names: default-seed<s> for λ = 0 (bench_backbone's runs), default-seed<s>-cw<λ> otherwise.
Writes bench/results_concept_weight.md (or --out) and prints it.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from hybrid.artifacts import RunDir  # noqa: E402
from hybrid.external import default_external  # noqa: E402
from hybrid.features import feature_matrix  # noqa: E402
from hybrid.surrogate_stage import load_joblib, load_tables  # noqa: E402
SURROGATES = ("logistic", "tree", "xgboost")


def _stage_done(run: Path, stage: str) -> bool:
    m = run / "manifest.json"
    return m.exists() and "finished" in json.loads(m.read_text())["stages"].get(stage, {})


def _hybrid(*args: str) -> None:
    cmd = [sys.executable, "-m", "hybrid.cli", *args]
    print("$ hybrid", " ".join(args), flush=True)
    subprocess.run(cmd, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), check=True)


def train_fidelity(run: Path, name: str) -> float:
    """A saved surrogate's agreement with the CNN on the train images it was fitted to (runs made before
    the fidelity table had that column included)."""
    r = RunDir.open(run)
    table = load_tables(r)["train"]
    pred = load_joblib(r, f"surrogates/{name}.joblib").predict(feature_matrix(table, name.split("__")[0])[0])
    return float((pred == table["pred"]).mean())


def run_one(weight: float, seed: int, runs_dir: str) -> dict:
    name = f"default-seed{seed}" + (f"-cw{weight:g}" if weight else "")
    run = ROOT / runs_dir / name
    if not _stage_done(run, "evaluate"):
        _hybrid("train", "--config", "configs/default.toml", "--seed", str(seed), "--run", name,
                "--runs-dir", runs_dir, "--quiet", "--set", f"train.concept_weight={weight}")
    if not _stage_done(run, "features"):
        _hybrid("features", str(run))
    if not _stage_done(run, "surrogates"):
        _hybrid("surrogates", str(run))
    if not (run / "evaluate" / "ph2.json").exists():
        _hybrid("evaluate", str(run), "--external", str(default_external("ph2", 28)), "--name", "ph2")
    m = json.loads((run / "manifest.json").read_text())
    assert m["config"]["train"].get("concept_weight", 0.0) == weight, f"{run} was trained with another weight"
    metrics = json.loads((run / "metrics.json").read_text())
    ph2 = json.loads((run / "evaluate" / "ph2.json").read_text())["sets"]["ph2"]["binary"]
    fid = {r["name"]: r for r in json.loads((run / "surrogates" / "fidelity.json").read_text())}
    row = {"weight": weight, "seed": seed, "val_auc": m["train"]["best_val_auc"],
           "acc": metrics["test"]["acc"], "auc": metrics["test"]["auc"], "majority": fid["majority"]["fidelity"],
           "ph2_auc": ph2["auc"], "ph2_sens": ph2["sensitivity"], "ph2_spec": ph2["specificity"]}
    for s in SURROGATES:
        row[f"{s}_fid"], row[f"{s}_kappa"] = fid[f"concepts__{s}"]["fidelity"], fid[f"concepts__{s}"]["kappa"]
    row["tree_train_fid"] = train_fidelity(run, "concepts__tree")
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", type=float, nargs="+", default=[0.0, 1.0, 5.0, 20.0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--runs-dir", default="artifacts/runs/bench")
    ap.add_argument("--out", default="bench/results_concept_weight.md")
    args = ap.parse_args()
    if default_external("ph2", 28) is None:
        print("PH2 not found: expected ../shared/data/external/ph2/ph2_28.npz beside the clone.", file=sys.stderr)
        return 2
    rows = [run_one(w, s, args.runs_dir) for w in args.weights for s in args.seeds]
    cols = ["val_auc", "acc", "auc", "majority"] + [f"{s}_{k}" for s in SURROGATES for k in ("fid", "kappa")] \
        + ["tree_train_fid", "ph2_auc", "ph2_sens", "ph2_spec"]
    header = ["| λ | seed | val AUC | test ACC | test AUC | majority fid | logistic fid / κ | tree ≤ 6 fid / κ | XGBoost fid / κ | tree train fid | PH2 AUC | PH2 sens / spec |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    lines = ["# Joint concept head: concept-surrogate fidelity against CNN accuracy", "",
             f"Command: `python bench/concept_weight.py --weights {' '.join(f'{w:g}' for w in args.weights)} "
             f"--seeds {' '.join(map(str, args.seeds))}"
             + (f" --out {args.out}" if args.out != ap.get_default("out") else "") + "`", "",
             "λ = train.concept_weight (0: the default CNN, no concept head). CNN: best val AUC (the selection "
             "criterion), test ACC / AUC without TTA. Surrogates: fitted to the CNN's train predictions on the "
             "measured concepts; test fidelity / Cohen's kappa with the CNN. Tree train fid: the depth ≤ 6 tree's "
             "agreement with the CNN on the train images it was fitted to. Majority: the always-nevus floor. "
             "PH2 (evaluation only): melanoma-vs-nevus AUC, and sensitivity / specificity at the operating point "
             "chosen on validation (`hybrid evaluate RUN --external ph2_28.npz --name ph2`). "
             "Issue targets: XGBoost κ ≥ 0.75; tree depth ≤ 6 fidelity ≥ 0.85 and κ ≥ 0.60; logistic κ ≥ 0.55.", "",
             *header]
    fmt = lambda r: (f"{r['val_auc']:.4f} | {r['acc']:.3f} | {r['auc']:.3f} | {r['majority']:.3f} | "  # noqa: E731
                     + " | ".join(f"{r[f'{s}_fid']:.3f} / {r[f'{s}_kappa']:.3f}" for s in SURROGATES)
                     + f" | {r['tree_train_fid']:.3f} | {r['ph2_auc']:.3f} | {r['ph2_sens']:.1%} / {r['ph2_spec']:.1%}")
    for r in rows:
        lines.append(f"| {r['weight']:g} | {r['seed']} | {fmt(r)} |")
    if len(args.seeds) > 1:
        lines += ["", "Mean over seeds:", "", *header]
        for w in args.weights:
            sub = [r for r in rows if r["weight"] == w]
            mean = {k: float(np.mean([r[k] for r in sub])) for k in cols}
            lines.append(f"| {w:g} | mean of {len(sub)} | {fmt(mean)} |")
    text = "\n".join(lines) + "\n"
    print(text)
    out = ROOT / args.out
    out.write_text(text)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
