#!/usr/bin/env python
"""The whole product on one machine, in one run, written to bench/results.md:

1. `make run` on a preset from scratch (`pipelines/run_all.py --force` in a fresh runs folder):
   whole wall time, peak RSS of the process, each stage's wall time and peak RSS (from the manifest);
2. the same command again: every stage skipped, its wall time;
3. attribution throughput on the trained backbone against the model's raw forward+backward rate,
   and against Captum and shap on the same inputs (bench/bench_attribution.py, as a child process);
4. our surrogate SHAP (hybrid.explain.surrogate_explanation) against shap's own explainer called
   directly on the same rows: time ratio and largest absolute difference.

    python bench/bench_pipeline.py                        # default preset: make run (14.3 min here) + the attribution benchmark
    python bench/bench_pipeline.py --config configs/quick.toml --attribution-n 200

Nothing else should run on the machine meanwhile: these are wall times.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def run_child(cmd: list[str], log: Path) -> tuple[float, float]:
    """Run cmd with its output to log; (wall s, peak RSS MiB of the largest child so far)."""
    t0 = time.perf_counter()
    with open(log, "w") as f:
        code = subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT)
    wall = time.perf_counter() - t0
    if code:
        sys.exit(f"{' '.join(cmd)} failed with exit {code}; its output is in {log}.")
    return wall, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def surrogate_shap_rows(run_path: Path, n: int = 0) -> list[dict]:
    """Time of our wrapper vs shap's explainer built and called directly, same surrogate, same rows."""
    import shap

    from hybrid.artifacts import RunDir
    from hybrid.explain import surrogate_explanation
    from hybrid.features import feature_matrix
    from hybrid.surrogate_stage import load_joblib, load_tables

    run = RunDir(run_path)
    tables = load_tables(run)
    rows = []
    for name in ("concepts__tree", "concepts__xgboost", "concepts__logistic"):
        s = load_joblib(run, f"surrogates/{name}.joblib")
        X, names = feature_matrix(tables["test"], name.split("__")[0])
        X = (X[:n] if n else X).astype(np.float64)
        bg, _ = feature_matrix(tables["train"], name.split("__")[0])
        t0 = time.perf_counter()
        ours = surrogate_explanation(s, X, names, background=bg).values
        t_ours = time.perf_counter() - t0
        t0 = time.perf_counter()
        if s.kind == "logistic":
            scaler, lr = s.model_[0], s.model_[-1]
            b = np.asarray(bg, np.float64)[np.random.default_rng(0).choice(len(bg), min(200, len(bg)), replace=False)]
            ref = shap.LinearExplainer(lr, shap.maskers.Independent(scaler.transform(b), max_samples=len(b))).shap_values(scaler.transform(X))
        else:
            ref = shap.TreeExplainer(s.model_).shap_values(X)
        t_ref = time.perf_counter() - t0
        diff = float(np.abs(ours[:, :, s.present_] - np.asarray(ref)).max())  # ref: (N, F, classes seen)
        rows.append({"surrogate": name, "rows": len(X), "ours_s": t_ours, "shap_s": t_ref,
                     "ratio": t_ref / t_ours, "max_abs_diff": diff})
        print(rows[-1], flush=True)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="configs/default.toml")
    ap.add_argument("--runs-dir", default="artifacts/runs/bench-pipeline")
    ap.add_argument("--attribution-n", type=int, default=0, help="test images for the attribution benchmark (0: all)")
    args = ap.parse_args()

    import torch

    from hybrid.config import load_config

    cfg = load_config(str(ROOT / args.config))
    runs = ROOT / args.runs_dir
    shutil.rmtree(runs, ignore_errors=True)
    runs.mkdir(parents=True)
    run_path = runs / cfg["run"]["name"]
    py = sys.executable
    cmd = [py, "pipelines/run_all.py", "--config", args.config, "--runs-dir", args.runs_dir]
    print(f"1/4 {' '.join(cmd)} --force  (log: {runs / 'run.log'})", flush=True)
    wall, peak = run_child(cmd + ["--force"], runs / "run.log")
    man = json.loads((run_path / "manifest.json").read_text())
    print(f"    {wall:.0f} s, peak RSS {peak:.0f} MiB", flush=True)
    print("2/4 the same command again (every stage skipped)", flush=True)
    wall2, _ = run_child(cmd, runs / "rerun.log")
    skipped = (runs / "rerun.log").read_text().count("== skip ")
    print("3/4 bench/bench_attribution.py on the trained backbone", flush=True)
    attr_md = runs / "attribution.md"
    acmd = [py, "bench/bench_attribution.py", "--run", str(run_path.relative_to(ROOT)), "--out", str(attr_md)]
    if args.attribution_n:
        acmd += ["--n", str(args.attribution_n)]
    wall3, _ = run_child(acmd, runs / "attribution.log")
    print("4/4 surrogate SHAP: ours vs shap's own", flush=True)
    srows = surrogate_shap_rows(run_path)

    stages = dict(sorted(man.get("stages", {}).items(), key=lambda kv: kv[1].get("finished", "")))  # in run order
    lines = ["# Benchmarks: the whole pipeline, attribution and surrogate SHAP, one run, one machine", "",
             f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores, {platform.system()}, python "
             f"{platform.python_version()}, torch {torch.__version__} with {torch.get_num_threads()} threads, no GPU used. "
             f"Date: {time.strftime('%Y-%m-%d')}.",
             f"Command: `python bench/bench_pipeline.py --config {args.config}"
             f"{' --attribution-n ' + str(args.attribution_n) if args.attribution_n else ''}`", "",
             "## make run, from scratch", "",
             f"`make run` (= `{' '.join(['python'] + cmd[1:])} --force`): **{wall / 60:.1f} min** wall, "
             f"peak RSS **{peak / 1024:.2f} GiB**. Second run, nothing changed: {skipped} of 7 stages skipped, {wall2:.0f} s.", "",
             "| stage | wall s | peak RSS MiB (process so far) |", "| --- | --- | --- |"]
    for name, st in stages.items():
        lines.append(f"| {name} | {st['wall_s']:.1f} | {st['peak_rss_mb']:.0f} |")
    lines += ["", "The stages' wall times do not add up to the whole: loading data, models and libraries between "
              "stages is not inside any stage. *evaluate* is the end of training (val and test, with TTA); "
              "*evaluate_ph2* runs inside the audit and is part of its time.", "",
              f"## Attribution throughput ({wall3:.0f} s)", "",
              *attr_md.read_text().split("\n", 2)[2].splitlines(), "",
              "## Surrogate SHAP: hybrid.explain vs shap called directly", "",
              "Same surrogate, same test rows; ours wraps shap's TreeExplainer / LinearExplainer and fills the "
              "classes the surrogate never saw with zeros, so the ratio is the wrapper's overhead.", "",
              "| surrogate | rows | ours s | shap s | shap time / ours | largest abs. difference |",
              "| --- | --- | --- | --- | --- | --- |"]
    for r in srows:
        lines.append(f"| {r['surrogate']} | {r['rows']} | {r['ours_s']:.3f} | {r['shap_s']:.3f} | {r['ratio']:.2f}× | {r['max_abs_diff']:.1e} |")
    text = "\n".join(lines) + "\n"
    print(text)
    (ROOT / "bench" / "results.md").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
