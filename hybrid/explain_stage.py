"""Stage 4 against a run folder: CNN maps beside surrogate SHAP, faithfulness and region tables.

Reads the backbone, the feature tables and the surrogates of a run; writes explain/*.
"""
from __future__ import annotations

import time

import numpy as np
import torch
from tqdm.auto import tqdm

from . import attribution as A
from .artifacts import RunDir
from .concepts import REGIONS, region_masks
from .data import class_legend, class_names, short_class_names
from .errors import HybridError
from .explain import (concept_region_scores, concept_units, global_importance, layout_shap_share,
                      pixel_region_scores, region_agreement, rule_path, shap_unit, surrogate_explanation,
                      value_labels)
from .faithfulness import METRICS, deletion_insertion, mass_share, pairwise_agreement, randomised_copy, rank_corr
from .features import feature_matrix
from .plots import curves_figure, explanation_figure, gallery_figure
from .stages import load_backbone, run_dataset
from .surrogate_stage import _csv, load_joblib, load_tables

OPTIONS = {
    "n": 200,  # test images in the fixed faithfulness sample
    "seed": 0,
    "methods": ["gradient", "smoothgrad", "integrated_gradients", "gradcam", "expected_gradients", "random"],
    "smoothgrad_samples": 16, "noise": 0.15,  # noise sd in [0, 1] image units
    "ig_steps": 32, "shap_samples": 50, "background": 100,  # train images drawn as SHAP references
    "deletion_steps": 16, "memory_mb": 1024.0,
    "surrogate": "concepts__xgboost",  # whose SHAP is compared with the maps
    "tree": "concepts__tree",  # whose rule path is shown
}


class Context:
    """What every explanation needs from a run: model, test images, tables, surrogates, background."""

    def __init__(self, run: RunDir, data_root=None, opts: dict | None = None):
        self.run, self.opts = run, {**OPTIONS, **(opts or {})}
        self.raw_model, ckpt = load_backbone(run)  # the checkpoint as trained (randomisation starts here)
        self.model = self.raw_model.fused()  # the same function, BatchNorm folded: what every map and prediction uses
        cfg = run.manifest["config"]
        dc = cfg["data"]
        self.tables = load_tables(run)
        data = run_dataset(run, data_root)
        self.test_images = data.splits["test"].images
        self.names = class_names(dc["flag"])
        rng = np.random.default_rng(self.opts["seed"])
        self.train_images = train = data.splits["train"].images
        bg = train[rng.choice(len(train), min(self.opts["background"], len(train)), replace=False)]
        self.background = A.images_to_tensor(bg)
        self.surrogate = self._surrogate(self.opts["surrogate"])
        self.tree = self._surrogate(self.opts["tree"])
        if self.tree.kind != "tree":
            raise HybridError(f"--tree '{self.opts['tree']}' is not a tree (kind: {self.tree.kind}); the rule path "
                              "comes from a tree surrogate (*__tree), e.g. concepts__tree.")
        fs = self.opts["surrogate"].split("__")[0]
        self.X_test, self.feature_names = feature_matrix(self.tables["test"], fs)
        self.X_train, _ = feature_matrix(self.tables["train"], fs)
        self.X_tree, self.tree_names = feature_matrix(self.tables["test"], self.opts["tree"].split("__")[0])
        self.tree_units = concept_units(self.tree_names)
        self.units = concept_units(self.feature_names)
        # A.MAX_BATCH samples per pass was fastest on a 2-core CPU (bench/bench_attribution.py); fewer when RAM is short
        self.max_batch = min(A.MAX_BATCH, A.batch_for_memory(self.model, tuple(self.background.shape[1:]), self.opts["memory_mb"]))

    def _surrogate(self, name: str):
        rel = f"surrogates/{name}.joblib"
        if rel not in self.run.manifest["files"]:
            raise HybridError(f"Run folder {self.run.path} has no surrogate '{name}'; run `hybrid surrogates "
                              f"{self.run.path}` first (or pick one of its surrogates/*.joblib).")
        return load_joblib(self.run, rel)

    def kwargs(self, method: str) -> dict:
        o = self.opts
        kw = {"max_batch": self.max_batch, "seed": o["seed"]}
        if method == "smoothgrad":
            kw.update(n_samples=o["smoothgrad_samples"], noise=o["noise"])
        elif method == "integrated_gradients":
            kw.update(n_steps=o["ig_steps"])
        elif method == "expected_gradients":
            kw.update(background=self.background, n_samples=o["shap_samples"])
        return kw

    def maps(self, idx: np.ndarray, model=None, progress: bool = True) -> tuple[dict, dict]:
        """Maps (N, H, W) per method for test images idx, explaining the CNN's predicted class; seconds per method."""
        model = model or self.model
        x = A.images_to_tensor(self.test_images[idx])
        target = torch.as_tensor(self.tables["test"]["pred"][idx])
        maps, secs = {}, {}
        for m in tqdm(self.opts["methods"], desc="attributions", disable=not progress, leave=False):
            t0 = time.perf_counter()
            maps[m] = A.to_map(A.attribute(model, x, target, m, **self.kwargs(m)), m)
            secs[m] = time.perf_counter() - t0
        return maps, secs

    def shap(self, idx: np.ndarray):
        return surrogate_explanation(self.surrogate, self.X_test[idx], self.feature_names, background=self.X_train)


