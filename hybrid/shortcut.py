"""Planted shortcuts: procedurally drawn artifacts stamped onto images, for proving that the
shortcut audit finds a model that learned to look at them.

Kinds (sizes scale with the image side S; drawn in the bottom-right corner, inside the region the
audit calls "corners" only partly, so the stamp has its own mask):
- "ruler": a dark scale bar with tick marks, like a dermatoscope's ruler;
- "dot": a violet ink dot, like a surgical marker;
- "patch": a saturated blue colour patch, like a calibration sticker.
"""
from __future__ import annotations

import numpy as np

KINDS = ("ruler", "dot", "patch")


def stamp_mask(kind: str, size: int) -> np.ndarray:
    """Boolean (S, S) mask of where `kind` is drawn on an S×S image."""
    if kind not in KINDS:
        raise ValueError(f"unknown stamp kind '{kind}'; expected one of {', '.join(KINDS)}")
    s = size
    m = np.zeros((s, s), bool)
    u = max(1, s // 28)  # one pixel at 28 px
    if kind == "ruler":
        y0 = s - 4 * u
        m[y0 + 2 * u:y0 + 3 * u, s // 2:s - u] = True  # the bar
        for x in range(s // 2, s - u, 3 * u):  # ticks
            m[y0:y0 + 2 * u, x:x + u] = True
    elif kind == "dot":
        yy, xx = np.mgrid[:s, :s]
        m = np.hypot(yy - (s - 5 * u), xx - (s - 5 * u)) <= 2.5 * u
    else:
        m[s - 7 * u:s - u, s - 7 * u:s - u] = True
    return m


COLOURS = {"ruler": (25, 25, 25), "dot": (110, 40, 150), "patch": (30, 90, 220)}


def apply_stamp(images: np.ndarray, kind: str) -> np.ndarray:
    """Copy of uint8 images (N, S, S, 3) with the stamp drawn on every one."""
    out = np.array(images, copy=True)
    m = stamp_mask(kind, images.shape[1])
    out[:, m] = np.asarray(COLOURS[kind], np.uint8)
    return out


def plant(images: np.ndarray, labels: np.ndarray, kind: str, klass: int, fraction: float,
          fraction_other: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Stamp `fraction` of the images of class `klass` and `fraction_other` of all others.

    Returns (images with stamps, boolean (N,) of which were stamped). Deterministic in seed.
    """
    if not (0 <= fraction <= 1 and 0 <= fraction_other <= 1):
        raise ValueError(f"stamp fractions must be in [0, 1]; got {fraction} and {fraction_other}")
    rng = np.random.default_rng(seed)
    chosen = np.zeros(len(labels), bool)
    for is_k, frac in ((True, fraction), (False, fraction_other)):
        idx = np.nonzero((labels == klass) == is_k)[0]
        n = int(round(frac * len(idx)))
        chosen[rng.choice(idx, n, replace=False)] = True
    out = np.array(images, copy=True)
    out[chosen] = apply_stamp(images[chosen], kind)
    return out, chosen
