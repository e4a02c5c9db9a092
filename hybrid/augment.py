"""Batch augmentation for dermoscopy, on tensors, driven by an explicit torch.Generator.

Dermoscopy has no canonical orientation, so all 8 flips/90° rotations are label-preserving;
colour jitter is kept mild because colour carries diagnostic meaning.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def to_float(images_u8: torch.Tensor) -> torch.Tensor:
    """(B, S, S, C) uint8 → (B, C, S, S) float in [0, 1]."""
    return images_u8.permute(0, 3, 1, 2).float().div_(255.0)


def _rand(g: torch.Generator, n: int, device) -> torch.Tensor:
    return torch.rand(n, generator=g).to(device)


def augment(x: torch.Tensor, g: torch.Generator, flip: bool = True, rot90: bool = True,
            crop_pad: int = 0, jitter: float = 0.0, acquisition: float = 0.0,
            cutout: float = 0.0) -> torch.Tensor:
    """Random flips, 90° rotations, reflect-pad-and-crop shifts, brightness/contrast/saturation jitter,
    (acquisition > 0) the camera and dermoscope changes of `acquisition_shift` and (cutout > 0) `cutout`.

    x: (B, C, S, S) float in [0, 1]. All randomness comes from `g` (CPU generator), so a run is
    reproducible and resumable epoch by epoch.
    """
    b, c, h, w = x.shape
    dev = x.device
    if flip:
        m = _rand(g, b, dev) < 0.5
        x = torch.where(m[:, None, None, None], x.flip(3), x)
    if rot90 and h == w:
        k = torch.randint(0, 4, (b,), generator=g).to(dev)
        out = x.clone()
        for r in (1, 2, 3):
            idx = (k == r).nonzero(as_tuple=True)[0]
            if len(idx):
                out[idx] = torch.rot90(x[idx], r, dims=(2, 3))
        x = out
    if crop_pad > 0:
        p = crop_pad
        padded = F.pad(x, (p, p, p, p), mode="reflect")
        dx = torch.randint(0, 2 * p + 1, (b,), generator=g)
        dy = torch.randint(0, 2 * p + 1, (b,), generator=g)
        rows = (dy[:, None] + torch.arange(h)[None]).to(dev)  # (B, H)
        cols = (dx[:, None] + torch.arange(w)[None]).to(dev)  # (B, W)
        bi = torch.arange(b, device=dev)[:, None, None]
        x = padded.permute(0, 2, 3, 1)[bi, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
    if jitter > 0:
        def factor():
            return (1 + (2 * _rand(g, b, dev) - 1) * jitter)[:, None, None, None]

        x = x * factor()  # brightness
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = (x - mean) * factor() + mean  # contrast
        if c == 3:
            gray = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])
            x = (x - gray) * factor() + gray  # saturation
        x = x.clamp_(0, 1)
    if acquisition > 0:
        x = acquisition_shift(x, g, acquisition)
    if cutout > 0:
        x = cutout_patch(x, g, cutout)
    return x.contiguous()


def skin_swap(x: torch.Tensor, masks: torch.Tensor, skin_rgb: torch.Tensor, g: torch.Generator,
              p: float) -> torch.Tensor:
    """With probability p per image, give the skin around the lesion the colour of another image's
    skin in the batch: the non-lesion pixels are scaled per channel by donor / own mean skin colour
    (clipped to 0.5–2), the lesion is kept.

    Breaks a class–skin-colour correlation that comes from how the images were taken: in HAM10000 the
    follow-up nevi were photographed apart from the rest and their skin alone tells them from
    melanomas (bench/device_confound.py). Apply it before any geometric augmentation, on the
    unaugmented images that `masks` (B, S, S) bool and `skin_rgb` (B, 3) were measured on.
    x: (B, C, S, S) float in [0, 1]; all randomness from `g`.
    """
    b = x.shape[0]
    dev = x.device
    donor = torch.randperm(b, generator=g).to(dev)
    on = (_rand(g, b, dev) < p)[:, None, None, None]
    gain = (skin_rgb[donor] / skin_rgb.clamp_min(1e-3)).clamp(0.5, 2.0)[:, :, None, None]
    skin = ~masks[:, None]
    return torch.where(on & skin, (x * gain).clamp(0, 1), x)


def cutout_patch(x: torch.Tensor, g: torch.Generator, side: float) -> torch.Tensor:
    """Cutout (DeVries & Taylor 2017): with probability 1/2 per image, a square of `side` × S pixels
    at a uniform random centre (clipped at the border) is set to the image's mean colour.

    x: (B, C, S, S) float in [0, 1]; all randomness from `g`.
    """
    b, c, h, w = x.shape
    dev = x.device
    k = max(1, round(side * h))
    cy = torch.randint(0, h, (b,), generator=g).to(dev)[:, None, None]
    cx = torch.randint(0, w, (b,), generator=g).to(dev)[:, None, None]
    on = (_rand(g, b, dev) < 0.5)[:, None, None]
    yy = torch.arange(h, device=dev)[None, :, None]
    xx = torch.arange(w, device=dev)[None, None, :]
    box = on & ((yy - cy).abs() * 2 < k) & ((xx - cx).abs() * 2 < k)  # (B, S, S)
    return torch.where(box[:, None], x.mean(dim=(2, 3), keepdim=True), x)


def acquisition_shift(x: torch.Tensor, g: torch.Generator, strength: float) -> torch.Tensor:
    """Random changes of camera and dermoscope, for robustness to another clinic (hybrid issue 7).

    Per image, with `strength` a in (0, 1]: a colour cast (per-channel gain 1 ± a), a gamma
    exp(± a), zoom in or out by up to ± a/2 (reflected borders), with probability 1/2 a blur
    (a blend of up to 100% with a 3×3 box blur), and with probability 1/3 a dark round vignette
    like a contact dermoscope's (radius 0.75–1.25 of the half-side, outside kept at 0–30%).
    x: (B, C, S, S) float in [0, 1]; all randomness from `g`.
    """
    b, c, h, w = x.shape
    dev = x.device

    def u(*shape):  # uniform in [-1, 1]
        return (2 * torch.rand(*shape, generator=g) - 1).to(dev)

    x = x * (1 + strength * u(b, c, 1, 1))
    x = x.clamp(1e-4, 1).pow(torch.exp(strength * u(b, 1, 1, 1)))
    scale = 1 + 0.5 * strength * u(b)
    theta = torch.zeros(b, 2, 3, device=dev)
    theta[:, 0, 0] = theta[:, 1, 1] = 1 / scale
    grid = F.affine_grid(theta, (b, c, h, w), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    blur = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, 1)
    wgt = (_rand(g, b, dev) * (_rand(g, b, dev) < 0.5))[:, None, None, None]
    x = x * (1 - wgt) + blur * wgt
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, h, device=dev), torch.linspace(-1, 1, w, device=dev), indexing="ij")
    radius = (1 + 0.25 * u(b))[:, None, None]
    inside = torch.sigmoid((radius - torch.hypot(yy, xx)[None]) * 12)[:, None]  # soft edge
    floor = (0.3 * _rand(g, b, dev))[:, None, None, None]
    vig = (_rand(g, b, dev) < 1 / 3)[:, None, None, None]
    x = torch.where(vig, x * (floor + (1 - floor) * inside), x)
    return x.clamp(0, 1)


def dihedral_views(x: torch.Tensor):
    """The 8 flips/rotations of a square batch, for test-time augmentation."""
    for flip in (False, True):
        y = x.flip(3) if flip else x
        for r in range(4):
            yield torch.rot90(y, r, dims=(2, 3))
