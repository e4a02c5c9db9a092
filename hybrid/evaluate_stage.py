"""Evaluate a run on an external image set, beside DermaMNIST test, its leak-free subset and its
subset without the follow-up nevi.

The temperature and the melanoma threshold come from the validation split only (hybrid.operating);
the external set is never used to fit or choose anything. Writes evaluate/<name>.{json,md}.
"""
from __future__ import annotations

import re

import numpy as np

from . import audit as AU
from .adapt import adapt_batchnorm
from .artifacts import RunDir, sha256
from .config import DEFAULTS
from .data import class_names
from .errors import HybridError
from .external import load_external
from .features import feature_matrix, probe_predict, split_table
from .fidelity import bootstrap_fidelity
from .metrics import confusion, confusion_table, expected_calibration_error, fmt_ci
from .operating import binary_view, calibrate, fit_temperature, threshold_for_sensitivity
from .shift import EmbeddingDistance, shift_warning
from .stages import load_backbone
from .surrogate_stage import load_joblib, load_tables


def operating_point(run: RunDir, tables: dict, target_sensitivity: float | None = None) -> dict:
    """Temperature and melanoma threshold fitted on the run's validation table."""
    op = {**DEFAULTS["operating_point"], **run.manifest["config"].get("operating_point", {})}
    if target_sensitivity is not None:
        op["target_sensitivity"] = float(target_sensitivity)
    va = tables["val"]
    t = fit_temperature(va["proba"], va["labels"])
    p = calibrate(va["proba"], t)
    pos, neg = op["positive_class"], op["negative_class"]
    thr = threshold_for_sensitivity(p[:, pos], va["labels"] == pos, op["target_sensitivity"])
    val = binary_view(p, va["labels"], thr, pos, neg, n_boot=0)
    return {**op, "temperature": t, "threshold": thr, "val_sensitivity": val["sensitivity"],
            "val_specificity": val["specificity"], "val_ece_raw": expected_calibration_error(va["labels"], va["proba"]),
            "val_ece_calibrated": expected_calibration_error(va["labels"], p)}


def surrogate_predictions(run: RunDir, table: dict) -> dict[str, np.ndarray]:
    """Every fitted surrogate of the run (not the trivial one) applied to one split table."""
    out = {}
    for rel in sorted(run.manifest["files"]):
        m = re.fullmatch(r"surrogates/(.+)__(.+)\.joblib", rel)
        if m:
            out[f"{m[1]}__{m[2]}"] = load_joblib(run, rel).predict(feature_matrix(table, m[1])[0])
    return out


def set_metrics(proba: np.ndarray, y: np.ndarray, op: dict, surrogates: dict[str, np.ndarray],
                n_boot: int = 1000, seed: int = 0) -> dict:
    """Headline numbers of one image set: raw CNN probabilities in, calibrated with op's temperature."""
    cal = calibrate(proba, op["temperature"])
    pred = proba.argmax(1)
    present = sorted(int(k) for k in np.unique(y))
    cols = sorted(set(present) | set(int(k) for k in np.unique(pred)))
    cm = confusion(y, pred, proba.shape[1])
    out = {"n": int(len(y)), "classes_present": present, "acc": float((pred == y).mean()),
           "auc_classes_present": AU.auc_present(y, proba),
           "ece_raw": expected_calibration_error(y, proba), "ece_calibrated": expected_calibration_error(y, cal),
           "binary": binary_view(cal, y, op["threshold"], op["positive_class"], op["negative_class"], n_boot, seed),
           "confusion": {"rows_true": present, "cols_pred": cols, "counts": cm[np.ix_(present, cols)].tolist()},
           "fidelity": {}}
    for name, sp in surrogates.items():
        out["fidelity"][name] = {"fidelity": float((sp == pred).mean()),
                                 "ci95": bootstrap_fidelity(pred, sp, n_boot, seed)["fidelity_ci95"] if n_boot else None}
    return out


def external_table(run: RunDir, model, images: np.ndarray, labels: np.ndarray) -> dict:
    """A feature table (hybrid.features.split_table + CNN concepts) for external images (N, S, S, 3) uint8."""
    table = split_table(model, images, labels, np.arange(len(labels)))
    probe = load_joblib(run, "features/concept_probe.joblib")
    table["cnn_concepts"] = probe_predict(probe, table["embeddings"]).astype(np.float32)
    table["images"] = images
    return table


