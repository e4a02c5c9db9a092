#!/usr/bin/env python
"""Planted-shortcut check: does the audit flag a model trained with a stamped shortcut, and leave
the clean model unflagged? For each seed: a clean run and a planted run of the same preset (the
stamp on `--fraction` of class `--klass` and `--fraction-other` of the rest of train), features,
surrogates and `hybrid audit` on both, with the flag rule fixed in hybrid.audit before any run.

    python bench/planted_shortcut.py --config configs/default.toml --seeds 0 1 --stamp ruler

Clean runs are shared with bench/bench_backbone.py (same names); finished runs are reused.
Writes bench/results_planted_shortcut.md.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def hybrid(*args: str) -> None:
    cmd = [sys.executable, "-m", "hybrid.cli", *args]
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=ROOT, check=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="configs/default.toml")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--stamp", default="ruler")
    ap.add_argument("--klass", type=int, default=4, help="class whose train images carry the stamp (4 = melanoma)")
    ap.add_argument("--fraction", type=float, default=0.9)
    ap.add_argument("--fraction-other", type=float, default=0.05)
    ap.add_argument("--runs-dir", default="artifacts/runs/bench")
    args = ap.parse_args()
    preset = Path(args.config).stem
    rows = []
    for seed in args.seeds:
        for planted in (False, True):
            name = f"{preset}-seed{seed}" + (f"-planted-{args.stamp}" if planted else "")
            run = ROOT / args.runs_dir / name
            if not (run / "backbone.pt").exists():
                extra = ["--set", f'data.stamp.kind="{args.stamp}"', "--set", f"data.stamp.class={args.klass}",
                         "--set", f"data.stamp.fraction={args.fraction}", "--set", f"data.stamp.fraction_other={args.fraction_other}"] if planted else []
                hybrid("train", "--config", args.config, "--seed", str(seed), "--run", name, "--runs-dir", args.runs_dir, "--quiet", *extra)
            if not (run / "surrogates" / "fidelity.json").exists():
                hybrid("features", str(run))
                hybrid("surrogates", str(run), "--n-bootstrap", "200")
            hybrid("audit", str(run), "--stamp", args.stamp, "--seed", str(seed), "--quiet")
            audit = json.loads((run / "audit" / "audit.json").read_text())
            manifest = json.loads((run / "manifest.json").read_text())
            rows.append({"seed": seed, "model": "planted" if planted else "clean", **audit["shortcut"],
                         "n_stamped_train": manifest.get("data", {}).get("stamp", {}).get("n_stamped", 0),
                         "audit_s": manifest["stages"]["audit"]["wall_s"]})
    lines = ["# Planted-shortcut check", "",
             f"Command: `python bench/planted_shortcut.py --config {args.config} --seeds {' '.join(map(str, args.seeds))} "
             f"--stamp {args.stamp}`. Planted runs: a '{args.stamp}' stamp on {args.fraction:.0%} of class {args.klass} "
             f"and {args.fraction_other:.0%} of every other class in train; val and test untouched. Each model is then "
             f"probed with the same stamp on {rows[0]['n']} test images.", "",
             "Flag rule (fixed in `hybrid/audit.py` before these runs): median over gradient, SmoothGrad and SHAP "
             "(expected gradients) of the stamp-region enrichment ≥ 3.", "",
             "| seed | model | stamped train images | ACC clean | ACC stamped | predictions changed | CNN-majority → target class | "
             "target-class rate clean → stamped | enrichment (gradient / SmoothGrad / SHAP) | flagged | artifact concepts' SHAP rank | audit s |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        e = r["enrichment"]
        lines.append(f"| {r['seed']} | {r['model']} | {r['n_stamped_train']} | {r['acc_clean']:.3f} | {r['acc_stamped']:.3f} | "
                     f"{r['flip_rate']:.1%} | {r['majority_to_target']:.1%} | {r['target_rate_clean']:.1%} → {r['target_rate_stamped']:.1%} | "
                     + " / ".join(f"{e.get(m, float('nan')):.2f}" for m in ("gradient", "smoothgrad", "expected_gradients"))
                     + f" | {'**yes**' if r['flagged'] else 'no'} | "
                     + ", ".join(f"{c} #{k}" for c, k in r["artifact_concept_rank"].items()) + f" | {r['audit_s']:.0f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    (ROOT / "bench" / "results_planted_shortcut.md").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
