"""A small residual CNN for 28–224 px dermoscopy images.

Input: float images in [0, 1], shape (B, C, S, S). The model normalises internally
(per-channel mean/std buffers set from the training set), so attribution methods
and users work in image space.
"""
from __future__ import annotations

import copy

import torch
from torch import nn
import torch.nn.functional as F
from torch.nn.utils.fusion import fuse_conv_bn_eval


class ResBlock(nn.Module):
    """Two 3×3 conv-BN layers with an identity (or 1×1 projection) shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.short = None
        if stride != 1 or c_in != c_out:
            self.short = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + (x if self.short is None else self.short(x)))


class PlainBlock(nn.Module):
    """VGG-style: optional 2×2 max pooling, then two 3×3 conv-BN-ReLU layers, no shortcut."""

    short = None  # the interface of ResBlock, for fused()

    def __init__(self, c_in: int, c_out: int, pool: bool):
        super().__init__()
        self.pool = nn.MaxPool2d(2) if pool else nn.Identity()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(self.pool(x))))
        return F.relu(self.bn2(self.conv2(y)))


ARCHS = ("resnet", "plain")


def n_stages_for(image_size: int) -> int:
    """Three stages (28→7 px maps) at 28 px; one more per doubling, so the last map stays ~7–8 px."""
    n, s = 3, 28
    while s < image_size:
        n, s = n + 1, s * 2
    return n


def shades_of_gray(x: torch.Tensor, p: int = 6) -> torch.Tensor:
    """Colour constancy (Finlayson & Trezzi 2004): (B, C, S, S) in [0, 1] → the same images under a
    grey illuminant. The illuminant per channel is the Minkowski p-mean of the image; each channel is
    scaled so the illuminant becomes grey at the same mean level. Differentiable, so attributions
    see it as part of the model."""
    e = x.clamp_min(1e-6).pow(p).mean((2, 3), keepdim=True).pow(1.0 / p)  # (B, C, 1, 1)
    return (x * (e.mean(1, keepdim=True) / e)).clamp(0, 1)


class DermaCNN(nn.Module):
    """Residual CNN: stem → stages of ResBlocks (width doubles, resolution halves) → pooled embedding → linear head.
    arch='plain' builds the plain CNN of the issue's floor instead: no stem, stages of PlainBlocks
    (two conv-BN-ReLU layers, max pooling between stages); at width 48 with head='avg' and 28-px
    input it has 646,807 parameters.

    forward(x) → logits (B, n_classes); embed(x) → (B, embed_dim); features(x) → last feature map
    (B, feature_channels, h, w) for Grad-CAM. head='avg' pools globally (embed_dim = channels);
    head='grid' keeps a 3×3 layout and projects it to embed_dim with a ReLU layer. A concept head (Linear embed_dim → n_concepts) can be
    attached with `attach_concept_head`; `concepts(x)` then returns its scores. colour_constancy=p > 0
    applies Shades of Gray with Minkowski norm p to every input, in training and at test time alike.
    """

    def __init__(self, n_classes: int = 7, in_channels: int = 3, image_size: int = 28,
                 width: int = 32, blocks_per_stage: int = 2, dropout: float = 0.2, head: str = "avg",
                 embed_dim: int = 256, colour_constancy: int = 0, arch: str = "resnet"):
        super().__init__()
        if head not in ("avg", "grid"):
            raise ValueError(f"head must be 'avg' or 'grid', got {head!r}")
        if arch not in ARCHS:
            raise ValueError(f"arch must be one of {ARCHS}, got {arch!r}")
        self.config = dict(n_classes=n_classes, in_channels=in_channels, image_size=image_size,
                           width=width, blocks_per_stage=blocks_per_stage, dropout=dropout, head=head,
                           embed_dim=embed_dim, colour_constancy=colour_constancy, arch=arch)
        self.colour_constancy = colour_constancy
        self.register_buffer("mean", torch.full((1, in_channels, 1, 1), 0.5))
        self.register_buffer("std", torch.full((1, in_channels, 1, 1), 0.25))
        if arch == "plain":
            self.stem, c = nn.Identity(), in_channels
        else:
            self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
            c = width
        layers = []
        for s in range(n_stages_for(image_size)):
            c_out = width * 2 ** s if s < 4 else width * 8
            for b in range(blocks_per_stage):
                first = b == 0 and s > 0
                layers.append(PlainBlock(c, c_out, pool=first) if arch == "plain"
                              else ResBlock(c, c_out, stride=2 if first else 1))
                c = c_out
        self.stages = nn.Sequential(*layers)
        self.feature_channels = c
        if head == "grid":  # keep coarse layout (centre vs periphery): 3×3 average grid → linear → ReLU
            self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(3), nn.Flatten(), nn.Dropout(dropout),
                                      nn.Linear(9 * c, embed_dim), nn.ReLU())
            self.embed_dim = embed_dim
        else:  # global average pooling
            self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
            self.embed_dim = c
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(self.embed_dim, n_classes)
        self.concept_head: nn.Module | None = None

    def set_normalization(self, mean, std) -> None:
        """Per-channel mean and std of training images in [0, 1] units."""
        self.mean.copy_(torch.as_tensor(mean, dtype=torch.float32).view_as(self.mean))
        self.std.copy_(torch.as_tensor(std, dtype=torch.float32).view_as(self.std))

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """What the network sees of an image in [0, 1]: colour-corrected when configured."""
        return shades_of_gray(x, self.colour_constancy) if self.colour_constancy else x

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem((self.preprocess(x) - self.mean) / self.std))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.features(x))

    def classify(self, embedding: torch.Tensor) -> torch.Tensor:
        """Logits (B, n_classes) from embeddings (B, embed_dim): the head after the embedding."""
        return self.head(self.dropout(embedding))

    def forward(self, x: torch.Tensor, with_concepts: bool = False):
        """Logits (B, n_classes); with_concepts: also the concept head's scores (B, n_concepts) from the
        same embedding (joint training; a keyword so DDP's forward hooks see it)."""
        e = self.embed(x)
        return (self.classify(e), self.concept_head(e)) if with_concepts else self.classify(e)

    def attach_concept_head(self, n_concepts: int) -> nn.Module:
        self.concept_head = nn.Linear(self.embed_dim, n_concepts)
        self.config["n_concepts"] = n_concepts
        return self.concept_head

    def concepts(self, x: torch.Tensor) -> torch.Tensor:
        if self.concept_head is None:
            raise RuntimeError("No concept head attached; call attach_concept_head(n) first.")
        return self.concept_head(self.embed(x))

    def fused(self) -> "DermaCNN":
        """An inference copy: eval mode, every BatchNorm folded into the convolution before it
        (torch's fuse_conv_bn_eval), channels-last weights. The same function up to float rounding
        (tests/test_train.py) and, on 2 CPU cores, 1.15–1.45x the forward and input-gradient
        throughput (bench/bench_attribution.py). For prediction and attribution only: its
        state_dict no longer matches the architecture, so checkpoints keep the unfused model."""
        m = copy.deepcopy(self).eval()
        if isinstance(m.stem, nn.Sequential):  # the plain CNN has no stem
            m.stem = nn.Sequential(fuse_conv_bn_eval(m.stem[0], m.stem[1]), m.stem[2])
        for block in m.stages:
            block.conv1, block.bn1 = fuse_conv_bn_eval(block.conv1, block.bn1), nn.Identity()
            block.conv2, block.bn2 = fuse_conv_bn_eval(block.conv2, block.bn2), nn.Identity()
            if block.short is not None:
                block.short = fuse_conv_bn_eval(block.short[0], block.short[1])
        return m.to(memory_format=torch.channels_last) if next(m.parameters()).device.type == "cpu" else m


def channels_last_trainable(model: nn.Module) -> bool:
    """Whether training may use channels-last tensors on the CPU. Not when a strided 1×1 convolution
    has fewer than 16 input channels: oneDNN's weight gradient for it writes past its workspace
    (uxlfoundation/oneDNN#6035; here, torch 2.13 on an AVX-512 CPU, width 8 at 64 px segfaults,
    and elsewhere it can hang or return wrong gradients). Inference and input gradients are unaffected."""
    return all(m.in_channels >= 16 for m in model.modules()
               if isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1) and m.stride != (1, 1))


def build_backbone(n_classes: int, in_channels: int, image_size: int, width: int = 32,
                   blocks_per_stage: int = 2, dropout: float = 0.2, head: str = "avg", embed_dim: int = 256,
                   colour_constancy: int = 0, arch: str = "resnet") -> DermaCNN:
    return DermaCNN(n_classes, in_channels, image_size, width, blocks_per_stage, dropout, head, embed_dim,
                    colour_constancy, arch)


def from_config(c: dict) -> DermaCNN:
    """Rebuild a backbone from its saved `config` dict (with its concept head when it had one)."""
    m = DermaCNN(c["n_classes"], c["in_channels"], c["image_size"], c["width"], c["blocks_per_stage"],
                 c["dropout"], c.get("head", "avg"), c.get("embed_dim", 256), c.get("colour_constancy", 0), c.get("arch", "resnet"))
    if c.get("n_concepts"):
        m.attach_concept_head(c["n_concepts"])
    return m


def n_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
