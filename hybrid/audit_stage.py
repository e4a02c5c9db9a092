"""Stage 5 against a run folder: shortcut audit (where the maps fall), planted-stamp response,
lesion-level leakage, skin-tone strata and HAM10000 subgroups; the shifts of hybrid.audit_shift → audit/*.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from . import attribution as A
from . import audit as AU
from .audit_shift import (SKIN_STEPS, concept_matrix, external_audit, external_markdown, shift_figure,
                          shift_markdown, shift_metrics, skin_swap_markdown)
from .artifacts import RunDir
from .config import DEFAULTS
from .data import class_legend, short_class_names
from .concepts import CONCEPT_NAMES, REGIONS, measure_concepts, region_masks
from .errors import HybridError
from .explain import global_importance, surrogate_explanation
from .explain_stage import Context
from .metrics import fmt_ci
from .plots import gallery_figure
from .external import default_external
from .shortcut import KINDS, apply_stamp, stamp_mask
from .surrogate_stage import _csv

AUDIT_OPTIONS = {"methods": ["gradient", "smoothgrad", "gradcam", "expected_gradients"],
                 "smoothgrad_samples": 8, "shap_samples": 16,  # fewer samples than the faithfulness table: every test image is audited
                 "stamp": "ruler", "n_stamp": 400, "n_boot": 500}
ARTIFACT_CONCEPTS = ("ink", "hair", "dark_corners")


def _group_md(title: str, rows: list[dict], majority: str) -> list[str]:
    """A subgroup table; `majority` names the test set's most frequent class (the majority_acc column)."""
    out = [f"### {title}", "", f"| group | n | ACC [95% CI] | ACC of always *{majority}* | AUC (classes present) | ECE ↓ | "
           "surrogate fidelity [95% CI] |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        auc = "–" if r["auc"] is None else f"{r['auc']:.3f}"
        out.append(f"| {r['group']} | {r['n']} | {fmt_ci(r['acc'], r['acc_ci95'])} | {r['majority_acc']:.3f} | {auc} | "
                   f"{r['ece']:.3f} | {fmt_ci(r.get('fidelity'), r.get('fidelity_ci95'))} |")
    return out + [""]


def _metadata(run: RunDir, split: str) -> pd.DataFrame | None:
    rel = f"features/{split}_metadata.csv"
    if rel not in run.manifest["files"]:
        return None
    meta = pd.read_csv(run.verify(rel))
    if "lesion_id" not in meta.columns:
        raise HybridError(f"Metadata file {run.path / rel} has no column 'lesion_id'; expected HAM10000 metadata columns.")
    return meta


def skin_swap_audit(ctx: Context, y: np.ndarray) -> dict | None:
    """hybrid.audit.skin_swap_response for the operating point's two classes (melanoma, nevus), with
    each class's typical skin colour taken from the train images; None where it cannot run (not RGB,
    or a class missing from train or test)."""
    from .train import predict_proba

    op = {**DEFAULTS["operating_point"], **ctx.run.manifest["config"].get("operating_point", {})}
    pos, neg = op["positive_class"], op["negative_class"]
    tr = ctx.tables["train"]
    if ctx.test_images.shape[-1] != 3 or len(ctx.train_images) != len(tr["labels"]) or \
            not all((tr["labels"] == c).any() and (y == c).any() for c in (pos, neg)):
        return None
    _, skin = AU.skin_lab(ctx.train_images, tr["masks"])
    typical = {c: np.median(skin[tr["labels"] == c], axis=0) for c in (pos, neg)}
    out = AU.skin_swap_response(lambda x: predict_proba(ctx.model, x), ctx.test_images, ctx.tables["test"]["masks"],
                                y, typical, pos, neg)
    return {"positive_class": pos, "negative_class": neg,
            "typical_skin_lab": {"positive": typical[pos].tolist(), "negative": typical[neg].tolist()}, **out}


def audit_stage(run: RunDir, data_root=None, opts: dict | None = None, progress: bool = True) -> dict:
    """Every audit of one run; writes audit/audit.md, audit/*.csv, audit/audit.json, audit/off_lesion.png."""
    o = {**AUDIT_OPTIONS, **(opts or {})}
    if o["stamp"] not in KINDS:
        raise HybridError(f"--stamp '{o['stamp']}' is unknown; expected one of {', '.join(KINDS)}.")
    ctx = Context(run, data_root, {"methods": o["methods"], "smoothgrad_samples": o["smoothgrad_samples"],
                                   "shap_samples": o["shap_samples"], "seed": o.get("seed", 0)})
    te = ctx.tables["test"]
    n = len(te["pred"])
    meta_tr, meta_te = _metadata(run, "train"), _metadata(run, "test")  # checked before the long work
    result: dict = {"options": o, "rule": {"version": AU.RULE_VERSION, "flag_methods": AU.FLAG_METHODS, "flag_enrichment": AU.FLAG_ENRICHMENT,
                                           "lesion_focus_min": AU.LESION_FOCUS_MIN}}
    md = ["# Safety audit", ""]
    laps, t0 = {}, [time.perf_counter()]

    def lap(name: str) -> None:  # wall seconds per part, in audit.json: where the audit's time goes
        now = time.perf_counter()
        laps[name] = round(now - t0[0], 1)
        t0[0] = now

    with run.stage("audit"):
        # 1. where the maps fall, every test image
        all_idx = np.arange(n)
        maps, _ = ctx.maps(all_idx, progress=progress)
        regions = region_masks(ctx.test_images)
        per_image, per_class = [], []
        focus = {}
        for m in o["methods"]:
            rt = AU.region_table(maps[m], regions)
            focus[m] = rt
            for i in range(n):
                per_image.append({"index": int(te["index"][i]), "method": m, "cnn_pred": int(te["pred"][i]),
                                  **{r: round(float(rt[r][i]), 4) for r in REGIONS},
                                  "lesion_focus": round(float(rt["lesion_focus"][i]), 3), "off_lesion": bool(rt["off_lesion"][i])})
        md += ["## Where the CNN looks (every test image)", "",
               f"Share of positive attribution per region; *lesion focus* = (lesion + border) share ÷ their area share "
               f"(1 = no better than a uniform map). An image is flagged *off-lesion* when its lesion focus is below "
               f"{AU.LESION_FOCUS_MIN:g}. Rows by the CNN's predicted class.", "",
               "| method | CNN class | n | " + " | ".join(REGIONS) + " | lesion focus | off-lesion |",
               "| --- | --- | --- |" + " --- |" * (len(REGIONS) + 2)]
        for m in o["methods"]:
            rt = focus[m]
            for k in np.unique(te["pred"]):
                sel = te["pred"] == k
                row = {"method": m, "class": ctx.names[k], "n": int(sel.sum()),
                       **{r: float(rt[r][sel].mean()) for r in REGIONS},
                       "lesion_focus": float(np.median(rt["lesion_focus"][sel])), "off_lesion": float(rt["off_lesion"][sel].mean())}
                per_class.append(row)
                md.append(f"| {A.LABELS[m]} | {row['class']} | {row['n']} | " + " | ".join(f"{row[r]:.2f}" for r in REGIONS)
                          + f" | {row['lesion_focus']:.2f} (median) | {row['off_lesion']:.0%} |")
        md.append("")
        run.write_text("audit/regions_per_image.csv", _csv(per_image))
        run.write_text("audit/regions_per_class.csv", _csv(per_class))
        ref = "expected_gradients" if "expected_gradients" in focus else o["methods"][0]
        worst = np.argsort(focus[ref]["lesion_focus"])[:8]
        short = short_class_names(ctx.names)
        titles = [f"#{i} CNN: {short[te['pred'][i]]}, lesion focus {focus[ref]['lesion_focus'][i]:.2f}" for i in worst]
        run.write_bytes("audit/off_lesion.png", gallery_figure(ctx.test_images[worst], te["masks"][worst],
                                                                {m: maps[m][worst] for m in o["methods"]}, titles,
                                                                caption=(f"Lesion focus: the share of {A.LABELS[ref]}'s "
                                                                         "mass on lesion and border ÷ their share of the "
                                                                         "image (1 = no preference). "
                                                                         + class_legend(ctx.names))))
        md += [f"Worst offenders (lowest lesion focus under {A.LABELS[ref]}): off_lesion.png.", ""]
        lap("maps and regions, every test image")

        # 2. planted-stamp response
        result["shortcut"] = stamp_response(ctx, o, progress)
        md += shortcut_markdown(result["shortcut"], ctx.names)
        lap("planted-stamp probe")

        # 3. leakage, skin tone, subgroups
        sur_pred = ctx.surrogate.predict(ctx.X_test)
        y, proba = te["labels"], te["proba"]
        top = ctx.names[int(np.bincount(y).argmax())]
        if meta_tr is not None and meta_te is not None:
            leak = AU.leaked(meta_tr["lesion_id"], meta_te["lesion_id"].to_numpy())
            rows = AU.group_metrics(np.where(leak, "shares a lesion with train", "leak-free"), y, proba, sur_pred, o["n_boot"],
                                    order=["leak-free", "shares a lesion with train"])
            rows.insert(0, AU.group_metrics(np.full(n, "full test set"), y, proba, sur_pred, o["n_boot"])[0])
            result["leakage"] = {"n_leaked": int(leak.sum()), "n_test": n, "rows": rows}
            md += ["## Lesion-level leakage", "",
                   f"{int(leak.sum())} of {n} test images ({leak.mean():.0%}) show a lesion (HAM10000 `lesion_id`) that also "
                   "appears in train — another photograph of the same lesion. Headline numbers on the full test set and "
                   "on the leak-free part:", ""]
            md += _group_md("Full versus leak-free test set", rows, top)[2:]
        else:
            md += ["## Lesion-level leakage", "", "Not available: the run has no HAM10000 metadata (features/*_metadata.csv).", ""]
        ita = te["concepts"][:, CONCEPT_NAMES.index("skin_ita")]
        strata = AU.ita_category(ita)
        result["skin_tone"] = AU.group_metrics(strata, y, proba, sur_pred, o["n_boot"], order=AU.ITA_ORDER)
        md += ["## Skin tone (ITA of the surrounding skin, measured on the image)", "",
               "Counts show how thin the darker strata are in HAM10000; intervals are bootstrap 95%. "
               "ITA measured on 28-px renders under dermoscope lighting is a proxy, not a Fitzpatrick type. "
               f"Here and below, read a group's ACC against the ACC of always answering *{top}* (its share of that "
               "class): a group with more of it scores higher without the CNN doing better there.", ""]
        md += _group_md("By ITA category", result["skin_tone"], top)[2:]
        if meta_te is not None:
            result["subgroups"] = {}
            for col, vals, order in (("sex", meta_te["sex"].fillna("unknown").astype(str).to_numpy(), None),
                                     ("age band", AU.age_band(meta_te["age"].to_numpy()), AU.AGE_ORDER),
                                     ("body site", meta_te["localization"].fillna("unknown").astype(str).to_numpy(), None)):
                result["subgroups"][col] = AU.group_metrics(vals, y, proba, sur_pred, o["n_boot"], order=order)
                md += _group_md(f"By {col}", result["subgroups"][col], top)
        lap("leakage, skin tone, subgroups")
        # 4. controlled shifts: skin tone and common corruptions
        result["skin_shift"] = [{"delta_ita": d, **shift_metrics(ctx, AU.skin_tone_shift(ctx.test_images, te["masks"], d))}
                                for d in tqdm(SKIN_STEPS, desc="skin-tone shift", disable=not progress, leave=False)]
        result["corruptions"] = [{"corruption": k, "severity": sv, **shift_metrics(ctx, AU.corrupt(ctx.test_images, k, sv, o.get("seed", 0)))}
                                 for k in tqdm(AU.CORRUPTIONS, desc="corruptions", disable=not progress, leave=False)
                                 for sv in (1, 2, 3)]
        run.write_bytes("audit/skin_shift.png", shift_figure(result["skin_shift"]))
        md += shift_markdown(result["skin_shift"], result["corruptions"])
        result["skin_swap"] = skin_swap_audit(ctx, y)
        md += skin_swap_markdown(result["skin_swap"], ctx.names)
        lap("skin-tone shift and corruptions")
        # 5. another clinic and device
        ext = o.get("external") or default_external("ph2", run.manifest["config"]["data"]["size"])
        if ext:
            name = Path(o["external"]).stem if o.get("external") else "ph2"
            result["external"] = external_audit(ctx, ext, name, focus, o, progress)
            md += external_markdown(result["external"], ctx.names)
        else:
            md += ["## Another clinic", "", "Not run: no external set given and none at ../shared/data/external/ph2.", ""]
        lap("external set")
        result["timings_s"] = laps
        run.write_json("audit/audit.json", result)
        run.write_text("audit/audit.md", "\n".join(md) + "\n")
    return result


def stamp_response(ctx: Context, o: dict, progress: bool) -> dict:
    """Stamp `o['stamp']` on test images: prediction flips, attribution enrichment on the stamp,
    the artifact concepts' SHAP rank, and the fixed flag rule's verdict."""
    te = ctx.tables["test"]
    kind = o["stamp"]
    run_stamp = ctx.run.manifest["config"]["data"].get("stamp", {})
    target_class = int(run_stamp.get("class", 4))
    rng = np.random.default_rng(o.get("seed", 0))
    n = len(te["pred"])
    idx = np.sort(rng.choice(n, min(o["n_stamp"], n), replace=False))
    clean = ctx.test_images[idx]
    stamped = apply_stamp(clean, kind)
    from .train import predict_proba

    p_clean = te["proba"][idx]
    p_st = predict_proba(ctx.model, stamped)
    pred_clean, pred_st = p_clean.argmax(1), p_st.argmax(1)
    y = te["labels"][idx]
    nv = int(np.bincount(te["pred"]).argmax())  # the CNN's majority class (nevus)
    was_nv = pred_clean == nv
    mask = np.broadcast_to(stamp_mask(kind, clean.shape[1]), (len(idx), *clean.shape[1:3]))
    x = A.images_to_tensor(stamped)
    target = torch.as_tensor(pred_st)
    enr = {}
    methods = list(dict.fromkeys([m for m in o["methods"] if m != "random"] + list(AU.FLAG_METHODS)))
    for m in tqdm(methods, desc="stamp maps", disable=not progress, leave=False):
        mp = A.to_map(A.attribute(ctx.model, x, target, m, **ctx.kwargs(m)), m)
        enr[m] = float(AU.enrichment(mp, mask).mean())
    flagged, med = AU.shortcut_flag(enr)
    flagged_v1 = AU.shortcut_flag(enr, AU.FLAG_METHODS_V1)[0] if all(m in enr for m in AU.FLAG_METHODS_V1) else None
    conc = measure_concepts(stamped)
    expl = surrogate_explanation(ctx.surrogate, concept_matrix(ctx, conc), ctx.feature_names, background=ctx.X_train)
    gi = global_importance(expl)[:, target_class]
    order = list(np.array(ctx.feature_names)[np.argsort(-gi)])
    ranks = {c: order.index(c) + 1 for c in ARTIFACT_CONCEPTS if c in order}
    return {"kind": kind, "n": len(idx), "target_class": target_class,
            "acc_clean": float((pred_clean == y).mean()), "acc_stamped": float((pred_st == y).mean()),
            "flip_rate": float((pred_clean != pred_st).mean()),
            "majority_to_target": float(((pred_st == target_class) & was_nv).sum() / max(was_nv.sum(), 1)),
            "target_rate_clean": float((pred_clean == target_class).mean()),
            "target_rate_stamped": float((pred_st == target_class).mean()),
            "stamp_area_share": float(mask[0].mean()), "enrichment": enr, "median_enrichment": med, "flagged": bool(flagged),
            "flagged_rule_v1": flagged_v1,
            "artifact_concept_rank": ranks, "n_features": len(order)}


def shortcut_markdown(s: dict, names) -> list[str]:
    verdict = "**FLAGGED** — the maps concentrate on the stamp" if s["flagged"] else "not flagged"
    enr = ", ".join(f"{A.LABELS[m]} {v:.2f}" for m, v in s["enrichment"].items())
    ranks = ", ".join(f"{c} #{r}" for c, r in s["artifact_concept_rank"].items())
    return ["## Planted-shortcut probe", "",
            f"A '{s['kind']}' stamp drawn on {s['n']} test images (fixed sample). Rule v{AU.RULE_VERSION}, fixed in advance of "
            f"the runs it is judged on: flag when the enrichment (attribution share ÷ area share, the stamp covers "
            f"{s['stamp_area_share']:.3f} of the image) under {', '.join(A.LABELS[m] for m in AU.FLAG_METHODS)} is ≥ "
            f"{AU.FLAG_ENRICHMENT:g}. Rule v1 (median over {', '.join(A.LABELS[m] for m in AU.FLAG_METHODS_V1)}) missed "
            "planted models whose shortcut had saturated the gradient; see hybrid/audit.py and "
            "bench/results_planted_shortcut.md.", "",
            "| ACC clean | ACC stamped | predictions changed | CNN-majority → " + names[s['target_class']] +
            " | " + names[s['target_class']] + " rate clean → stamped | enrichment on stamp | rule value | verdict | artifact concepts' SHAP rank |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
            f"| {s['acc_clean']:.3f} | {s['acc_stamped']:.3f} | {s['flip_rate']:.1%} | {s['majority_to_target']:.1%} | "
            f"{s['target_rate_clean']:.1%} → {s['target_rate_stamped']:.1%} | {enr} | {s['median_enrichment']:.2f} | {verdict} | "
            f"{ranks} (of {s['n_features']}) |", ""]