NO_FOLLOW_UP = "DermaMNIST test, no follow-up nevi"


def no_follow_up(labels: np.ndarray, dx_type: np.ndarray, op: dict) -> np.ndarray:
    """Boolean (N,): every test image except the negative-class (nevus) images that HAM10000 confirmed
    by follow-up. Those were photographed apart from the rest and their surrounding skin alone separates
    them from melanomas (bench/device_confound.py), so without them the melanoma-vs-nevus numbers
    compare lesions photographed alike — the comparison another clinic's nevi make."""
    return ~((labels == op["negative_class"]) & (dx_type == "follow_up"))


def evaluate_stage(run: RunDir, path, name: str, target_sensitivity: float | None = None,
                   n_boot: int = 1000, adapt_bn: bool = False) -> dict:
    """Operating point from val; metrics on DermaMNIST test, its leak-free part, its part without the
    follow-up nevi (when the metadata has dx_type) and the external set.

    adapt_bn: also evaluate the external set with BatchNorm statistics re-estimated on its own images
    (hybrid.adapt, transductive), as an extra column; the operating point stays the validation one.
    """
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise HybridError(f"--name '{name}' must be letters, digits, '.', '_' or '-' (it names evaluate/{name}.json).")
    from .audit_stage import _metadata

    raw = load_backbone(run)[0]
    tables = load_tables(run)
    names = class_names(run.manifest["config"]["data"]["flag"])
    images, labels = load_external(path, run.manifest["config"]["data"]["size"], len(names))
    ext = external_table(run, raw.fused(), images, labels)
    ext_bn = external_table(run, adapt_batchnorm(raw, images).fused(), images, labels) if adapt_bn else None
    with run.stage(f"evaluate_{name}"):
        op = operating_point(run, tables, target_sensitivity)
        te = tables["test"]
        seed = run.manifest["config"]["run"]["seed"]
        dist = EmbeddingDistance().fit(tables["train"]["embeddings"], tables["val"]["embeddings"])

        def metrics(table: dict, keep=slice(None)) -> dict:
            sur = {k: v[keep] for k, v in surrogate_predictions(run, table).items()}
            return {**set_metrics(table["proba"][keep], table["labels"][keep], op, sur, n_boot, seed),
                    "shift": dist.summary(table["embeddings"][keep])}

        sets = {"DermaMNIST test": metrics(te)}
        meta_tr, meta_te = _metadata(run, "train"), _metadata(run, "test")
        if meta_tr is not None and meta_te is not None:
            free = ~AU.leaked(meta_tr["lesion_id"], meta_te["lesion_id"].to_numpy())
            sets["DermaMNIST test, leak-free"] = metrics(te, free)
            if "dx_type" in meta_te.columns:
                sets[NO_FOLLOW_UP] = metrics(te, no_follow_up(te["labels"], meta_te["dx_type"].to_numpy(), op))
        sets[name] = metrics(ext)
        if ext_bn is not None:
            sets[f"{name}, BatchNorm adapted"] = metrics(ext_bn)
        result = {"name": name, "path": str(path), "sha256": sha256(path), "operating_point": op, "sets": sets,
                  "class_names": names}
        run.write_json(f"evaluate/{name}.json", result)
        run.write_text(f"evaluate/{name}.md", evaluate_markdown(result))
    return result


