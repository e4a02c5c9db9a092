"""Measured concepts: images → named, human-meaningful features (a scikit-learn transformer).

Every concept is declared once in CONCEPTS (name, unit, range, definition, image region); reports,
rules and audits read names and units from there. Computed from the image the CNN sees
(uint8 RGB, (N, S, S, 3)); sizes are in fractions of the image width because pixels have no known
physical size at 28–64 px.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from sklearn.base import BaseEstimator, TransformerMixin
from skimage.color import rgb2lab
from skimage.measure import perimeter


@dataclass(frozen=True)
class Concept:
    name: str
    unit: str
    range: str
    definition: str
    region: str  # lesion | border | skin | corners | artifact | layout (fixed geometry, not a mask region)


# Dermoscopic colour references in CIELAB (L*, a*, b*), after the colour sets used for the
# ABCD rule's "C" (e.g. Seidenari et al.); a lesion pixel takes the nearest reference within ΔE ≤ 30.
COLOURS = {
    "white": (85.0, 0.0, 5.0),
    "red": (45.0, 45.0, 25.0),
    "light_brown": (55.0, 15.0, 25.0),
    "dark_brown": (32.0, 12.0, 16.0),
    "blue_grey": (45.0, -2.0, -10.0),
    "black": (12.0, 2.0, 2.0),
}
COLOUR_MIN_SHARE = 0.05  # a colour is present when ≥ 5% of lesion pixels take it

CONCEPTS: list[Concept] = [
    Concept("area", "fraction of image", "0–1", "lesion mask area over image area", "lesion"),
    Concept("asymmetry", "fraction", "0–1 (0 symmetric)", "mean non-overlap of the mask with its mirror image about each principal axis", "lesion"),
    Concept("compactness", "ratio", "0–~1.1 (1 = disc)", "4π·area / perimeter²; low means an irregular border", "border"),
    Concept("diameter", "fraction of width", "0–~1.4", "major-axis length of the mask (4·√λ₁) over image width", "lesion"),
    Concept("eccentricity", "ratio", "0–1 (0 = round)", "√(1 − λ₂/λ₁) of the mask's second moments", "lesion"),
    Concept("border_sharpness", "ΔL* per px", "≥ 0", "mean |∇L*| on the mask boundary", "border"),
    *[Concept(f"colour_{c}", "fraction of lesion", "0–1", f"share of lesion pixels nearest the dermoscopic '{c.replace('_', ' ')}' reference", "lesion") for c in COLOURS],
    Concept("n_colours", "count", "0–6", f"number of reference colours covering ≥ {COLOUR_MIN_SHARE:.0%} of the lesion", "lesion"),
    Concept("colour_spread", "ΔE", "≥ 0", "mean CIELAB distance of lesion pixels from the lesion mean", "lesion"),
    Concept("lesion_L", "L*", "0–100", "lesion mean lightness", "lesion"),
    Concept("lesion_a", "a*", "≈ −20–60", "lesion mean red–green", "lesion"),
    Concept("lesion_b", "b*", "≈ −30–60", "lesion mean yellow–blue", "lesion"),
    Concept("lesion_L_p10", "L*", "0–100", "10th percentile of lesion lightness (its darkest structures)", "lesion"),
    Concept("lesion_L_std", "L*", "≥ 0", "spread (sd) of lightness inside the lesion", "lesion"),
    Concept("texture", "L* per px²", "≥ 0", "mean |Laplacian of L*| inside the lesion (fine structure: dots, network)", "lesion"),
    Concept("centre_periphery", "ΔE", "≥ 0", "CIELAB distance between the lesion's inner core and its outer ring", "lesion"),
    Concept("off_centre", "fraction of width", "0–~0.7", "distance of the lesion centroid from the image centre", "lesion"),
    Concept("contrast", "ΔE", "≥ 0", "CIELAB distance between lesion and surrounding-skin means", "border"),
    Concept("skin_ita", "degrees", "≈ −90–90 (lower = darker)", "Individual Typology Angle of the surrounding skin: atan((L* − 50)/b*)", "skin"),
    Concept("skin_L", "L*", "0–100", "surrounding-skin mean lightness", "skin"),
    Concept("skin_a", "a*", "≈ 0–40", "surrounding-skin mean redness (erythema)", "skin"),
    Concept("hair", "fraction of image", "0–1", "share of pixels in thin dark lines (black-hat of L* > 8 outside dark corners)", "artifact"),
    Concept("dark_corners", "fraction of corners", "0–1", "share of pixels outside the inscribed circle darker than L* 25 (dermoscope vignette)", "corners"),
    Concept("ink", "fraction of skin", "0–1", "share of non-lesion pixels with ink/marker colour (blue–violet: b* < −12 and chroma > 15)", "artifact"),
]
# Mask-free colour layout: the images are centred on the lesion, so a fixed central disc and the rest
# of the image read the lesion and its surroundings without the Otsu mask, which is fragile at 28 px.
# They lift the concept XGBoost's test κ with the CNN from 0.701 ± 0.008 to 0.776 ± 0.005 (default
# preset, seeds 0–2; chosen on val among ring layouts: bench/results_layout_concepts.md).
CENTRE_RADIUS = 0.25  # of the image width
_CHANNEL = {"L": ("L*", "0–100", "lightness"), "a": ("a*", "≈ −20–60", "red–green"), "b": ("b*", "≈ −30–60", "yellow–blue")}
_ZONE = {"centre": "the central disc (radius ¼ of the image width)", "outer": "the image outside the central disc, corners included"}
LAYOUT_CONCEPTS = [
    Concept(f"{z}_{c}{'_std' if sd else ''}", u, r if not sd else "≥ 0",
            f"{'spread (sd) of' if sd else 'mean'} {what} over {where}; no lesion mask", "layout")
    for z, where in _ZONE.items() for sd in (False, True) for c, (u, r, what) in _CHANNEL.items()]
N_MASK_CONCEPTS = len(CONCEPTS)
CONCEPTS = CONCEPTS + LAYOUT_CONCEPTS
CONCEPT_NAMES = [c.name for c in CONCEPTS]
REGISTRY = {c.name: c for c in CONCEPTS}


def _otsu(values: np.ndarray, weights: np.ndarray, bins: int = 64) -> np.ndarray:
    """Per-row Otsu threshold of values (N, P) in [0, 100], counting only where weights is True."""
    n = len(values)
    q = np.clip((values / 100.0 * bins).astype(int), 0, bins - 1)
    hist = np.zeros((n, bins))
    np.add.at(hist, (np.repeat(np.arange(n), values.shape[1]), q.ravel()), weights.ravel().astype(float))
    centers = (np.arange(bins) + 0.5) * 100.0 / bins
    w0 = np.cumsum(hist, 1)
    m0 = np.cumsum(hist * centers, 1)
    total, mtotal = w0[:, -1:], m0[:, -1:]
    w1 = total - w0
    with np.errstate(invalid="ignore", divide="ignore"):
        between = w0 * w1 * (m0 / w0 - (mtotal - m0) / w1) ** 2
    between = np.nan_to_num(between, nan=-1.0)
    return centers[between.argmax(1)] + 50.0 / bins


def skin_mean(values: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Mean of `values` (N, S, S, C) over each image's non-lesion pixels (N, C); over the whole image
    where the lesion mask (N, S, S, True on the lesion) covers everything. Any colour space."""
    skin = ~np.asarray(masks, bool)
    skin[~skin.any(axis=(1, 2))] = True
    return (values * skin[..., None]).sum((1, 2)) / skin.sum((1, 2))[:, None]


