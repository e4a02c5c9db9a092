#!/usr/bin/env python
"""Experiment (not part of the product): backbone variants the recipe search had not tried.

    python bench/backbone_variants.py --variant cutmix --seed 0 [--alpha 1.0 --prob 0.5] [--set train.epochs=60]
    python bench/backbone_variants.py --variant upsample --seed 0 [--factor 2]
    python bench/backbone_variants.py --variant affine --seed 0 [--scale 0.1]
    python bench/backbone_variants.py --variant se --seed 0 [--reduction 4]
    python bench/backbone_variants.py --variant plain --seed 0

cutmix: CutMix (Yun et al. 2019) on top of the default recipe. With probability `prob` a batch gets,
for every image, a box of area fraction 1 − λ (λ ~ Beta(α, α)) pasted from another image of the
batch; the loss is λ · CE(own label) + (1 − λ) · CE(other label), λ recomputed from the clipped box.
Unlike mixup (run I) the pasted pixels are real lesion texture; unlike cutout (run N) the hole is
filled and labelled.

upsample: every image (train, val, test) is enlarged `factor` times (bilinear, back to uint8) before
the default recipe sees it, so the backbone gets one stage more (28 → 56 px: 56, 28, 14, 7 px maps)
and ~4x the compute, but no new information. It separates what the 64-px runs gained from the
larger maps from what they gained from the extra pixels.

affine: after the default augmentation (flips, 90° rotations, 2-px shifts), every training image is
rotated by a uniform angle in [0°, 360°) and scaled by a uniform factor in [1 − scale, 1 + scale]
(bilinear, reflection at the border). A lesion has no orientation, so the 8 dihedral views leave
out every angle in between; ISIC-challenge recipes rotate freely.

se: a squeeze-and-excitation gate (Hu et al. 2018; global average → C/r → ReLU → C → sigmoid, per
channel) on the residual branch of every block, before the addition; ~2% more parameters.

plain: the issue's floor architecture, rebuilt from its description ("a plain 6-convolution CNN,
~0.65 M parameters"): three stages of two 3×3 conv-BN-ReLU layers at widths 48, 96, 192, 2×2 max
pooling between stages, global average pooling, dropout and a linear head (646k parameters, about
3× the default's convolution work). It replaces the residual network and its 3×3 grid head; the
training recipe stays the default's. The product now builds the same layers as model.arch = "plain"
(configs/plain.toml with --set model.head=avg); this class stays as the record of run AH, whose initial weights were drawn
after a discarded residual network, so the same seed starts elsewhere than the product's.

All use the default preset's config and seed, are selected on val AUC as the product selects, and
print best val AUC and test ACC / AUC without and with 8-view TTA. Val chooses; test reports.
"""
from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import hybrid.train as T  # noqa: E402
from hybrid.backbone import DermaCNN  # noqa: E402
from hybrid.config import load_config  # noqa: E402
from hybrid.data import load_dataset  # noqa: E402
from hybrid.metrics import accuracy, auc_ovr  # noqa: E402


