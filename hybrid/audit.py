"""Safety audits on arrays: where the CNN looks, whether a planted shortcut is found, and how the
numbers change across skin tone, patient subgroups and lesion-level leakage.

All functions take arrays and return numbers or rows; `audit_stage` does the files.
"""
from __future__ import annotations

import numpy as np

from .concepts import REGIONS, skin_mean
from .explain import pixel_region_scores
from .fidelity import bootstrap_fidelity
from .metrics import accuracy, bootstrap_ci, expected_calibration_error

# The shortcut rule. A model is flagged for a shortcut on an artifact region when, on test images
# carrying the artifact, the median over FLAG_METHODS of the mean enrichment (share of positive
# attribution in the region ÷ the region's area share) is at least FLAG_ENRICHMENT.
#
# Rule v1 (fixed before any planted run): FLAG_METHODS = gradient, SmoothGrad, expected gradients.
# It missed both planted 'ruler' models (seeds 0 and 1; bench/results_planted_shortcut.md): the CNN
# had learned the ruler (≈45% of its nevi turned melanoma when stamped) and expected gradients put
# 8.5× and 11.2× uniform density on it, but vanilla gradient and SmoothGrad stayed near 1 — they
# measure local sensitivity, which is small on a feature the network has already saturated.
# Rule v2 (fixed 2026-11-23 after those runs, before the held-out runs: seed 2 'ruler', seed 0
# 'dot'): the same threshold on SHAP for the CNN (expected gradients) alone — an attribution of
# (input − reference) × gradient, which does credit a saturated feature. Both rules are reported.
RULE_VERSION = 2
FLAG_METHODS = ("expected_gradients",)
FLAG_METHODS_V1 = ("gradient", "smoothgrad", "expected_gradients")
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


def shortcut_flag(enrichment_by_method: dict[str, float], methods=FLAG_METHODS) -> tuple[bool, float]:
    """(flagged, median enrichment over `methods`) by the fixed rule above (v1: methods=FLAG_METHODS_V1)."""
    vals = [enrichment_by_method[m] for m in methods if m in enrichment_by_method]
    if not vals:
        raise ValueError(f"the shortcut rule needs maps from at least one of {methods}")
    med = float(np.median(vals))
    return med >= FLAG_ENRICHMENT, med


def ita_category(ita: np.ndarray) -> np.ndarray:
    """Skin-tone categories of the Individual Typology Angle (Chardon et al. 1991), degrees."""
    bins = [-np.inf, -30, 10, 28, 41, 55, np.inf]
    names = np.array(["dark (< −30°)", "brown (−30–10°)", "tan (10–28°)", "intermediate (28–41°)",
                      "light (41–55°)", "very light (> 55°)"])
    return names[np.digitize(ita, bins[1:-1])]


AGE_ORDER = ["< 30", "30–44", "45–59", "60–74", "≥ 75", "unknown"]


def age_band(age: np.ndarray) -> np.ndarray:
    a = np.asarray(age, float)
    out = np.full(len(a), "unknown", dtype=object)
    for lo, hi, name in ((0, 30, "< 30"), (30, 45, "30–44"), (45, 60, "45–59"), (60, 75, "60–74"), (75, 200, "≥ 75")):
        out[(a >= lo) & (a < hi)] = name
    return out.astype(str)


ITA_ORDER = ["dark (< −30°)", "brown (−30–10°)", "tan (10–28°)", "intermediate (28–41°)", "light (41–55°)",
             "very light (> 55°)"]


def auc_present(y: np.ndarray, proba: np.ndarray) -> float | None:
    """Mean one-vs-rest AUC over the classes that occur in y (a small group rarely has all seven);
    None when fewer than two classes occur."""
    from sklearn.metrics import roc_auc_score

    ks = [k for k in np.unique(y) if 0 < (y == k).sum() < len(y)]
    if len(ks) < 1 or len(np.unique(y)) < 2:
        return None
    return float(np.mean([roc_auc_score(y == k, proba[:, k]) for k in ks]))


def group_metrics(groups: np.ndarray, y: np.ndarray, proba: np.ndarray, sur_pred: np.ndarray | None = None,
                  n_boot: int = 500, seed: int = 0, min_n: int = 1, order: list | None = None) -> list[dict]:
    """Rows per group value (in `order` when given, else sorted): n, ACC with 95% interval, the ACC of
    always answering the most frequent class of all of `y` (majority_acc: the group's share of that class,
    against which its ACC is read), AUC over the classes present (auc_present), ECE, and surrogate
    fidelity with its interval (when sur_pred is given)."""
    rows = []
    cnn_pred = proba.argmax(1)
    top = np.bincount(y).argmax()
    present = set(groups.tolist())
    keys = [g for g in order if g in present] if order else sorted(present, key=str)
    for g in keys:
        m = groups == g
        n = int(m.sum())
        if n < min_n:
            continue
        row = {"group": g, "n": n, "acc": accuracy(y[m], proba[m])}
        row["acc_ci95"] = list(bootstrap_ci(y[m], proba[m], accuracy, n_boot, seed)) if n >= 10 else None
        row["majority_acc"] = float((y[m] == top).mean())
        row["auc"] = auc_present(y[m], proba[m])
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


