"""Audits under distribution shift, for `hybrid audit`: a controlled skin-tone shift, common
corruptions, and an external clinic (PH2 by default) with the audit's region shares there.
"""
from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm

from . import attribution as A
from . import audit as AU
from .concepts import REGIONS, measure_concepts, region_masks
from .explain_stage import Context
from .errors import HybridError
from .external import load_external
from .metrics import expected_calibration_error, fmt_ci
from .shift import shift_warning


SKIN_STEPS = (0, 10, 20, 30, 40)  # degrees of ITA removed from the surrounding skin


def shift_metrics(ctx: Context, images: np.ndarray) -> dict:
    """CNN ACC, AUC (classes present), ECE against the truth and concept-surrogate fidelity to the
    CNN, on transformed test images (concepts re-measured on them)."""
    from .train import predict_proba

    y = ctx.tables["test"]["labels"]
    p = predict_proba(ctx.model, images)
    sur = ctx.surrogate.predict(concept_matrix(ctx, measure_concepts(images, n_jobs=-1)))
    return {"acc": float((p.argmax(1) == y).mean()), "auc": AU.auc_present(y, p),
            "ece": expected_calibration_error(y, p), "fidelity": float((sur == p.argmax(1)).mean()),
            "pred_changed": float((p.argmax(1) != ctx.tables["test"]["pred"]).mean())}


def shift_markdown(skin: list[dict], corr: list[dict]) -> list[str]:
    out = ["## Controlled shifts", "",
           "Skin tone: the surrounding skin is darkened by Δ degrees of ITA in CIELAB, the lesion kept (skin_shift.png). "
           "Corruptions at three severities (see `hybrid.audit.corrupt`). Concepts are re-measured on the shifted "
           "images; *predictions changed* is against the CNN on the original images.", "",
           "| shift | ACC ↑ | AUC ↑ | ECE ↓ | surrogate fidelity ↑ | predictions changed |", "| --- | --- | --- | --- | --- | --- |"]
    for r in skin:
        out.append(f"| skin ITA −{r['delta_ita']}° | {r['acc']:.3f} | {r['auc']:.3f} | {r['ece']:.3f} | {r['fidelity']:.3f} | {r['pred_changed']:.1%} |")
    for r in corr:
        out.append(f"| {r['corruption']} {r['severity']} | {r['acc']:.3f} | {r['auc']:.3f} | {r['ece']:.3f} | {r['fidelity']:.3f} | {r['pred_changed']:.1%} |")
    return out + [""]


def skin_swap_markdown(r: dict | None, names) -> list[str]:
    out = ["## The skin around the lesion (counterfactual)", ""]
    if r is None:
        return out + ["Not run: it needs RGB images and both operating-point classes in train and test.", ""]
    pos, neg = r["positive_class"], r["negative_class"]
    P, N = names[pos], names[neg]
    lab = {c: "L* {}, a* {}, b* {}".format(*(int(round(v)) for v in r["typical_skin_lab"][c])) for c in ("positive", "negative")}
    out += [f"Only the skin changes: every test image of {P} and of {N} has its non-lesion pixels shifted in CIELAB so that "
            f"their mean is the other class's typical skin colour (the median over its train images: {P} {lab['positive']}, "
            f"{N} {lab['negative']}) — the *swap* — or its own class's — the *control*, what recolouring alone does. "
            f"A model that reads the lesion barely moves; one whose p({P}) follows the swap well beyond the control reads "
            "the skin. In HAM10000 the skin's colour tells more about how an image was taken than about the lesion "
            "(`bench/device_confound.py`).", "",
            f"| test images | n | mean p({P}): before → swap / control | called {P} (argmax): before → swap / control |",
            "| --- | --- | --- | --- |"]
    for side, c in (("positive", pos), ("negative", neg)):
        v = r[side]
        out.append(f"| {names[c]} | {v['n']} | {v['before']['mean_p']:.3f} → {v['swap']['mean_p']:.3f} / "
                   f"{v['control']['mean_p']:.3f} | {v['before']['called_pos']:.1%} → {v['swap']['called_pos']:.1%} / "
                   f"{v['control']['called_pos']:.1%} |")
    if "auc" in r:
        a = r["auc"]
        out += ["", f"{P}-vs-{N} AUC: {a['before']:.3f} before, {a['swap']:.3f} with every skin swapped, "
                f"{a['control']:.3f} with every skin at its own class's typical colour: **{a['control'] - a['swap']:.3f} "
                "of AUC lost to the skin's colour alone** (swap against control; 0 for a model that reads only the lesion)."]
    return out + [""]


def shift_figure(rows: list[dict]) -> bytes:
    import matplotlib.pyplot as plt

    from .plots import _png

    fig, ax = plt.subplots(figsize=(5, 3.5))
    d = [r["delta_ita"] for r in rows]
    for k, label in (("acc", "CNN accuracy"), ("fidelity", "concept-surrogate fidelity"), ("ece", "CNN ECE (↓)")):
        ax.plot(d, [r[k] for r in rows], marker="o", label=label)
    ax.set_xlabel("surrounding skin darkened by Δ ITA (degrees)")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    ax.set_title("Controlled skin-tone shift (test set)")
    return _png(fig)