def cutmix_loss(alpha: float, prob: float):
    """A replacement for hybrid.train._loss that applies CutMix (global torch RNG, which the
    training loop seeds from (seed, epoch), so runs are reproducible)."""
    def loss(module, x, y, weights, smoothing, mix, cw, ct_batch):
        ce = lambda logits, t: F.cross_entropy(logits.float(), t, weight=weights, label_smoothing=smoothing)
        if float(torch.rand(())) >= prob:
            return ce(module(x), y)
        lam = float(torch.distributions.Beta(alpha, alpha).sample())
        s = x.shape[-1]
        cut = int(round(s * (1 - lam) ** 0.5))
        cy, cx = (int(v) for v in torch.randint(0, s, (2,)))
        y0, y1, x0, x1 = max(cy - cut // 2, 0), min(cy + cut - cut // 2, s), max(cx - cut // 2, 0), min(cx + cut - cut // 2, s)
        j = torch.randperm(len(x), device=x.device)
        x = x.clone()
        x[:, :, y0:y1, x0:x1] = x[j, :, y0:y1, x0:x1]
        lam = 1 - (y1 - y0) * (x1 - x0) / (s * s)
        logits = module(x)
        return lam * ce(logits, y) + (1 - lam) * ce(logits, y[j])
    return loss


def affine_augment(base, scale: float):
    """Wrap hybrid.augment.augment: its output, then a random rotation and scaling per image, drawn
    from the same generator so runs stay reproducible and resumable."""
    def aug(x, g, *args):
        x = base(x, g, *args)
        b = len(x)
        theta = torch.rand(b, generator=g) * 2 * torch.pi
        z = 1 + (2 * torch.rand(b, generator=g) - 1) * scale  # zoom > 1 enlarges
        cos, sin = torch.cos(theta) / z, torch.sin(theta) / z
        mat = torch.stack([torch.stack([cos, -sin, torch.zeros(b)], 1),
                           torch.stack([sin, cos, torch.zeros(b)], 1)], 1).to(x.device, x.dtype)
        grid = F.affine_grid(mat, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False).contiguous()
    return aug


def add_squeeze_excitation(reduction: int) -> None:
    """Patch hybrid.backbone.ResBlock so every block built afterwards gates its residual branch."""
    import hybrid.backbone as B
    init, cls = B.ResBlock.__init__, B.ResBlock

    def new_init(self, c_in, c_out, stride=1):
        init(self, c_in, c_out, stride)
        h = max(c_out // reduction, 4)
        self.se = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Conv2d(c_out, h, 1),
                                      torch.nn.ReLU(), torch.nn.Conv2d(h, c_out, 1), torch.nn.Sigmoid())

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        y = y * self.se(y)
        return F.relu(y + (x if self.short is None else self.short(x)))

    cls.__init__, cls.forward = new_init, forward


class PlainCNN(DermaCNN):
    """The plain 6-convolution CNN of `plain`, with DermaCNN's interface (normalisation, embed, classify)."""

    def __init__(self, n_classes: int, in_channels: int, image_size: int, dropout: float = 0.2,
                 widths: tuple[int, ...] = (48, 96, 192)):
        super().__init__(n_classes, in_channels, image_size, width=8, blocks_per_stage=1, dropout=dropout, head="avg")
        layers, c = [], in_channels
        for i, w in enumerate(widths):
            if i:
                layers.append(torch.nn.MaxPool2d(2))
            for _ in range(2):
                layers += [torch.nn.Conv2d(c, w, 3, 1, 1, bias=False), torch.nn.BatchNorm2d(w), torch.nn.ReLU()]
                c = w
        self.stem, self.stages = torch.nn.Identity(), torch.nn.Sequential(*layers)
        self.feature_channels = self.embed_dim = c
        self.head = torch.nn.Linear(c, n_classes)

    def fused(self) -> "PlainCNN":
        return copy.deepcopy(self).eval()


def use_plain_cnn() -> None:
    """Make hybrid.train build (and rebuild from config) PlainCNN instead of the default backbone."""
    T.build_backbone = lambda n_classes, channels, size, width, blocks, dropout, *rest: PlainCNN(n_classes, channels, size, dropout)
    T.from_config = lambda c: PlainCNN(c["n_classes"], c["in_channels"], c["image_size"], c["dropout"])


def upsample(images_u8: np.ndarray, factor: int) -> np.ndarray:
    """(N, S, S, C) uint8 → (N, factor·S, factor·S, C) uint8, bilinear."""
    x = torch.from_numpy(images_u8).permute(0, 3, 1, 2).float()
    x = F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variant", choices=("cutmix", "upsample", "affine", "se", "plain"), required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--alpha", type=float, default=1.0, help="cutmix: Beta(α, α) for λ")
    ap.add_argument("--prob", type=float, default=0.5, help="cutmix: share of batches mixed")
    ap.add_argument("--factor", type=int, default=2, help="upsample: enlargement factor")
    ap.add_argument("--scale", type=float, default=0.1, help="affine: zoom range ± scale")
    ap.add_argument("--reduction", type=int, default=4, help="se: channel reduction r")
    ap.add_argument("--config", default=str(ROOT / "configs/default.toml"))
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="config override, as for `hybrid train --set` (e.g. train.epochs=60)")
    a = ap.parse_args()
    t0 = time.perf_counter()
    cfg = load_config(a.config, [f"run.seed={a.seed}", *a.set])
    assert cfg["train"]["mixup_alpha"] == 0 and cfg["train"]["concept_weight"] == 0
    d = load_dataset("dermamnist", cfg["data"]["size"])
    tr, va, te = d.splits["train"], d.splits["val"], d.splits["test"]
    xs = [tr.images, va.images, te.images]
    if a.variant == "cutmix":
        T._loss = cutmix_loss(a.alpha, a.prob)
        label = f"cutmix alpha {a.alpha} prob {a.prob}"
    elif a.variant == "upsample":
        xs = [upsample(x, a.factor) for x in xs]
        label = f"upsample x{a.factor} ({xs[0].shape[1]} px)"
    elif a.variant == "affine":
        T.augment = affine_augment(T.augment, a.scale)
        label = f"affine rotation 0-360 deg, zoom +-{a.scale}"
    elif a.variant == "se":
        add_squeeze_excitation(a.reduction)
        label = f"squeeze-excitation r={a.reduction}"
    else:
        use_plain_cnn()
        label = "plain 6-convolution CNN (48-96-192, global pooling)"
    model, hist, info = T.train_backbone(xs[0], tr.labels, xs[1], va.labels, 7, cfg)
    t_train = time.perf_counter() - t0
    out = {"best val AUC": round(max(h["val_auc"] for h in hist), 4), "best epoch": info["best_epoch"]}
    for tta in (False, True):
        p = T.predict_proba(model.fused(), xs[2], tta=tta)
        out["test TTA" if tta else "test"] = (round(accuracy(te.labels, p), 4), round(auc_ovr(te.labels, p), 4))
    out["parameters"] = sum(p.numel() for p in model.parameters())
    print(f"{label}, {cfg['train']['epochs']} epochs, seed {a.seed}: {out} (training {t_train:.0f} s, all {time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
