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
sys.path.insert(0, str(ROOT))

from hybrid import audit as AU  # noqa: E402


def hybrid(*args: str) -> None:
    cmd = [sys.executable, "-m", "hybrid.cli", *args]
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=ROOT, check=True)


# Runs seen before rule v2 was fixed (hybrid/audit.py), all width-32 backbones (the default then);
# every other row is held out from its design.
DESIGN_RUNS = {(0, "ruler", 32), (1, "ruler", 32)}
RESULTS = ROOT / "bench" / "results_planted_shortcut"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="configs/default.toml")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--stamp", default="ruler")
    ap.add_argument("--klass", type=int, default=4, help="class whose train images carry the stamp (4 = melanoma)")
    ap.add_argument("--fraction", type=float, default=0.9)
    ap.add_argument("--fraction-other", type=float, default=0.05)
    ap.add_argument("--runs-dir", default="artifacts/runs/bench")
    ap.add_argument("--reaudit", action="store_true", help="rerun the audit even when one with this stamp exists")
    args = ap.parse_args()
    preset = Path(args.config).stem
    store = RESULTS.with_suffix(".json")
    rows = {key(r): r for r in (json.loads(store.read_text()) if store.exists() else [])}
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
            audit_file = run / "audit" / "audit.json"
            if args.reaudit or not audit_file.exists() or json.loads(audit_file.read_text())["shortcut"]["kind"] != args.stamp:
                hybrid("audit", str(run), "--stamp", args.stamp, "--seed", str(seed), "--quiet")
            audit = json.loads(audit_file.read_text())
            manifest = json.loads((run / "manifest.json").read_text())
            enr = audit["shortcut"]["enrichment"]
            width = manifest["config"]["model"]["width"]
            row = {"seed": seed, "model": "planted" if planted else "clean", "width": width, **audit["shortcut"],
                   "flagged_v1": AU.shortcut_flag(enr, AU.FLAG_METHODS_V1)[0], "flagged_v2": AU.shortcut_flag(enr)[0],
                   "design": (seed, args.stamp, width) in DESIGN_RUNS,
                   "n_stamped_train": manifest.get("data", {}).get("stamp", {}).get("n_stamped", 0),
                   "audit_s": manifest["stages"]["audit"]["wall_s"]}
            rows[key(row)] = row
    rows = [rows[k] for k in sorted(rows, key=lambda k: (-k[3], k[1] != "ruler", k[1], k[0], k[2]))]
    store.write_text(json.dumps(rows, indent=1, default=bool))
    text = render(rows, args)
    print(text)
    RESULTS.with_suffix(".md").write_text(text)
    return 0


def key(row: dict) -> tuple:
    """A row per model: (seed, stamp, clean|planted, backbone width)."""
    return row["seed"], row["kind"], row["model"], row["width"]


def render(rows: list[dict], args) -> str:
    yes = lambda b: "**yes**" if b else "no"  # noqa: E731
    lines = ["# Planted-shortcut check", "",
             "Commands: `python bench/planted_shortcut.py --seeds 0 1 --stamp ruler`, then `--seeds 2 --stamp ruler` and "
             "`--seeds 0 --stamp dot` (backbone width 32, the default then), and after the default became width 24, "
             "`--seeds 0 --stamp ruler` again. Planted runs: the stamp on "
             f"{args.fraction:.0%} of class {args.klass} (melanoma) and {args.fraction_other:.0%} of every other class in train; "
             "val and test untouched; the default preset otherwise. Every model, clean or planted, is then probed with "
             "the same stamp drawn on a fixed sample of test images.", "",
             f"Rule v1, fixed before any run: flag when the median over gradient, SmoothGrad and SHAP (expected "
             f"gradients) of the stamp-region enrichment (attribution share ÷ area share) is ≥ {AU.FLAG_ENRICHMENT:g}. "
             "It missed both planted ruler models of the design runs. Rule v2, fixed after the design runs and before "
             f"the held-out ones: SHAP (expected gradients) enrichment alone ≥ {AU.FLAG_ENRICHMENT:g} (why: hybrid/audit.py).", "",
             "| runs | width | stamp | seed | model | stamped train images | ACC clean | ACC stamped | predictions changed | "
             "CNN-majority → melanoma | melanoma rate clean → stamped | enrichment: gradient / SmoothGrad / Grad-CAM / SHAP | "
             "flagged v1 | flagged v2 | artifact concepts' SHAP rank | audit s |",
             "| --- |" * 1 + " --- |" * 15]
    for r in rows:
        e = r["enrichment"]
        lines.append(f"| {'design' if r['design'] else 'held out'} | {r['width']} | {r['kind']} | {r['seed']} | {r['model']} | {r['n_stamped_train']} | "
                     f"{r['acc_clean']:.3f} | {r['acc_stamped']:.3f} | {r['flip_rate']:.1%} | {r['majority_to_target']:.1%} | "
                     f"{r['target_rate_clean']:.1%} → {r['target_rate_stamped']:.1%} | "
                     + " / ".join(f"{e[m]:.2f}" if m in e else "–" for m in ("gradient", "smoothgrad", "gradcam", "expected_gradients"))
                     + f" | {yes(r['flagged_v1'])} | {yes(r['flagged_v2'])} | "
                     + ", ".join(f"{c} #{k}" for c, k in r["artifact_concept_rank"].items()) + f" of {r['n_features']} | {r['audit_s']:.0f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