def faithfulness_sample(n_test: int, n: int, seed: int) -> np.ndarray:
    """The fixed test sample: n indices drawn without replacement by seed, sorted."""
    return np.sort(np.random.default_rng(seed).choice(n_test, min(n, n_test), replace=False))


def faithfulness_stage(run: RunDir, data_root=None, opts: dict | None = None, progress: bool = True) -> list[dict]:
    """Faithfulness and sanity table, method agreement and the SHAP-versus-saliency region table."""
    ctx = Context(run, data_root, opts)
    o = ctx.opts
    te = ctx.tables["test"]
    idx = faithfulness_sample(len(te["pred"]), o["n"], o["seed"])
    with run.stage("faithfulness"):
        x = A.images_to_tensor(ctx.test_images[idx])
        target = torch.as_tensor(te["pred"][idx])
        maps, secs = ctx.maps(idx, progress=progress)
        rand_maps, _ = ctx.maps(idx, model=randomised_copy(ctx.raw_model, o["seed"]).fused(), progress=progress)
        masks = te["masks"][idx]
        rows, curves = [], {"deletion": {}, "insertion": {}}
        for m in tqdm(o["methods"], desc="deletion/insertion", disable=not progress, leave=False):
            di = deletion_insertion(ctx.model, x, target, maps[m], n_steps=o["deletion_steps"])
            curves["deletion"][m], curves["insertion"][m] = di["deletion_curve"], di["insertion_curve"]
            rows.append({"method": m, "deletion_auc": float(di["deletion_auc"].mean()),
                         "insertion_auc": float(di["insertion_auc"].mean()),
                         "randomisation_corr": float(rank_corr(maps[m], rand_maps[m]).mean()),
                         "lesion_mass": float(mass_share(maps[m], masks).mean()),
                         "images_per_s": round(len(idx) / secs[m], 1)})
        area = float(masks.mean())
        agree = pairwise_agreement({m: maps[m] for m in o["methods"]})
        regions = region_masks(ctx.test_images[idx])
        expl = ctx.shap(idx)
        cls_shap = expl.values[np.arange(len(idx)), :, te["pred"][idx]]
        concept = concept_region_scores(cls_shap, ctx.feature_names)
        layout_share = layout_shap_share(cls_shap, ctx.feature_names)  # left out of the region comparison
        region_area = np.stack([regions[r].reshape(len(idx), -1).mean(1) for r in REGIONS], 1)
        region_rows = []
        for m in o["methods"]:
            pix = pixel_region_scores(maps[m], regions)
            for basis, ar in (("mass share", None), ("mass / area", region_area)):
                ra = region_agreement(pix, concept, ar)
                region_rows.append({"method": m, "pixel basis": basis, "top-region agreement": ra["agree_rate"],
                                    "rank corr. over regions": ra["rank_corr"],
                                    "pixel top region": _counts(ra["top_pixel"]),
                                    "concept top region": _counts(ra["top_concept"])})
        run.write_json("explain/faithfulness.json", {"sample": idx.tolist(), "rows": rows,
                                                      "lesion_area_share": area,
                                                      "layout_shap_share": layout_share, "options": o})
        run.write_text("explain/faithfulness.csv", _csv(rows))
        run.write_text("explain/faithfulness.md", faithfulness_markdown(rows, area, agree, o, len(idx)))
        run.write_text("explain/regions.csv", _csv(region_rows))
        run.write_bytes("explain/deletion_curves.png", curves_figure(curves["deletion"], "deletion"))
        run.write_bytes("explain/insertion_curves.png", curves_figure(curves["insertion"], "insertion"))
        gi = global_importance(ctx.shap(np.arange(len(te["pred"]))))
        run.write_text("explain/concept_importance.csv", _csv(
            [{"concept": f, **{ctx.names[k]: round(float(gi[i, k]), 5) for k in range(gi.shape[1])}}
             for i, f in enumerate(ctx.feature_names)]))
        # disagreements: where the gradient map and the concept SHAP point at different regions
        ra = region_agreement(pixel_region_scores(maps["integrated_gradients"], regions), concept, region_area) \
            if "integrated_gradients" in maps else None
        bad = np.nonzero(ra["top_pixel"] != ra["top_concept"])[0][:8] if ra is not None else []
        run.write_text("explain/regions.md", regions_markdown(region_rows, o, len(bad), layout_share))
        run.remove("explain/region_disagreements.png")  # an earlier sample's examples would mislead
        if len(bad):
            titles = [f"#{idx[i]} pixels: {REGIONS[ra['top_pixel'][i]]} / concepts: {REGIONS[ra['top_concept'][i]]}"
                      for i in bad]
            run.write_bytes("explain/region_disagreements.png", gallery_figure(
                ctx.test_images[idx[bad]], masks[bad], {m: maps[m][bad] for m in o["methods"] if m != "random"}, titles))
    return rows


