#!/usr/bin/env python
"""Experiment (not part of the product): how much do patient metadata add to the CNN, and how much
does a recalibration fitted on validation add on its own? It asks what limits test ACC/AUC at 28 px:
the pixels, or the decision on top of them.

    python bench/metadata_fusion.py --runs artifacts/runs/bench/default-seed0 \\
        artifacts/runs/bench/default-seed1 artifacts/runs/bench/default-seed2

For each finished run it stacks a standardised multinomial logistic regression on the run's 8-view
TTA probabilities (as log-probabilities), fitted on the validation split only (C chosen by 5-fold
stratified cross-validation on validation, by log-loss) and scored once on test. Three stackers:

- CNN only: log-probabilities → class. Per-class offsets, temperature and class mixing chosen on
  validation; the control for the next row.
- CNN + metadata: adds HAM10000 age (bins), sex and body site, one-hot with an unknown level.
  `dx_type` (how the diagnosis was confirmed) is left out: follow-up confirmation almost implies a
  nevus, so it is the label, not a patient fact.
- metadata only: the same metadata without the CNN, for scale.

Test numbers are also given on the leak-free subset (test images whose HAM10000 lesion appears in
neither train nor validation), because shared lesions make age/sex/site an identifier. PH2 has no
metadata, so it has no row. Nothing here is fitted or chosen on test.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hybrid.audit import leaked  # noqa: E402
from hybrid.data import load_metadata  # noqa: E402
from hybrid.metrics import accuracy, auc_ovr  # noqa: E402

AGE_BINS = (0, 30, 45, 60, 75, 200)   # years; left-closed bins plus an "unknown" level
C_GRID = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0)


def metadata_matrix(meta, sites: list[str]) -> np.ndarray:
    """(N, n_meta) one-hot age bin, sex and site (each with an unknown level) for `meta` rows."""
    age = meta["age"].to_numpy(dtype=float)
    age_bin = np.where(np.isnan(age), len(AGE_BINS) - 1, np.digitize(np.nan_to_num(age), AGE_BINS[1:-1]))
    cols = [age_bin[:, None] == np.arange(len(AGE_BINS))]
    sex = meta["sex"].fillna("unknown").to_numpy()
    cols.append(np.stack([sex == v for v in ("male", "female")], 1))
    site = meta["localization"].fillna("unknown").to_numpy()
    cols.append(np.stack([site == v for v in sites], 1))
    return np.concatenate(cols, 1).astype(float)


def fit_stacker(x_val: np.ndarray, y_val: np.ndarray, seed: int):
    """Standardised multinomial logistic regression, C chosen by 5-fold CV log-loss on validation."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    pipe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))
    cv = StratifiedKFold(5, shuffle=True, random_state=seed)
    search = GridSearchCV(pipe, {"logisticregression__C": C_GRID}, scoring="neg_log_loss", cv=cv)
    return search.fit(x_val, y_val)


def scores(y: np.ndarray, p: np.ndarray, mask: np.ndarray) -> dict:
    return {"acc": accuracy(y, p), "auc": auc_ovr(y, p),
            "acc_lf": accuracy(y[mask], p[mask]), "auc_lf": auc_ovr(y[mask], p[mask])}


def run_rows(path: Path, meta) -> list[dict]:
    pred = path / "predictions"
    p = {s: np.load(pred / f"{s}_tta_proba.npy") for s in ("val", "test")}
    y = {s: np.load(pred / f"{s}_labels.npy").reshape(-1) for s in ("val", "test")}
    m = {s: meta[meta["split"] == s].set_index("index").sort_index() for s in ("train", "val", "test")}
    for s in ("val", "test"):
        if len(m[s]) != len(y[s]) or (m[s]["label"].to_numpy() != y[s]).any():
            raise SystemExit(f"{pred}: the {s} labels do not match the HAM10000 split info row for row.")
    seen = np.concatenate([m["train"]["lesion_id"], m["val"]["lesion_id"]])
    leak_free = ~leaked(seen, m["test"]["lesion_id"])
    sites = sorted(set(meta["localization"].dropna()) - {"unknown"})
    md = {s: metadata_matrix(m[s], sites) for s in ("val", "test")}
    logp = {s: np.log(np.clip(p[s], 1e-6, 1)) for s in ("val", "test")}
    inputs = {"CNN alone (argmax, no stacker)": None,
              "CNN only, stacked on val": logp,
              "CNN + age, sex, site, stacked on val": {s: np.hstack([logp[s], md[s]]) for s in logp},
              "age, sex, site only": md}
    rows = []
    for name, x in inputs.items():
        if x is None:
            q, c = p["test"], None
        else:
            model = fit_stacker(x["val"], y["val"], seed=0)
            q, c = model.predict_proba(x["test"]), model.best_params_["logisticregression__C"]
        rows.append({"run": path.name, "stacker": name, "C": c, "n_lf": int(leak_free.sum()),
                     **scores(y["test"], q, leak_free)})
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", nargs="+", required=True, help="finished run folders with TTA predictions")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results_metadata_fusion.md"))
    args = ap.parse_args()
    meta = load_metadata()
    if meta is None:
        raise SystemExit("HAM10000 metadata not found (../shared/data/ham10000); this experiment needs it.")
    rows = [r for path in args.runs for r in run_rows(ROOT / path, meta)]
    names = list(dict.fromkeys(r["stacker"] for r in rows))
    lines = ["# CNN + patient metadata, stacked on validation (DermaMNIST-28 test)", "",
             f"`python bench/metadata_fusion.py --runs {' '.join(args.runs)}`", "",
             f"Leak-free: the {rows[0]['n_lf']} test images whose lesion is in neither train nor val.", "",
             "| stacker | runs | test ACC | test AUC | leak-free ACC | leak-free AUC | C per run |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for name in names:
        rs = [r for r in rows if r["stacker"] == name]
        cell = {k: f"{np.mean([r[k] for r in rs]):.3f} ± {np.std([r[k] for r in rs]):.3f}" if len(rs) > 1
                else f"{rs[0][k]:.3f}" for k in ("acc", "auc", "acc_lf", "auc_lf")}
        cs = ", ".join("–" if r["C"] is None else f"{r['C']:g}" for r in rs)
        lines.append(f"| {name} | {len(rs)} | {cell['acc']} | {cell['auc']} | {cell['acc_lf']} | {cell['auc_lf']} | {cs} |")
    lines += ["", "Per run:", "", "| run | stacker | test ACC | test AUC | leak-free ACC | leak-free AUC |",
              "| --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {r['run']} | {r['stacker']} | {r['acc']:.3f} | {r['auc']:.3f} | {r['acc_lf']:.3f} | {r['auc_lf']:.3f} |"
              for r in rows]
    text = "\n".join(lines) + "\n"
    print(text)
    out = Path(args.out)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
