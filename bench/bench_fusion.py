#!/usr/bin/env python
"""Experiment (not part of the product): does fusing the CNN with a model on measured concepts help,
in distribution (DermaMNIST test) and in another clinic (PH2)?

    python bench/bench_fusion.py        # the three default-preset seeds of bench_backbone.py
    python bench/bench_fusion.py --runs artifacts/runs/bench/gpu-seed0-e60 --out bench/results_fusion_gpu.md

The concepts are always measured on the 28-px images; each CNN sees PH2 at its own training size.

The concept model is XGBoost on the measured concepts (hybrid.concepts.CONCEPTS), fitted to the TRUE labels of the train
split (unlike the surrogates, which imitate the CNN); fixed settings, not tuned. Fusion is a
weighted geometric mean of the two models' probabilities, p ∝ p_cnn^(1-w) · p_concepts^w, with w
chosen on validation AUC from 0, 0.1, …, 0.5. The melanoma operating point is the product's:
temperature and threshold (80% sensitivity) fitted on validation. PH2 is evaluation only.
Writes bench/results_fusion.md.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hybrid.artifacts import RunDir  # noqa: E402
from hybrid.concepts import CONCEPT_NAMES, measure_concepts  # noqa: E402
from hybrid.data import load_dataset  # noqa: E402
from hybrid.external import default_external, load_external  # noqa: E402
from hybrid.metrics import accuracy, auc_ovr  # noqa: E402
from hybrid.evaluate_stage import operating_point, set_metrics  # noqa: E402
from hybrid.stages import load_backbone  # noqa: E402
from hybrid.train import predict_proba  # noqa: E402

WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)


def fuse(p_cnn: np.ndarray, p_concepts: np.ndarray, w: float) -> np.ndarray:
    """Weighted geometric mean of two (N, K) probability arrays, renormalised."""
    z = (1 - w) * np.log(np.clip(p_cnn, 1e-6, 1)) + w * np.log(np.clip(p_concepts, 1e-6, 1))
    z = np.exp(z - z.max(1, keepdims=True))
    return z / z.sum(1, keepdims=True)


def row(name: str, w: float, q: dict, y: dict, run: RunDir) -> dict:
    """Test ACC/AUC of the probabilities as given, and the melanoma-vs-nevus view on test and PH2 at
    the operating point `hybrid evaluate` would fit on validation with `run`'s config."""
    op = operating_point(run, {"val": {"proba": q["val"], "labels": y["val"]}})
    bt, bp = (set_metrics(q[s], y[s], op, {}, n_boot=200)["binary"] for s in ("test", "ph2"))
    return {"name": name, "w": w, "acc": accuracy(y["test"], q["test"]), "auc": auc_ovr(y["test"], q["test"]),
            "test_mel_auc": bt["auc"], "ph2_auc": bp["auc"], "ph2_ci": bp["auc_ci95"],
            "ph2_sens": bp["sensitivity"], "ph2_spec": bp["specificity"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", nargs="+", default=[f"artifacts/runs/bench/default-seed{s}" for s in (0, 1, 2)],
                    help="finished run folders (their predictions/ and backbone)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results_fusion.md"))
    args = ap.parse_args()
    import xgboost as xgb

    for run in args.runs:
        if not (ROOT / run / "predictions" / "val_proba.npy").is_file():
            print(f"{run} has no predictions/val_proba.npy; make the runs first with "
                  "`python bench/bench_backbone.py --config configs/default.toml --seeds 0 1 2`.", file=sys.stderr)
            return 2
    ds = load_dataset("dermamnist", 28)
    ph2_imgs, y_ph2 = load_external(default_external("ph2", 28), 28)
    y = {s: ds.splits[s].labels.reshape(-1) for s in ("train", "val", "test")}
    y["ph2"] = y_ph2
    print("measuring concepts …", flush=True)
    c = {s: measure_concepts(ds.splits[s].images, n_jobs=2) for s in ("train", "val", "test")}
    c["ph2"] = measure_concepts(ph2_imgs)
    cm = xgb.XGBClassifier(n_estimators=400, max_depth=4, learning_rate=0.05, subsample=0.8, colsample_bytree=0.8,
                           n_jobs=2, random_state=0).fit(np.asarray(c["train"]), y["train"])
    pc = {s: cm.predict_proba(np.asarray(c[s])) for s in ("val", "test", "ph2")}
    runs = [RunDir.open(ROOT / r) for r in args.runs]
    rows = [row("concept model alone", 1.0, pc, y, runs[0])]
    for run, rd in zip(args.runs, runs):
        size = rd.manifest["config"]["data"]["size"]   # as `hybrid evaluate` picks PH2 for a run
        ph2_cnn = load_external(default_external("ph2", size), size)[0]
        p = {"val": np.load(ROOT / run / "predictions" / "val_proba.npy"),
             "test": np.load(ROOT / run / "predictions" / "test_proba.npy"),
             "ph2": predict_proba(load_backbone(rd)[0].fused(), ph2_cnn)}
        w = max(WEIGHTS, key=lambda v: auc_ovr(y["val"], fuse(p["val"], pc["val"], v)))
        for name, v in ((f"CNN {Path(run).name}", 0.0), (f"CNN {Path(run).name} + concepts", w)):
            rows.append(row(name, v, {k: fuse(p[k], pc[k], v) for k in p}, y, rd))
            print(rows[-1], flush=True)

    command = " ".join(["python bench/bench_fusion.py",
                        *(["--runs", *args.runs] if args.runs != ap.get_default("runs") else []),
                        *(["--out", args.out] if args.out != ap.get_default("out") else [])])
    lines = ["# CNN + concept-model fusion (an experiment, not in the product)", "",
             f"Command: `{command}` (no-TTA probabilities of each run). The concept model is XGBoost "
             f"on the {len(CONCEPT_NAMES)} measured 28-px concepts fitted to the true train labels; fusion p ∝ p_cnn^(1−w)·p_concepts^w "
             "with w chosen on validation AUC. Operating point: temperature and 80%-sensitivity threshold fitted on "
             "validation. PH2: 40 melanomas, 160 nevi, evaluation only.", "",
             "| model | w | test ACC | test AUC | test mel-vs-nevus AUC | PH2 mel-vs-nevus AUC [95%] | PH2 sensitivity / specificity |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append(f"| {r['name']} | {r['w']:.1f} | {r['acc']:.3f} | {r['auc']:.3f} | {r['test_mel_auc']:.3f} | "
                     f"{r['ph2_auc']:.3f} [{r['ph2_ci'][0]:.2f}, {r['ph2_ci'][1]:.2f}] | "
                     f"{r['ph2_sens']:.1%} / {r['ph2_spec']:.1%} |")
    if len(runs) > 1:                                  # a spread needs at least two runs
        lines += ["", "Mean ± sample standard deviation (ddof 1, as bench_backbone.py) over the runs:", ""]
        for label, keep in (("CNN", lambda r: r["name"].startswith("CNN") and r["w"] == 0),
                            ("CNN + concepts", lambda r: r["name"].endswith("+ concepts"))):
            sel = [r for r in rows if keep(r)]
            lines.append(f"- {label}: " + ", ".join(
                f"{k} {np.mean([r[k] for r in sel]):.3f} ± {np.std([r[k] for r in sel], ddof=1):.3f}"
                for k in ("acc", "auc", "ph2_auc", "ph2_sens", "ph2_spec")))
    text = "\n".join(lines) + "\n"
    print(text)
    Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