def concept_matrix(ctx: Context, concepts: np.ndarray) -> np.ndarray:
    fs = ctx.opts["surrogate"].split("__")[0]
    if fs != "concepts":
        raise HybridError(f"The stamp audit reads a surrogate on measured concepts; got '{ctx.opts['surrogate']}'.")
    return concepts


def external_audit(ctx: Context, path, name: str, test_focus: dict, o: dict, progress: bool) -> dict:
    """hybrid evaluate on the external set (written to evaluate/<name>.*) plus where the CNN's maps
    fall on its images, beside the same region shares on the DermaMNIST test set (test_focus:
    method → audit.region_table of the test images)."""
    from .evaluate_stage import evaluate_stage
    from .train import predict_proba

    ev = evaluate_stage(ctx.run, path, name, n_boot=o["n_boot"])
    images, _ = load_external(path, ctx.test_images.shape[1], len(ctx.names))
    x = A.images_to_tensor(images)
    target = torch.as_tensor(predict_proba(ctx.model, images).argmax(1))
    regions = region_masks(images)
    shares = {}
    for m in tqdm(o["methods"], desc=f"{name} maps", disable=not progress, leave=False):
        rt = {"DermaMNIST test": test_focus[m],
              name: AU.region_table(A.to_map(A.attribute(ctx.model, x, target, m, **ctx.kwargs(m)), m), regions)}
        shares[m] = {k: {**{r: float(v[r].mean()) for r in REGIONS}, "lesion_focus": float(np.median(v["lesion_focus"])),
                         "off_lesion": float(v["off_lesion"].mean())} for k, v in rt.items()}
    sur = ctx.opts["surrogate"]
    keep = ("n", "acc", "auc_classes_present", "ece_raw", "ece_calibrated", "binary", "shift")
    sets = {k: {**{f: s[f] for f in keep}, "fidelity": s["fidelity"].get(sur)} for k, s in ev["sets"].items()}
    return {"name": name, "operating_point": ev["operating_point"], "sets": sets, "surrogate": sur, "regions": shares}


def external_markdown(e: dict, names) -> list[str]:
    op = e["operating_point"]
    pos, neg = names[op["positive_class"]], names[op["negative_class"]]
    cols = list(e["sets"])
    out = [f"## Another clinic and device: {e['name']}", "",
           f"Evaluation only. Operating point from validation (T = {op['temperature']:.2f}; call {pos} when calibrated "
           f"p ≥ {op['threshold']:.3f}, validation sensitivity {op['val_sensitivity']:.0%}). Full table: "
           f"evaluate/{e['name']}.md.", "",
           "| metric | " + " | ".join(cols) + " |", "| --- |" + " --- |" * len(cols)]

    rows = [(f"{pos}-vs-{neg} AUC ↑", lambda s: fmt_ci(s["binary"]["auc"], s["binary"]["auc_ci95"])),
            ("sensitivity at the operating point ↑", lambda s: fmt_ci(s["binary"]["sensitivity"], s["binary"]["sensitivity_ci95"], True)),
            ("specificity at the operating point ↑", lambda s: fmt_ci(s["binary"]["specificity"], s["binary"]["specificity_ci95"], True)),
            ("sensitivity at argmax ↑", lambda s: fmt_ci(s["binary"]["sensitivity_argmax"], s["binary"]["sensitivity_argmax_ci95"], True)),
            ("ECE raw → calibrated ↓", lambda s: f"{s['ece_raw']:.3f} → {s['ece_calibrated']:.3f}"),
            ("images beyond validation's 99% embedding distance ↓", lambda s: f"{s['shift']['outside_fraction']:.1%}"),
            ("embedding distance AUC against validation, 0.5 if alike ↓",
             lambda s: f"{s['shift']['distance_auc']:.2f}"),
            (f"fidelity of {e['surrogate']} ↑", lambda s: fmt_ci(s["fidelity"]["fidelity"], s["fidelity"]["ci95"]) if s["fidelity"] else "–")]
    for label, fn in rows:
        out.append(f"| {label} | " + " | ".join(fn(e["sets"][c]) for c in cols) + " |")
    warn = shift_warning(e["name"], e["sets"][e["name"]])
    out += ["", warn] if warn else []
    out += ["", "Where the CNN looks, DermaMNIST test versus the external set (mean share of positive attribution; "
            "lesion focus as above, median):", "",
            "| method | set | " + " | ".join(REGIONS) + " | lesion focus | off-lesion |", "| --- | --- |" + " --- |" * (len(REGIONS) + 2)]
    for m, by_set in e["regions"].items():
        for k, v in by_set.items():
            out.append(f"| {A.LABELS[m]} | {k} | " + " | ".join(f"{v[r]:.2f}" for r in REGIONS)
                       + f" | {v['lesion_focus']:.2f} | {v['off_lesion']:.0%} |")
    return out + [""]