def _counts(top: np.ndarray) -> str:
    c = np.bincount(top, minlength=len(REGIONS))
    return ", ".join(f"{REGIONS[i]} {c[i]}" for i in np.argsort(-c) if c[i])


def faithfulness_markdown(rows, area, agree, o, n) -> str:
    keys = ["deletion_auc", "insertion_auc", "randomisation_corr", "lesion_mass"]
    head = " | ".join(f"{METRICS[k].name} {METRICS[k].arrow}" for k in keys)
    lines = [f"# Faithfulness and sanity of the CNN's pixel attributions ({n} test images, fixed sample, seed {o['seed']})",
             "", f"| method | {head} | images/s |", "| --- |" + " --- |" * (len(keys) + 1)]
    floor = next((r for r in rows if r["method"] == "random"), None)
    for r in rows:
        cells = []
        for k in keys:
            v = f"{r[k]:.3f}"
            if floor is not None and r is not floor and k in ("deletion_auc", "insertion_auc"):
                better = (r[k] > floor[k]) == METRICS[k].higher_is_better
                v += " ✓" if better else " ✗"
            cells.append(v)
        lines.append(f"| {A.LABELS[r['method']]} | " + " | ".join(cells) + f" | {r['images_per_s']:.0f} |")
    lines += ["", "↑ higher is better, ↓ lower is better; ✓/✗: better/worse than the random-attribution floor.",
              f"Lesion mass share is read against the lesion's own area share, {area:.3f} (what a uniform map gets).",
              "The random row's randomisation correlation is 1 by construction: its map ignores the model, "
              "which is exactly what the check is built to catch.", ""]
    lines += [f"- **{METRICS[k].name}**: {METRICS[k].description}." for k in keys]
    lines += [f"- Settings: SmoothGrad {o['smoothgrad_samples']} samples, noise sd {o['noise']}; Integrated Gradients "
              f"{o['ig_steps']} Gauss–Legendre steps from a black baseline; SHAP (expected gradients) {o['shap_samples']} "
              f"samples over {o['background']} train references; deletion/insertion {o['deletion_steps']} steps, "
              "deletion to black, insertion from a Gaussian blur (σ = width/6).", "",
              "## Agreement between methods (mean per-image Spearman correlation of maps)", ""]
    methods = list(dict.fromkeys(a for a, _ in agree))
    lines += ["| | " + " | ".join(A.LABELS[m] for m in methods) + " |", "| --- |" + " --- |" * len(methods)]
    for a in methods:
        lines.append(f"| {A.LABELS[a]} | " + " | ".join(f"{agree[(a, b)]:.2f}" for b in methods) + " |")
    return "\n".join(lines) + "\n"