def skin_tone_shift(images: np.ndarray, masks: np.ndarray, delta_ita: float) -> np.ndarray:
    """Darken the non-lesion skin by `delta_ita` degrees of ITA, keeping the lesion.

    In CIELAB, ITA = atan((L* − 50) / b*); each skin pixel is rotated about (L* = 50, b* = 0) in
    the L*–b* plane by −delta_ita, keeping its distance from that point and its a*. uint8 RGB
    (N, S, S, 3) in and out; delta 0 returns the images unchanged (no colour round trip).
    """
    if delta_ita == 0:
        return np.array(images, copy=True)
    from skimage.color import lab2rgb, rgb2lab

    n, s = images.shape[:2]
    lab = rgb2lab(images.reshape(-1, s, 3)).reshape(n, s, s, 3)
    L, b = lab[..., 0] - 50, lab[..., 2]
    r = np.hypot(L, b)
    theta = np.arctan2(L, b) - np.radians(delta_ita)
    skin = ~masks
    lab[..., 0] = np.where(skin, 50 + r * np.sin(theta), lab[..., 0])
    lab[..., 2] = np.where(skin, r * np.cos(theta), lab[..., 2])
    lab[..., 0] = np.clip(lab[..., 0], 0, 100)
    rgb = lab2rgb(lab.reshape(-1, s, 3)).reshape(n, s, s, 3)
    return np.clip(np.round(rgb * 255), 0, 255).astype(np.uint8)


def skin_lab(images: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """CIELAB images (N, S, S, 3) of uint8 RGB images and the mean CIELAB colour of each one's
    non-lesion pixels (N, 3); the whole image's where the lesion mask (N, S, S) covers everything."""
    from skimage.color import rgb2lab

    lab = rgb2lab(images)
    return lab, skin_mean(lab, masks)


def recolour_skin(lab: np.ndarray, masks: np.ndarray, skin_mean: np.ndarray, target: np.ndarray) -> np.ndarray:
    """uint8 RGB images whose non-lesion pixels are shifted by target − skin_mean in CIELAB, so the
    skin's mean colour becomes `target` ((3,) or one per image (N, 3)), the lesion unchanged; L* clipped
    to 0–100 (so a skin pushed past white or black ends a little off target)."""
    from skimage.color import lab2rgb

    shift = (np.broadcast_to(target, skin_mean.shape) - skin_mean)[:, None, None, :]
    out = np.where(np.asarray(masks, bool)[..., None], lab, lab + shift)
    out[..., 0] = np.clip(out[..., 0], 0, 100)
    return np.clip(np.round(lab2rgb(out) * 255), 0, 255).astype(np.uint8)


def skin_swap_response(predict, images: np.ndarray, masks: np.ndarray, labels: np.ndarray,
                       typical_skin: dict[int, np.ndarray], pos: int, neg: int) -> dict:
    """How the CNN's p(pos) moves when only the skin around the lesion changes colour.

    predict: uint8 images (N, S, S, 3) → probabilities (N, K). typical_skin: class → CIELAB (3,), the
    median skin colour of that class's train images. Each test image of class pos and neg gets its
    skin set to the other class's typical colour (the swap) and to its own class's (the control, which
    measures what recolouring alone does). Returns, under "positive" and "negative" (the images of class
    pos and neg), their count and mean p(pos) and share of argmax-pos calls before / swap / control; and
    under "auc" the pos-vs-neg AUC before, with every skin swapped and with every skin at its own
    class's typical colour. A model that reads the lesion barely moves.
    """
    from sklearn.metrics import roc_auc_score

    keep = (labels == pos) | (labels == neg)
    x, m, y = images[keep], masks[keep], labels[keep]
    lab, mean = skin_lab(x, m)
    own = np.stack([typical_skin[int(c)] for c in y])
    other = np.stack([typical_skin[neg if c == pos else pos] for c in y])
    p = {"before": predict(x)}
    for k, t in (("swap", other), ("control", own)):
        p[k] = predict(recolour_skin(lab, m, mean, t))
    out = {}
    for side, c in (("positive", pos), ("negative", neg)):
        sel = y == c
        out[side] = {"n": int(sel.sum()), **{k: {"mean_p": float(v[sel, pos].mean()),
                                                  "called_pos": float((v[sel].argmax(1) == pos).mean())}
                                              for k, v in p.items()}}
    if len(np.unique(y)) == 2:
        out["auc"] = {k: float(roc_auc_score(y == pos, v[:, pos])) for k, v in p.items()}
    return out


def corrupt(images: np.ndarray, kind: str, severity: int, seed: int = 0) -> np.ndarray:
    """Common corruptions of uint8 RGB images (N, S, S, 3), severity 1–3 (0: unchanged):
    blur (Gaussian σ = 0.5·severity px), noise (Gaussian, sd 8·severity of 255), brightness
    (+25·severity of 255), jpeg (quality 60 / 30 / 10)."""
    if severity == 0:
        return np.array(images, copy=True)
    x = images.astype(np.float32)
    if kind == "blur":
        from scipy import ndimage

        x = ndimage.gaussian_filter(x, sigma=(0, 0.5 * severity, 0.5 * severity, 0))
    elif kind == "noise":
        x = x + np.random.default_rng(seed).normal(0, 8 * severity, x.shape)
    elif kind == "brightness":
        x = x + 25 * severity
    elif kind == "jpeg":
        import io

        from PIL import Image

        q = {1: 60, 2: 30, 3: 10}[severity]
        out = []
        for im in images:
            buf = io.BytesIO()
            Image.fromarray(im).save(buf, format="JPEG", quality=q)
            out.append(np.asarray(Image.open(buf).convert("RGB")))
        return np.stack(out)
    else:
        raise ValueError(f"unknown corruption '{kind}'; expected blur, noise, brightness or jpeg")
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


CORRUPTIONS = ("blur", "noise", "brightness", "jpeg")