def evaluate_markdown(r: dict) -> str:
    op, sets, names = r["operating_point"], r["sets"], r["class_names"]
    pos, neg = names[op["positive_class"]], names[op["negative_class"]]
    cols = list(sets)
    lines = [f"# External evaluation: {r['name']}", "",
             f"`{r['path']}` (sha256 {r['sha256'][:12]}…). Evaluation only — nothing was fitted or chosen on it.", "",
             f"Operating point, fitted on validation only: temperature T = {op['temperature']:.3f} (val ECE "
             f"{op['val_ece_raw']:.3f} → {op['val_ece_calibrated']:.3f}); call *{pos}* when calibrated p ≥ "
             f"{op['threshold']:.3f}, the highest threshold with validation sensitivity ≥ {op['target_sensitivity']:.0%} "
             f"(val: sensitivity {op['val_sensitivity']:.1%}, specificity vs {neg} {op['val_specificity']:.1%}).", "",
             f"Binary rows: images whose true class is {pos} or {neg}; score = calibrated p({pos}). "
             "Intervals: bootstrap 95%. Embedding distance: Mahalanobis distance of the CNN embedding from "
             "the train images' (Ledoit-Wolf covariance); a set drawn like the training data has about "
             "1% of its images beyond validation's 99th percentile and a distance AUC near 0.5 (how often its "
             "image is the farther of a pair with a validation image), a shifted one more (hybrid.shift). "
             "The warning uses the one-sided Mann–Whitney test of the distances, p < 0.001."]
    if NO_FOLLOW_UP in sets:
        lines += ["", f"*{NO_FOLLOW_UP}*: DermaMNIST test without the {neg} images that HAM10000 confirmed by "
                  "follow-up (sequential digital dermoscopy, photographed apart from the rest: in the train split the "
                  f"colour of the skin around the lesion alone tells them from {pos}, `bench/device_confound.py`). "
                  f"Its {pos}-vs-{neg} numbers compare lesions photographed alike, as another clinic's would be. "
                  "Those nevi also lie close together in the embedding, so the rest lie farther from the training "
                  "data than validation does: its distance rows describe a different mix, not a shift."]
    if f"{r['name']}, BatchNorm adapted" in sets:
        lines += ["", f"*{r['name']}, BatchNorm adapted*: the same weights with BatchNorm statistics re-estimated "
                  f"on {r['name']}'s own images, without labels (`--adapt-bn`, AdaBN). Transductive and "
                  "sensitive to the set's mix of diagnoses: read it beside the plain column, never instead of it."]
    lines += ["",
             "| metric | " + " | ".join(cols) + " |", "| --- |" + " --- |" * len(cols)]

    def row(label, fn):
        lines.append(f"| {label} | " + " | ".join(fn(sets[c]) for c in cols) + " |")

    row("images (of which " + pos + " / " + neg + ")",
        lambda s: f"{s['n']} ({s['binary']['n_positive']} / {s['binary']['n_negative']})")
    row(f"{pos}-vs-{neg} AUC ↑", lambda s: fmt_ci(s["binary"]["auc"], s["binary"]["auc_ci95"]))
    row("sensitivity at the operating point ↑", lambda s: fmt_ci(s["binary"]["sensitivity"], s["binary"]["sensitivity_ci95"], True))
    row("specificity at the operating point ↑", lambda s: fmt_ci(s["binary"]["specificity"], s["binary"]["specificity_ci95"], True))
    row("sensitivity at argmax ↑", lambda s: fmt_ci(s["binary"]["sensitivity_argmax"], s["binary"]["sensitivity_argmax_ci95"], True))
    row("specificity at argmax ↑", lambda s: fmt_ci(s["binary"]["specificity_argmax"], s["binary"]["specificity_argmax_ci95"], True))
    row("7-way accuracy ↑", lambda s: f"{s['acc']:.3f}")
    row("AUC over classes present ↑", lambda s: "–" if s["auc_classes_present"] is None else f"{s['auc_classes_present']:.3f}")
    row("ECE raw → calibrated ↓", lambda s: f"{s['ece_raw']:.3f} → {s['ece_calibrated']:.3f}")
    if "shift" in sets[cols[0]]:
        q = sets[cols[0]]["shift"]["quantile"]
        row(f"images beyond validation's {q:.0%} embedding distance (median distance) ↓",
            lambda s: f"{s['shift']['outside_fraction']:.1%} ({s['shift']['median_distance']:.1f})")
        row("embedding distance AUC against validation, 0.5 if alike (Mann–Whitney p) ↓",
            lambda s: f"{s['shift']['distance_auc']:.2f} ({s['shift']['p_value']:.0e})")
    for k in sets[cols[0]]["fidelity"]:
        row(f"fidelity {k} ↑", lambda s, k=k: fmt_ci(s["fidelity"][k]["fidelity"], s["fidelity"][k]["ci95"]))
    warn = shift_warning(r["name"], sets[r["name"]])
    lines += ["", warn] if warn else []
    c = sets[r["name"]]["confusion"]
    lines += ["", f"Confusion on {r['name']} (rows: true class; columns: CNN argmax, classes true or predicted there):", ""]
    lines += confusion_table(c["counts"], [names[k] for k in c["rows_true"]], [names[k] for k in c["cols_pred"]])
    return "\n".join(lines) + "\n"