def lesion_masks(lab: np.ndarray) -> np.ndarray:
    """Boolean lesion masks (N, S, S): Otsu on L* inside the central disc, the dark component that
    best covers the centre, holes filled. An image with no such component gets a central disc of radius S/6."""
    n, s = lab.shape[:2]
    yy, xx = np.mgrid[:s, :s]
    r = np.hypot(yy - (s - 1) / 2, xx - (s - 1) / 2)
    central = r <= s / 2
    L = lab[..., 0].reshape(n, -1)
    thr = _otsu(L, np.broadcast_to(central.ravel(), L.shape))
    dark = lab[..., 0] < thr[:, None, None]
    centre_w = np.clip(1 - r / (s / 2), 0, None)  # weight favouring the centre
    fallback = r <= s / 6
    masks = np.zeros((n, s, s), bool)
    for i in range(n):
        lab_i, k = ndimage.label(dark[i])
        if k == 0:
            masks[i] = fallback
            continue
        score = ndimage.sum(centre_w, lab_i, index=np.arange(1, k + 1))
        best = int(np.argmax(score)) + 1
        if score[best - 1] <= 0:
            masks[i] = fallback
            continue
        masks[i] = ndimage.binary_fill_holes(lab_i == best)
    return masks


def _shape_features(mask: np.ndarray) -> tuple[float, float, float, float, float]:
    """(area, asymmetry, compactness, diameter, eccentricity) of one boolean mask (S, S)."""
    s = mask.shape[0]
    ys, xs = np.nonzero(mask)
    a = len(ys)
    if a < 3:
        return a / s**2, 0.0, 1.0, 0.0, 0.0
    cy, cx = ys.mean(), xs.mean()
    cov = np.cov(np.vstack([ys - cy, xs - cx]))
    evals, evecs = np.linalg.eigh(cov)
    l2, l1 = max(evals[0], 0.0), max(evals[1], 1e-12)
    pts = np.vstack([ys - cy, xs - cx])  # (2, A)
    asym = []
    for k in range(2):  # mirror across each principal axis
        v = evecs[:, k:k + 1]
        refl = 2 * v @ (v.T @ pts) - pts
        ry, rx = np.rint(refl[0] + cy).astype(int), np.rint(refl[1] + cx).astype(int)
        inside = (ry >= 0) & (ry < s) & (rx >= 0) & (rx < s)
        hit = np.zeros(a, bool)
        hit[inside] = mask[ry[inside], rx[inside]]
        asym.append(1 - hit.mean())
    per = perimeter(mask)
    compact = min(4 * np.pi * a / per**2, 1.5) if per > 0 else 1.0  # tiny masks overshoot 1
    return a / s**2, float(np.mean(asym)), float(compact), float(4 * np.sqrt(l1) / s), float(np.sqrt(1 - l2 / l1))


