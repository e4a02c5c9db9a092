"""Figures for explanations: one image side by side, a gallery, region disagreements. PNG bytes out."""
from __future__ import annotations

import io
import textwrap

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .attribution import LABELS  # noqa: E402


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _overlay(ax, image, m, title):
    """Image in grey-ish, the map's positive part on top (hot), scaled per map to its 99th percentile."""
    ax.imshow(image, interpolation="nearest")
    pos = np.clip(m, 0, None)
    top = np.percentile(pos, 99) or 1.0
    ax.imshow(pos / top, cmap="inferno", alpha=0.6, vmin=0, vmax=1, interpolation="bilinear")
    ax.set_title(title, fontsize=8)
    ax.axis("off")


def explanation_figure(image: np.ndarray, mask: np.ndarray, maps: dict[str, np.ndarray], shap_values: np.ndarray,
                       feature_names, rule_lines: list[str], title: str, n_features: int = 10,
                       shap_label: str = "SHAP value for the predicted class (concept surrogate)",
                       feature_labels=None) -> bytes:
    """Top row: input, lesion mask, one overlay per CNN attribution method. Bottom: the concept
    surrogate's SHAP for the CNN's predicted class (largest |value| first) and the tree's rule path.
    `feature_labels` (one per feature, e.g. "contrast = 7.53 ΔE") replaces the bare names on the bars."""
    k = 2 + len(maps)
    fig = plt.figure(figsize=(2.0 * k, 6.2))
    gs = fig.add_gridspec(2, k, height_ratios=[1, 1.5])
    ax = fig.add_subplot(gs[0, 0])
    ax.imshow(image, interpolation="nearest")
    ax.set_title("input", fontsize=8)
    ax.axis("off")
    ax = fig.add_subplot(gs[0, 1])
    ax.imshow(image, interpolation="nearest")
    ax.contour(mask.astype(float), levels=[0.5], colors="cyan", linewidths=1.2)
    ax.set_title("lesion mask", fontsize=8)
    ax.axis("off")
    for j, (method, m) in enumerate(maps.items()):
        _overlay(fig.add_subplot(gs[0, 2 + j]), image, m, LABELS.get(method, method))
    half = k // 2
    ax = fig.add_subplot(gs[1, :half])
    order = np.argsort(-np.abs(shap_values))[:n_features][::-1]
    vals = shap_values[order]
    ax.barh(np.arange(len(order)), vals, color=np.where(vals > 0, "#d62728", "#1f77b4"))
    labels = feature_labels if feature_labels is not None else feature_names
    ax.set_yticks(np.arange(len(order)), [labels[i] for i in order], fontsize=8)
    ax.axvline(0, color="k", lw=0.6)
    ax.set_xlabel(shap_label, fontsize=8)
    ax = fig.add_subplot(gs[1, half:])
    ax.axis("off")
    text = "Decision-tree rule path:\n" + "\n".join(textwrap.fill(s, 48) for s in rule_lines)
    ax.text(0, 1, text, va="top", ha="left", fontsize=8, family="monospace", transform=ax.transAxes)
    fig.suptitle(title, fontsize=10)
    return _png(fig)


def gallery_figure(images: np.ndarray, masks: np.ndarray, maps: dict[str, np.ndarray], titles: list[str],
                   caption: str = "") -> bytes:
    """One row per image: input with mask outline, then each method's overlay; `caption` under the grid."""
    n, k = len(images), 1 + len(maps)
    fig, axes = plt.subplots(n, k, figsize=(1.7 * k, 1.8 * n), squeeze=False)
    for i in range(n):
        ax = axes[i, 0]
        ax.imshow(images[i], interpolation="nearest")
        ax.contour(masks[i].astype(float), levels=[0.5], colors="cyan", linewidths=0.8)
        ax.set_title(titles[i], fontsize=6)
        ax.axis("off")
        for j, (method, m) in enumerate(maps.items()):
            _overlay(axes[i, 1 + j], images[i], m[i], LABELS.get(method, method) if i == 0 else "")
    if caption:
        fig.text(0.5, 0, textwrap.fill(caption, 30 * k), ha="center", va="top", fontsize=6)
    fig.tight_layout()
    return _png(fig)


def curves_figure(curves: dict[str, np.ndarray], kind: str) -> bytes:
    """Mean deletion or insertion curve per method (target probability vs fraction of pixels)."""
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for method, c in curves.items():
        x = np.linspace(0, 1, c.shape[1])
        ax.plot(x, c.mean(0), label=LABELS.get(method, method), ls="--" if method == "random" else "-")
    ax.set_xlabel(f"fraction of pixels {'removed' if kind == 'deletion' else 'inserted'} (most attributed first)")
    ax.set_ylabel("CNN probability of its class")
    ax.set_title(f"{kind.capitalize()} curves (mean over the sample)")
    ax.legend(fontsize=7)
    return _png(fig)
