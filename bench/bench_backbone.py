#!/usr/bin/env python
"""Backbone benchmark: train a preset on several seeds, one process each, and report
mean ± spread of test ACC/AUC with wall time and peak RSS from each run's manifest.

    python bench/bench_backbone.py --config configs/default.toml --seeds 0 1 2
    python bench/bench_backbone.py --config configs/gpu.toml --seeds 0 --epochs 2   # time per epoch only

Writes bench/results_backbone_<preset>.md (or --out) and prints the same table.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="configs/default.toml")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, help="override the preset's epochs (e.g. to time a few on a CPU)")
    ap.add_argument("--runs-dir", default="artifacts/runs/bench")
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--out", help="markdown file to write (default: bench/results_backbone_<preset>.md)")
    ap.add_argument("--reuse", action="store_true",
                    help="read seeds whose run already finished instead of retraining them")
    args = ap.parse_args()
    preset = Path(args.config).stem
    rows = []
    for seed in args.seeds:
        name = f"{preset}-seed{seed}" + (f"-e{args.epochs}" if args.epochs else "")
        cmd = [sys.executable, "-m", "hybrid.cli", "train", "--config", args.config, "--seed", str(seed),
               "--run", name, "--runs-dir", args.runs_dir, "--quiet"]
        if args.epochs:
            cmd += ["--epochs", str(args.epochs)]
        for s in args.set:
            cmd += ["--set", s]
        run = ROOT / args.runs_dir / name
        done = (run / "manifest.json").exists() and \
            "finished" in json.loads((run / "manifest.json").read_text())["stages"].get("evaluate", {})
        if args.reuse and done:
            print(f"reusing finished run {run}", flush=True)
        else:
            print("$", " ".join(cmd), flush=True)
            r = subprocess.run(cmd, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)))
            if r.returncode:
                return r.returncode
        m = json.loads((run / "manifest.json").read_text())
        metrics = json.loads((run / "metrics.json").read_text())
        # training's own stages: later stages run in the same folder (features, PH2) are not counted
        st = {k: v for k, v in m["stages"].items() if k in ("load_data", "train", "evaluate")}
        epochs = m["train"]["epochs_done"]
        rows.append({
            "seed": seed, "acc": metrics["test"]["acc"], "auc": metrics["test"]["auc"],
            "acc_tta": metrics["test_tta"]["acc"], "auc_tta": metrics["test_tta"]["auc"],
            "best_epoch": m["train"]["best_epoch"], "val_auc": m["train"]["best_val_auc"], "epochs": epochs,
            "train_s": st["train"]["wall_s"], "s_per_epoch": st["train"]["wall_s"] / max(epochs, 1),
            "total_s": sum(v["wall_s"] for v in st.values()),
            "peak_rss_mb": max(v["peak_rss_mb"] for v in st.values()), "device": m["train"]["device"],
        })
    lines = [f"# Backbone benchmark — `{args.config}`", "",
             f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores, device {rows[0]['device']}, "
             f"python {platform.python_version()}.",
             f"Command: `python bench/bench_backbone.py --config {args.config} --seeds {' '.join(map(str, args.seeds))}"
             + (f" --epochs {args.epochs}" if args.epochs else "") + "".join(f" --set {kv}" for kv in args.set)
             + (f" --runs-dir {args.runs_dir}" if args.runs_dir != "artifacts/runs/bench" else "")
             + (f" --out {args.out}" if args.out else "") + "`", "",
             "| seed | best val AUC | test ACC | test AUC | ACC (TTA) | AUC (TTA) | best epoch | epochs | s/epoch | train s | total s | peak RSS MiB |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append(f"| {r['seed']} | {r['val_auc']:.4f} | {r['acc']:.4f} | {r['auc']:.4f} | {r['acc_tta']:.4f} | {r['auc_tta']:.4f} | "
                     f"{r['best_epoch']} | {r['epochs']} | {r['s_per_epoch']:.1f} | {r['train_s']:.0f} | {r['total_s']:.0f} | {r['peak_rss_mb']:.0f} |")
    if len(rows) > 1:
        def ms(k):
            v = np.array([r[k] for r in rows])
            return f"{v.mean():.4f} ± {v.std(ddof=1):.4f} (min {v.min():.4f}, max {v.max():.4f})"
        lines += ["", f"Mean ± sd over {len(rows)} seeds: best val AUC {ms('val_auc')}; test ACC {ms('acc')}; AUC {ms('auc')}; "
                  f"with TTA: ACC {ms('acc_tta')}; AUC {ms('auc_tta')}."]
    text = "\n".join(lines) + "\n"
    print(text)
    out = Path(args.out) if args.out else ROOT / "bench" / f"results_backbone_{preset}.md"
    out.write_text(text)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