def _prepare(images: np.ndarray):
    """CIELAB (N, S, S, 3), lesion masks, corner region (S, S), black-hat of L* and dark-corner pixels."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3 or images.shape[1] != images.shape[2]:
        raise ValueError(f"images must be (N, S, S, 3) RGB; got shape {images.shape}")
    n, s = images.shape[:2]
    lab = rgb2lab(images.reshape(-1, s, 3)).reshape(n, s, s, 3).astype(np.float32)
    masks = lesion_masks(lab)
    yy, xx = np.mgrid[:s, :s]
    corners = np.hypot(yy - (s - 1) / 2, xx - (s - 1) / 2) > s / 2
    L = lab[..., 0]
    blackhat = ndimage.grey_closing(L, size=(1, 3, 3)) - L  # thin dark structures: closing − image
    return lab, masks, corners, blackhat, (L < 25) & corners


def _hair(blackhat: np.ndarray, dark_corner: np.ndarray) -> np.ndarray:
    return (blackhat > 8) & ~dark_corner


def _ink(lab: np.ndarray, lesion: np.ndarray) -> np.ndarray:
    chroma = np.hypot(lab[..., 1], lab[..., 2])
    return (lab[..., 2] < -12) & (chroma > 15) & ~lesion


REGIONS = ("lesion", "border", "skin", "corners", "artifact")  # a partition of the image; "layout" concepts are not in it


def region_masks(images: np.ndarray) -> dict[str, np.ndarray]:
    """A partition of each image (N, S, S) into the regions concepts are declared on: corners
    (outside the inscribed circle), artifact (hair and ink lines elsewhere), border (a ring of
    ±1 px around the lesion edge), lesion (the rest of the mask) and skin (everything else)."""
    lab, masks, corners, blackhat, dark_corner = _prepare(images)
    n = len(masks)
    corners = np.broadcast_to(corners, masks.shape)
    artifact = np.stack([_hair(blackhat[i], dark_corner[i]) | _ink(lab[i], masks[i]) for i in range(n)]) & ~corners
    ring = np.stack([ndimage.binary_dilation(m) & ~ndimage.binary_erosion(m) for m in masks])
    border = ring & ~corners & ~artifact
    lesion = masks & ~border & ~corners & ~artifact
    skin = ~(lesion | border | corners | artifact)
    return {"lesion": lesion, "border": border, "skin": skin, "corners": corners.copy(), "artifact": artifact,
            "mask": masks}


MAX_CHUNK_PIXELS = 1 << 23  # images measured at a time × S²: bounds the CIELAB copy to ~100 MB


def measure_concepts(images: np.ndarray, return_masks: bool = False, n_jobs: int = 1):
    """Concept table (N, len(CONCEPTS)) in CONCEPT_NAMES order for uint8 RGB images (N, S, S, 3).

    With return_masks, also the lesion masks (N, S, S) bool. Every image is measured on its own,
    so the stack is streamed in chunks (MAX_CHUNK_PIXELS: 10,700 images at 28 px, 167 at 224 px)
    and n_jobs > 1 (or -1: every core) spreads them over joblib processes — the same result.
    """
    images = np.asarray(images)
    n_jobs = (os.cpu_count() or 1) if n_jobs == -1 else n_jobs
    n_jobs = n_jobs if len(images) >= 200 * n_jobs else 1
    per = max(1, MAX_CHUNK_PIXELS // max(1, images.shape[1] * images.shape[2])) if images.ndim == 4 else len(images)
    parts = max(n_jobs, -(-len(images) // per))
    if parts <= 1:
        return _measure(images, return_masks)
    chunks = np.array_split(images, parts)
    if n_jobs > 1:
        from joblib import Parallel, delayed

        out = Parallel(n_jobs=n_jobs)(delayed(_measure)(c, return_masks) for c in chunks)
    else:
        out = [_measure(c, return_masks) for c in chunks]
    if return_masks:
        return np.concatenate([o[0] for o in out]), np.concatenate([o[1] for o in out])
    return np.concatenate(out)


def _measure(images: np.ndarray, return_masks: bool):
    lab, masks, corners, blackhat, dark_corner_px = _prepare(images)
    n, s = masks.shape[:2]
    L = lab[..., 0]
    out = np.zeros((n, len(CONCEPTS)), np.float32)
    refs = np.array(list(COLOURS.values()), np.float32)
    gy, gx = np.gradient(L, axis=(1, 2))
    grad = np.hypot(gy, gx)
    lap = np.abs(_laplace(L))
    out[:, N_MASK_CONCEPTS:] = layout_features(lab)
    core_r = max(1, s // 14)
    for i in range(n):
        m = masks[i]
        skin = ~m & ~dark_corner_px[i]
        if skin.sum() < 3:
            skin = ~m
        if skin.sum() < 3:
            skin = np.ones_like(m)
        area, asym, compact, diam, ecc = _shape_features(m)
        boundary = m & ~ndimage.binary_erosion(m)
        core = ndimage.binary_erosion(m, iterations=core_r)
        if not core.any():
            core = m
        ring = m & ~core if (m & ~core).any() else m
        ys, xs = np.nonzero(m)
        off = np.hypot(ys.mean() - (s - 1) / 2, xs.mean() - (s - 1) / 2) / s
        les = lab[i][m]
        sk = lab[i][skin]
        lmean, smean = les.mean(0), sk.mean(0)
        d = np.linalg.norm(les[:, None, :] - refs[None], axis=2)
        nearest = d.argmin(1)
        near_ok = d.min(1) <= 30
        shares = np.array([np.mean((nearest == k) & near_ok) for k in range(len(refs))])
        ink = _ink(lab[i], m)
        hair = _hair(blackhat[i], dark_corner_px[i])
        ita = np.degrees(np.arctan((smean[0] - 50) / max(smean[2], 1e-3)))  # b* ≤ 0 is not skin: ITA → ±90
        out[i, :N_MASK_CONCEPTS] = [
            area, asym, compact, diam, ecc,
            grad[i][boundary].mean() if boundary.any() else 0.0,
            *shares,
            float((shares >= COLOUR_MIN_SHARE).sum()),
            np.linalg.norm(les - lmean, axis=1).mean(),
            lmean[0], lmean[1], lmean[2],
            np.percentile(les[:, 0], 10), les[:, 0].std(), lap[i][m].mean(),
            np.linalg.norm(lab[i][core].mean(0) - lab[i][ring].mean(0)), off,
            np.linalg.norm(lmean - smean),
            ita, smean[0], smean[1],
            hair.mean(),
            dark_corner_px[i].sum() / corners.sum(),
            ink.sum() / max((~m).sum(), 1),
        ]
    return (out, masks) if return_masks else out


def layout_features(lab: np.ndarray) -> np.ndarray:
    """CIELAB mean and sd over the central disc and over the rest of each image: (N, 12) from
    CIELAB images (N, S, S, 3), in LAYOUT_CONCEPTS order (zone, then mean/sd, then L*, a*, b*)."""
    s = lab.shape[1]
    yy, xx = np.mgrid[:s, :s]
    centre = np.hypot(yy - (s - 1) / 2, xx - (s - 1) / 2) < CENTRE_RADIUS * s
    out = []
    for zone in (centre, ~centre):
        v = lab[:, zone]  # (N, pixels, 3)
        out += [v.mean(1, dtype=np.float64), v.std(1, dtype=np.float64)]  # float32 sums drift over many pixels
    return np.hstack(out)


def _laplace(L: np.ndarray) -> np.ndarray:
    """4-neighbour Laplacian of each image in a stack (N, S, S), edges replicated."""
    p = np.pad(L, ((0, 0), (1, 1), (1, 1)), mode="edge")
    return p[:, :-2, 1:-1] + p[:, 2:, 1:-1] + p[:, 1:-1, :-2] + p[:, 1:-1, 2:] - 4 * L


class ConceptExtractor(TransformerMixin, BaseEstimator):
    """scikit-learn transformer: uint8 images (N, S, S, 3), or flattened (N, S·S·3), → concepts (N, C).

    Stateless (fit learns nothing), so it drops into pipelines and clone(). Names from
    get_feature_names_out(); units and definitions from hybrid.concepts.REGISTRY.
    """

    def __init__(self, image_size: int | None = None):
        self.image_size = image_size

    def fit(self, X, y=None):
        self.n_features_out_ = len(CONCEPTS)
        return self

    def _images(self, X):
        X = np.asarray(X)
        if X.ndim == 2:
            s = self.image_size or int(round(np.sqrt(X.shape[1] / 3)))
            X = X.reshape(len(X), s, s, 3)
        return X.astype(np.uint8)

    def transform(self, X):
        return measure_concepts(self._images(X))

    def get_feature_names_out(self, input_features=None):
        return np.array(CONCEPT_NAMES, dtype=object)
