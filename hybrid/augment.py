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
            crop_pad: int = 0, jitter: float = 0.0) -> torch.Tensor:
    """Random flips, 90° rotations, reflect-pad-and-crop shifts and brightness/contrast/saturation jitter.

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
    return x.contiguous()


def dihedral_views(x: torch.Tensor):
    """The 8 flips/rotations of a square batch, for test-time augmentation."""
    for flip in (False, True):
        y = x.flip(3) if flip else x
        for r in range(4):
            yield torch.rot90(y, r, dims=(2, 3))
