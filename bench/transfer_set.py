#!/usr/bin/env python
"""Do concept surrogates imitate the CNN better when the CNN labels more images than the 7,007 train ones?

Distillation fits the surrogate to the CNN's labels on the train images only. A larger "transfer
set" — new images the CNN labels, the surrogate reads their concepts — is the standard way to give a
student more of the teacher's decisions (Craven & Shavlik's TREPAN queries; Hinton's transfer set).
Two kinds of new images are made from the *train* split only (val and test stay untouched):

  aug     K augmented copies of each 28-px train image: flips, 90° rotations, a 2-px reflect shift
          and brightness/contrast/saturation jitter of ±`--jitter` (the training augmentation plus
          jitter, so the concepts change as well as the CNN's view);
  source  K crop-and-resize renderings of each train image's 200×150 HAM10000 source, crop side
          s ~ U(smin, 1) (as in bench/source_renderings.py; needs ../shared/data/ham10000).

Each surrogate family is fitted and chosen on val exactly as the surrogates stage does
(`hybrid.distill.fit_surrogates`), once on train alone and once on train ∪ transfer set.

    python bench/transfer_set.py artifacts/runs/bench/default-seed0 --kind aug --k 5
    python bench/transfer_set.py RUN --kind source --k 5 --out bench/results_transfer_set.md
    python bench/transfer_set.py RUN --all-sets       # XGBoost on every feature set, both settings

Prints markdown rows: fidelity and Cohen's κ with the CNN on val and test.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import cohen_kappa_score

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from hybrid.artifacts import RunDir  # noqa: E402
from hybrid.data import load_dataset  # noqa: E402
from hybrid.distill import XGB_PARAMS, fit_surrogates  # noqa: E402
from hybrid.features import FEATURE_SETS, feature_matrix, probe_predict  # noqa: E402
from hybrid.stages import load_backbone  # noqa: E402
from hybrid.surrogate_stage import load_joblib, load_tables  # noqa: E402
from hybrid.surrogates import Surrogate  # noqa: E402
from hybrid.transfer import COPIES, JITTER, augmented_copies, cnn_answers  # noqa: E402


def all_sets(run, model, t: dict, views: np.ndarray, seed: int) -> list[str]:
    """XGBoost on every feature set: the earlier setting (150 × 4) and the product's (400 × 6),
    each fitted on train alone and on train + copies. Rows: val and test fidelity / κ, fit s."""
    tv = cnn_answers(model, views)
    tv["cnn_concepts"] = probe_predict(load_joblib(run, "features/concept_probe.joblib"), tv["embeddings"])
    rows = []
    for fs in FEATURE_SETS:
        X = {s: feature_matrix(t[s], fs)[0] for s in t}
        Xv = feature_matrix(tv, fs)[0]
        for fitted_on, (Xf, yf) in {"train": (X["train"], t["train"]["pred"]),
                                    "train + copies": (np.concatenate([X["train"], Xv]),
                                                       np.concatenate([t["train"]["pred"], tv["pred"]]))}.items():
            for trees, depth in ((150, 4), (400, 6)):
                t0 = time.perf_counter()
                s = Surrogate("xgboost", n_classes=7, n_estimators=trees, max_depth=depth, learning_rate=0.15,
                              random_state=seed).fit(Xf, yf)
                cells = [f"{np.mean(s.predict(X[sp]) == t[sp]['pred']):.3f} / "
                         f"{cohen_kappa_score(t[sp]['pred'], s.predict(X[sp])):.3f}" for sp in ("val", "test")]
                rows.append(f"| {fs} | {fitted_on} | {trees} × {depth} | {cells[0]} | {cells[1]} | "
                            f"{time.perf_counter() - t0:.0f} |")
                print(rows[-1], flush=True)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run")
    ap.add_argument("--kind", choices=("aug", "source"), default="aug")
    ap.add_argument("--k", type=int, default=COPIES, help="copies per train image")
    ap.add_argument("--jitter", type=float, default=JITTER)
    ap.add_argument("--acquisition", type=float, default=0.0, help="also hybrid.augment.acquisition_shift, this strength")
    ap.add_argument("--smin", type=float, default=0.85)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--xgb-trees", type=int, default=XGB_PARAMS["n_estimators"], help="XGBoost n_estimators")
    ap.add_argument("--xgb-depth", type=int, default=XGB_PARAMS["max_depth"], help="XGBoost max_depth")
    ap.add_argument("--xgb-lr", type=float, default=XGB_PARAMS["learning_rate"], help="XGBoost learning_rate")
    ap.add_argument("--all-sets", action="store_true",
                    help="XGBoost on every feature set, 150 × 4 and 400 × 6, train alone and train + copies")
    ap.add_argument("--out", default="")
    a = ap.parse_args()
    run = RunDir.open(a.run)
    cfg = run.manifest["config"]
    t = load_tables(run)
    tr, va, te = t["train"], t["val"], t["test"]
    model = load_backbone(run)[0].fused()
    data = load_dataset("dermamnist", cfg["data"]["size"])
    images = data.splits["train"].images
    t0 = time.perf_counter()
    if a.kind == "aug":
        views = augmented_copies(images, a.k, a.jitter, a.seed, a.acquisition)
    else:
        from source_renderings import renderings

        ids = list(data.splits["train"].metadata["image_id"])
        views = renderings(ids, cfg["data"]["size"], a.k, a.smin, a.seed).reshape(-1, *images.shape[1:])
    if a.all_sets:
        head = ["| features | fitted on | trees × depth | val fidelity / κ | test fidelity / κ | fit s |",
                "| --- | --- | --- | --- | --- | --- |"]
        print("\n".join(head))
        lines = head + all_sets(run, model, t, views, a.seed)
        if a.out:
            with open(a.out, "a") as f:
                f.write(f"\n`python bench/transfer_set.py {a.run} --all-sets --k {a.k} --seed {a.seed}`\n\n"
                        + "\n".join(lines) + "\n")
        return 0
    answers = cnn_answers(model, views)
    pred_v, conc_v = answers["pred"], answers["concepts"]
    t_views = time.perf_counter() - t0
    n_classes = tr["proba"].shape[1]
    sets = {"train only": (tr["concepts"], tr["pred"]),
            f"train + {a.kind} ×{a.k}": (np.concatenate([tr["concepts"], conc_v]), np.concatenate([tr["pred"], pred_v])),
            f"{a.kind} ×{a.k} only": (conc_v, pred_v)}
    print(f"transfer set: {len(views)} images, CNN labels + concepts in {t_views:.0f} s; "
          f"CNN predicts nevus for {np.mean(pred_v == 5):.3f} of them (train {np.mean(tr['pred'] == 5):.3f})")
    head = ["| fitted on | surrogate | val fidelity / κ | test fidelity / κ | fit s |", "| --- | --- | --- | --- | --- |"]
    lines = list(head)
    print("\n".join(head))
    for name, (X, y) in sets.items():
        t0 = time.perf_counter()
        fitted, _ = fit_surrogates(X, y, va["concepts"], va["pred"], n_classes, a.seed,
                                   xgb_params={"n_estimators": a.xgb_trees, "max_depth": a.xgb_depth,
                                               "learning_rate": a.xgb_lr})
        fit_s = time.perf_counter() - t0
        for fam in ("logistic", "tree", "xgboost"):
            s = fitted[fam][0]
            cells = []
            for split in (va, te):
                p = s.predict(split["concepts"])
                cells.append(f"{np.mean(p == split['pred']):.3f} / {cohen_kappa_score(split['pred'], p):.3f}")
            extra = f" (depth {s.complexity()['depth']})" if fam == "tree" else ""
            lines.append(f"| {name} | {fam}{extra} | {cells[0]} | {cells[1]} | {fit_s:.0f} |")
            print(lines[-1], flush=True)
    if a.out:
        with open(a.out, "a") as f:
            views_opt = f"--jitter {a.jitter} --acquisition {a.acquisition}" if a.kind == "aug" else f"--smin {a.smin}"
            f.write(f"\n`python bench/transfer_set.py {a.run} --kind {a.kind} --k {a.k} {views_opt} --seed {a.seed} "
                    f"--xgb-trees {a.xgb_trees} --xgb-depth {a.xgb_depth} --xgb-lr {a.xgb_lr}` — {len(views)} extra "
                    f"images, labelled and measured in {t_views:.0f} s\n\n" + "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
