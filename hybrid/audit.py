"""Safety audits on arrays: where the CNN looks, whether a planted shortcut is found, and how the
numbers change across skin tone, patient subgroups and lesion-level leakage.

All functions take arrays and return numbers or rows; `audit_stage` does the files.
"""
from __future__ import annotations

import numpy as np

from .concepts import REGIONS
from .explain import pixel_region_scores
from .fidelity import bootstrap_fidelity
from .metrics import accuracy, auc_ovr, bootstrap_ci, expected_calibration_error

# Fixed before any planted-shortcut run (not tuned per run): a model is flagged for a shortcut on
# an artifact region when, on test images carrying the artifact, the median over these methods of
# the mean enrichment (share of positive attribution in the region ÷ the region's area share) is
# at least FLAG_ENRICHMENT — i.e. the maps are three times denser on the artifact than uniform.
FLAG_METHODS = ("gradient", "smoothgrad", "expected_gradients")
FLAG_ENRICHMENT = 3.0
# An image's attention is "mostly off the lesion" when lesion+border hold less positive attribution
# than their area share (enrichment < 1: a uniform map would do better).
LESION_FOCUS_MIN = 1.0


def region_table(maps: np.ndarray, regions: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per image (N,): mass share per region, and lesion focus = (lesion + border) share ÷ their area share."""
    shares = pixel_region_scores(maps, regions)
    out = {r: shares[:, i] for i, r in enumerate(REGIONS)}
    on = regions["lesion"] | regions["border"]
    area = on.reshape(len(on), -1).mean(1)
    out["lesion_focus"] = (out["lesion"] + out["border"]) / np.clip(area, 1e-9, None)
    out["off_lesion"] = out["lesion_focus"] < LESION_FOCUS_MIN
    return out


def enrichment(maps: np.ndarray, region: np.ndarray) -> np.ndarray:
    """Share of positive attribution inside `region` ÷ the region's area share, per image (N,)."""
    from .faithfulness import mass_share

    area = region.reshape(len(region), -1).mean(1)
    return mass_share(maps, region) / np.clip(area, 1e-9, None)


def shortcut_flag(enrichment_by_method: dict[str, float]) -> tuple[bool, float]:
    """(flagged, median enrichment over FLAG_METHODS) by the fixed rule above."""
    vals = [enrichment_by_method[m] for m in FLAG_METHODS if m in enrichment_by_method]
    if not vals:
        raise ValueError(f"the shortcut rule needs maps from at least one of {FLAG_METHODS}")
    med = float(np.median(vals))
    return med >= FLAG_ENRICHMENT, med


def ita_category(ita: np.ndarray) -> np.ndarray:
    """Skin-tone categories of the Individual Typology Angle (Chardon et al. 1991), degrees."""
    bins = [-np.inf, -30, 10, 28, 41, 55, np.inf]
    names = np.array(["dark (< −30°)", "brown (−30–10°)", "tan (10–28°)", "intermediate (28–41°)",
                      "light (41–55°)", "very light (> 55°)"])
    return names[np.digitize(ita, bins[1:-1])]


def age_band(age: np.ndarray) -> np.ndarray:
    a = np.asarray(age, float)
    out = np.full(len(a), "unknown", dtype=object)
    for lo, hi, name in ((0, 30, "< 30"), (30, 45, "30–44"), (45, 60, "45–59"), (60, 75, "60–74"), (75, 200, "≥ 75")):
        out[(a >= lo) & (a < hi)] = name
    return out.astype(str)


def group_metrics(groups: np.ndarray, y: np.ndarray, proba: np.ndarray, sur_pred: np.ndarray | None = None,
                  n_boot: int = 500, seed: int = 0, min_n: int = 1) -> list[dict]:
    """Rows per group value: n, ACC with 95% interval, AUC (when ≥ 2 classes are present), ECE,
    and surrogate fidelity with its interval (when sur_pred is given)."""
    rows = []
    cnn_pred = proba.argmax(1)
    for g in sorted(set(groups.tolist()), key=str):
        m = groups == g
        n = int(m.sum())
        if n < min_n:
            continue
        row = {"group": g, "n": n, "acc": accuracy(y[m], proba[m])}
        row["acc_ci95"] = list(bootstrap_ci(y[m], proba[m], accuracy, n_boot, seed)) if n >= 10 else None
        present = np.unique(y[m])
        row["auc"] = auc_ovr(y[m], proba[m]) if len(present) >= 2 else None
        row["ece"] = expected_calibration_error(y[m], proba[m])
        if sur_pred is not None:
            row["fidelity"] = float((sur_pred[m] == cnn_pred[m]).mean())
            row["fidelity_ci95"] = (bootstrap_fidelity(cnn_pred[m], sur_pred[m], n_boot, seed)["fidelity_ci95"]
                                    if n >= 10 else None)
        rows.append(row)
    return rows


def leaked(train_lesions, test_lesions) -> np.ndarray:
    """Boolean (N_test,): the test image's lesion_id also appears in train (the same lesion, another photo)."""
    return np.isin(np.asarray(test_lesions, dtype=str), np.unique(np.asarray(train_lesions, dtype=str)))
