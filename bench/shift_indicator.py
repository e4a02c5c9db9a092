#!/usr/bin/env python
"""Does the embedding-distance shift indicator (`hybrid.shift`) rise when the CNN gets worse?

    python bench/shift_indicator.py --runs artifacts/runs/bench/default-seed0 \\
        artifacts/runs/bench/default-seed1 artifacts/runs/bench/default-seed2

For each run: the indicator is fitted as `hybrid evaluate` fits it (train embeddings, threshold at
validation's 99th percentile). DermaMNIST test is then passed through simulated clinics — one fixed
draw of `hybrid.augment.acquisition_shift` per clinic (seeds 2000+), applied identically to every
image, at several strengths — and for each clinic the share of images beyond the threshold is set
against the CNN's test AUC and melanoma-vs-nevus AUC. Spearman correlation over runs × clinics.
PH2 is listed for reference only. Plain forward pass, as the feature tables use.

Beside it, the same Mahalanobis indicator on the 41 measured concepts (`hybrid.concepts`: colour,
shape and layout statistics of the image, measured without the CNN), fitted on train, line at
validation's 99th percentile: it does not depend on the backbone, so it is the same for every run.

And how often each set-level test would warn (p < hybrid.shift.SHIFT_ALPHA): the count of images
beyond the line (binomial; the first rule) and the Mann–Whitney test of all distances against
validation's (the rule since 2026-12-03), on the whole 2,005-image set and on one random 200-image
subsample of it (PH2's size; seed 0). False alarms are also counted over --draws random 200-image
subsamples of unshifted test per run, where every warning is false.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bn_adaptation import clinic, mel_auc  # noqa: E402
from hybrid.artifacts import RunDir  # noqa: E402
from hybrid.concepts import measure_concepts  # noqa: E402
from hybrid.data import load_dataset  # noqa: E402
from hybrid.external import default_external, load_external  # noqa: E402
from hybrid.metrics import auc_ovr  # noqa: E402
from hybrid.shift import SHIFT_ALPHA, EmbeddingDistance  # noqa: E402
from hybrid.stages import load_backbone  # noqa: E402
from hybrid.train import embed_and_proba  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("--runs", nargs="+", required=True)
    ap.add_argument("--clinics", type=int, default=8)
    ap.add_argument("--strengths", type=float, nargs="+", default=[0.1, 0.2, 0.4])
    ap.add_argument("--draws", type=int, default=500, help="random 200-image subsamples of unshifted test per run")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results_shift_indicator.md"))
    a = ap.parse_args()
    torch.set_num_threads(2)
    t0 = time.time()
    data = load_dataset("dermamnist", 28)
    tr, va, te = (data.splits[s] for s in ("train", "val", "test"))
    ph2_x, ph2_y = load_external(default_external("ph2", 28), 28)
    sets = {("none", 0): te.images}
    sets.update({(s, c): clinic(te.images, 2000 + c, s) for s in a.strengths for c in range(a.clinics)})
    sub = np.random.default_rng(0).choice(len(te.images), 200, replace=False)
    concepts = lambda x: measure_concepts(x, n_jobs=-1)  # noqa: E731
    cind = EmbeddingDistance().fit(concepts(tr.images), concepts(va.images))
    c_out = {k: cind.summary(concepts(x))["outside_fraction"] for k, x in sets.items()}
    c_ph2 = cind.summary(concepts(ph2_x))["outside_fraction"]
    print(f"concept indicator: done ({time.time() - t0:.0f} s)", flush=True)
    rows, ph2, false_alarms = [], [], []
    draws = np.random.default_rng(1)
    for run_path in a.runs:
        model = load_backbone(RunDir(Path(run_path)))[0].fused()
        name = Path(run_path).name
        ind = EmbeddingDistance().fit(embed_and_proba(model, tr.images)[0], embed_and_proba(model, va.images)[0])
        for (s, c), images in sets.items():
            emb, p = embed_and_proba(model, images)
            full, small = ind.summary(emb), ind.summary(emb[sub])
            rows.append({"run": name, "strength": s, "share": full["outside_fraction"], "dist_auc": full["distance_auc"],
                         "auc": auc_ovr(te.labels, p), "mel": mel_auc(p, te.labels), "concepts": c_out[(s, c)],
                         "tail": full["tail_p_value"] < SHIFT_ALPHA, "rank": full["p_value"] < SHIFT_ALPHA,
                         "tail200": small["tail_p_value"] < SHIFT_ALPHA, "rank200": small["p_value"] < SHIFT_ALPHA})
            if s == "none":
                for _ in range(a.draws):
                    d = ind.summary(emb[draws.choice(len(emb), 200, replace=False)])
                    false_alarms.append((d["tail_p_value"] < SHIFT_ALPHA, d["p_value"] < SHIFT_ALPHA))
        emb, p = embed_and_proba(model, ph2_x)
        ph2.append((name, ind.summary(emb), mel_auc(p, ph2_y)))
        print(f"{name}: done ({time.time() - t0:.0f} s)", flush=True)

    ms = lambda v: f"{np.mean(v):.3f} ± {np.std(v, ddof=1) if len(v) > 1 else 0:.3f}"  # noqa: E731
    shifted = [r for r in rows if r["strength"] != "none"]
    col = lambda k: np.array([r[k] for r in shifted])  # noqa: E731
    rho = {k: (spearmanr(col(k), col("auc"))[0], spearmanr(col(k), col("mel"))[0]) for k in ("share", "dist_auc", "concepts")}
    lines = ["# Does the embedding-distance shift indicator track the CNN's loss under shift?", "",
             f"`python bench/shift_indicator.py --runs {' '.join(a.runs)}"
             + (f" --out {a.out}" if Path(a.out).resolve() != (ROOT / "bench" / "results_shift_indicator.md").resolve() else "")
             + f"` ({time.time() - t0:.0f} s). "
             "Indicator: share of images whose CNN embedding lies beyond validation's 99th-percentile Mahalanobis "
             "distance from the train embeddings, and the distance AUC (how often a set image is the farther of a "
             "pair with a validation image; 0.5 if alike) — `hybrid.shift.EmbeddingDistance`, as `hybrid evaluate` "
             f"uses it. DermaMNIST test through {a.clinics} simulated clinics per strength (one fixed draw of "
             "`acquisition_shift` each, seeds 2000+), plain forward pass; mean ± sd over runs × clinics. "
             "Concept distance: the same line on the 41 measured concepts (no CNN involved; one value per clinic).", "",
             "| shift strength | images beyond the line: embedding | concepts | embedding distance AUC | test AUC | "
             "test mel-vs-nv AUC |", "| --- | --- | --- | --- | --- | --- |"]
    for s in ["none", *a.strengths]:
        sr = [r for r in rows if r["strength"] == s]
        lines.append(f"| {s} | " + " | ".join(ms([r[k] for r in sr]) for k in ("share", "concepts", "dist_auc", "auc", "mel"))
                     + " |")
    lines += ["", f"Over the {len(shifted)} shifted (run, clinic) pairs, Spearman correlation with test AUC and with "
              "melanoma-vs-nevus AUC (negative: the more shifted, the worse the CNN): share beyond the line "
              f"**{rho['share'][0]:.2f}** / {rho['share'][1]:.2f}; distance AUC **{rho['dist_auc'][0]:.2f}** / "
              f"{rho['dist_auc'][1]:.2f}; concept share {rho['concepts'][0]:.2f} / {rho['concepts'][1]:.2f}.", "",
              f"Share of (run, clinic) sets that would get the warning (p < {SHIFT_ALPHA:g}); \"none\" rows are false alarms:", "",
              "| shift strength | count beyond the line, 2,005 images | Mann–Whitney, 2,005 | count, 200 | Mann–Whitney, 200 |",
              "| --- | --- | --- | --- | --- |"]
    for s in ["none", *a.strengths]:
        sr = [r for r in rows if r["strength"] == s]
        lines.append(f"| {s} | " + " | ".join(f"{np.mean([r[k] for r in sr]):.0%}" for k in ("tail", "rank", "tail200", "rank200"))
                     + " |")
    fa = np.array(false_alarms)
    lines += ["", f"False alarms over {len(fa)} random 200-image subsamples of unshifted test ({a.draws} per run): "
              f"count beyond the line {fa[:, 0].mean():.1%}, Mann–Whitney {fa[:, 1].mean():.1%} "
              f"(the nominal rate is {SHIFT_ALPHA:.1%})."]
    lines += ["", "PH2, for reference only (200 images): " + "; ".join(
        f"{n} {d['outside_fraction']:.1%} beyond (count p = {d['tail_p_value']:.1e}), distance AUC {d['distance_auc']:.2f} "
        f"(Mann–Whitney p = {d['p_value']:.1e}), mel-vs-nv AUC {m:.3f}" for n, d, m in ph2)
        + f"; beyond the concept line: {c_ph2:.1%}.", ""]
    Path(a.out).write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