def regions_markdown(rows, o, n_examples: int = 0, layout_share: float = 0.0) -> str:
    lines = ["# SHAP versus saliency: do the CNN's maps and the concept surrogate point at the same region?", "",
             f"Concept side: |SHAP| of the `{o['surrogate']}` surrogate for the CNN's predicted class, summed over the "
             "concepts declared on each region (lesion, border, skin, corners, artifact). Pixel side: the share of "
             "positive attribution in the same regions of the image, as is (mass share) or divided by the region's "
             "area (mass / area, so a big lesion does not win by size). Chance agreement with 5 regions is about 0.2, "
             "but both sides are skewed towards the lesion; read against the random row. The layout concepts "
             "(CIELAB over a fixed central disc and the rest of the image, no mask region) are left out of the "
             f"concept side; they carry {layout_share:.0%} of its |SHAP| on this sample.", "",
             "| method | pixel basis | top-region agreement ↑ | rank corr. over regions ↑ | pixel top region (images) | concept top region (images) |",
             "| --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append(f"| {A.LABELS[r['method']]} | {r['pixel basis']} | {r['top-region agreement']:.3f} | "
                     f"{r['rank corr. over regions']:.3f} | {r['pixel top region']} | {r['concept top region']} |")
    lines += ["", "Example disagreements (Integrated Gradients, mass / area): region_disagreements.png." if n_examples
              else "No example disagreements to show: Integrated Gradients was not computed, or its top region "
                   "agreed with the concept side on every image of the sample.", ""]
    return "\n".join(lines)


def gallery_indices(table: dict, per_class: int = 2, seed: int = 0) -> np.ndarray:
    """Test indices covering every true class, a correct and a wrong CNN prediction each where they exist."""
    rng = np.random.default_rng(seed)
    y, p = table["labels"], table["pred"]
    out = []
    for k in np.unique(y):
        for ok in (True, False):
            cand = np.nonzero((y == k) & ((p == y) == ok))[0]
            out += list(rng.choice(cand, min(len(cand), max(1, per_class // 2)), replace=False))
    return np.array(sorted(out), dtype=int)


def explain_images(run: RunDir, indices, data_root=None, opts: dict | None = None, progress: bool = True,
                   gallery: bool = False) -> list[str]:
    """One side-by-side figure per test index → explain/image_<i>.png; with gallery, also
    explain/gallery.png (one row per image). Returns the written paths."""
    ctx = Context(run, data_root, opts)
    te = ctx.tables["test"]
    idx = np.asarray(indices, dtype=int)
    bad = idx[(idx < 0) | (idx >= len(te["pred"]))]
    if len(bad):
        raise HybridError(f"--index {bad[0]} is outside the test split (0–{len(te['pred']) - 1}).")
    maps, _ = ctx.maps(idx, progress=progress)
    maps.pop("random", None)
    expl = ctx.shap(idx)
    paths = []
    shap_label = (f"SHAP value for the predicted class ({ctx.opts['surrogate']}, "
                  f"{shap_unit(ctx.surrogate.kind)})")
    with run.stage("explain"):
        for j, i in enumerate(tqdm(idx, desc="figures", disable=not progress, leave=False)):
            pred, true = int(te["pred"][i]), int(te["labels"][i])
            lines = rule_path(ctx.tree, ctx.X_tree[i], ctx.tree_names, ctx.tree_units)
            leaf = int(lines[-1].split()[-1])
            lines[-1] = f"→ {ctx.names[leaf]}   (CNN: {ctx.names[pred]})"
            title = (f"test #{i}: true {ctx.names[true]} — CNN {ctx.names[pred]} (p = {te['proba'][i, pred]:.2f})"
                     + ("" if pred == true else "  [wrong]"))
            labels = value_labels(ctx.feature_names, ctx.X_test[i], ctx.units)
            png = explanation_figure(ctx.test_images[i], te["masks"][i], {m: v[j] for m, v in maps.items()},
                                     expl.values[j, :, pred], ctx.feature_names, lines, title, shap_label=shap_label,
                                     feature_labels=labels)
            paths.append(str(run.write_bytes(f"explain/image_{i}.png", png)))
        if gallery:
            short = short_class_names(ctx.names)
            titles = [f"#{i} true {short[te['labels'][i]]} → CNN {short[te['pred'][i]]}" for i in idx]
            paths.append(str(run.write_bytes("explain/gallery.png", gallery_figure(
                ctx.test_images[idx], te["masks"][idx], maps, titles, caption=class_legend(ctx.names)))))
    return paths
