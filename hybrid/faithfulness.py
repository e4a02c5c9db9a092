"""How faithful is a pixel attribution? Metrics that declare their direction (after Quantus).

Each metric takes (model, x, target, maps, …) with images x (N, C, H, W) in [0, 1], target (N,)
and maps (N, H, W) from `attribution.to_map`, and returns one score per image (N,):

- deletion AUC (Petsiuk et al. 2018): remove the most-attributed pixels first (set them to the
  deletion baseline, black); the area under the target-probability curve. Lower is better.
- insertion AUC: start from a blurred image and put the most-attributed pixels back first.
  Higher is better.
- randomisation rank correlation (Adebayo et al. 2018): Spearman correlation between the map of
  the trained network and of the same network with re-initialised weights. A method that
  explains the model decorrelates: lower is better.
- lesion mass share: share of positive attribution inside the lesion mask. Higher is better,
  read against the lesion's own area share (what a uniform map gets).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from scipy.stats import rankdata


@dataclass(frozen=True)
class Metric:
    name: str
    higher_is_better: bool
    description: str

    @property
    def arrow(self) -> str:
        return "↑" if self.higher_is_better else "↓"


METRICS = {
    "deletion_auc": Metric("deletion AUC", False, "area under the target probability as top pixels are removed"),
    "insertion_auc": Metric("insertion AUC", True, "area under the target probability as top pixels are inserted into a blurred image"),
    "randomisation_corr": Metric("randomisation rank corr.", False, "Spearman correlation of maps from the trained and a re-initialised network"),
    "lesion_mass": Metric("lesion mass share", True, "share of positive attribution inside the lesion mask"),
}


def _curve(model, x, target, maps, n_steps: int, start: torch.Tensor, end: torch.Tensor, batch: int) -> np.ndarray:
    """Target probability (N, n_steps + 1) as the top-k fraction k/n_steps of pixels (by map)
    is taken from `end` and the rest from `start`."""
    n, c, h, w = x.shape
    order = np.argsort(-maps.reshape(n, -1), axis=1, kind="stable")
    pos = np.empty_like(order)
    np.put_along_axis(pos, order, np.arange(h * w)[None].repeat(n, 0), axis=1)
    pos = torch.from_numpy(pos.reshape(n, 1, h, w))
    cut = torch.from_numpy(np.round(np.linspace(0, h * w, n_steps + 1)).astype(np.int64))
    out = np.zeros((n, n_steps + 1))
    per = n_steps + 1
    step = max(1, batch // per)
    with torch.no_grad():
        for lo in range(0, n, step):
            sl = slice(lo, min(n, lo + step))
            b = sl.stop - sl.start
            take = (pos[sl].unsqueeze(0) < cut.view(-1, 1, 1, 1, 1)).to(x.device)  # (S+1, b, 1, H, W)
            mixed = torch.where(take, end[sl].unsqueeze(0), start[sl].unsqueeze(0)).reshape(per * b, c, h, w)
            p = F.softmax(model(mixed), 1).gather(1, target[sl].repeat(per).view(-1, 1)).view(per, b)
            out[sl] = p.T.cpu().numpy()
    return out


def blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur of each channel (N, C, H, W), sigma in pixels."""
    a = x.cpu().numpy()
    return torch.from_numpy(ndimage.gaussian_filter(a, sigma=(0, 0, sigma, sigma), mode="reflect")).to(x.device)


def deletion_insertion(model, x, target, maps, n_steps: int = 16, blur_sigma: float | None = None,
                       batch: int = 128) -> dict[str, np.ndarray]:
    """Per-image deletion and insertion AUCs (N,) and their curves (N, n_steps + 1).
    blur_sigma defaults to image width / 6 (the insertion start carries almost no detail)."""
    model.eval()
    target = torch.as_tensor(target).long().view(-1)
    sigma = blur_sigma if blur_sigma is not None else x.shape[-1] / 6
    dele = _curve(model, x, target, maps, n_steps, start=x, end=torch.zeros_like(x), batch=batch)
    ins = _curve(model, x, target, maps, n_steps, start=blur(x, sigma), end=x, batch=batch)
    auc = lambda c: np.trapezoid(c, dx=1.0 / n_steps, axis=1)  # noqa: E731
    return {"deletion_auc": auc(dele), "insertion_auc": auc(ins), "deletion_curve": dele, "insertion_curve": ins}


def randomised_copy(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """The same architecture with every layer re-initialised (the end of Adebayo's cascade);
    normalisation buffers of the input are kept."""
    m = copy.deepcopy(model)
    torch.manual_seed(seed)
    for mod in m.modules():
        if hasattr(mod, "reset_parameters") and mod is not m:
            mod.reset_parameters()
    return m.eval()


def rank_corr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman correlation per image between maps a and b (N, H, W) → (N,); 0 where a map is constant."""
    ra = rankdata(a.reshape(len(a), -1), axis=1)
    rb = rankdata(b.reshape(len(b), -1), axis=1)
    ra -= ra.mean(1, keepdims=True)
    rb -= rb.mean(1, keepdims=True)
    den = np.sqrt((ra**2).sum(1) * (rb**2).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (ra * rb).sum(1) / den, 0.0)


def mass_share(maps: np.ndarray, region: np.ndarray) -> np.ndarray:
    """Share of positive attribution inside `region` (N, H, W) bool → (N,); a map with no positive
    mass counts as uniform (gets the region's area share)."""
    pos = np.clip(maps, 0, None).reshape(len(maps), -1)
    reg = region.reshape(len(region), -1)
    tot = pos.sum(1)
    area = reg.mean(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(tot > 0, (pos * reg).sum(1) / tot, area)


def pairwise_agreement(maps: dict[str, np.ndarray]) -> dict[tuple[str, str], float]:
    """Mean per-image Spearman correlation between every pair of methods' maps."""
    names = list(maps)
    return {(a, b): float(rank_corr(maps[a], maps[b]).mean()) for a in names for b in names}
