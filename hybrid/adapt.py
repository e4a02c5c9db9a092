"""Test-time BatchNorm adaptation (AdaBN; Li et al. 2016, Schneider et al. 2020).

A CNN trained in one clinic normalises every layer with BatchNorm statistics of that clinic's
images. Another dermoscope shifts those statistics (colour cast, brightness, vignette). AdaBN
re-estimates them — only the running means and variances, no weight and no label — from a batch of
unlabelled images of the new device, then predicts as usual. It is transductive: the target images
themselves (or others from the same device) set the statistics, so results made with it are
reported apart from the plain model's, never instead of them.
"""
from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from .augment import dihedral_views, to_float
from .errors import HybridError

MIN_IMAGES = 32  # fewer images give BatchNorm statistics too noisy to trust


def batchnorm_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """Every BatchNorm layer of `model`, in module order."""
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@torch.no_grad()
def adapt_batchnorm(model: nn.Module, images_u8: np.ndarray, batch_size: int = 256,
                    views: bool = True, device: torch.device | str = "cpu") -> nn.Module:
    """A copy of `model` whose BatchNorm running mean/var are the statistics of `images_u8`.

    images_u8: uint8 (N, S, S, C), N ≥ MIN_IMAGES, unlabelled images of the target device.
    views: also pass the 8 dihedral views (flips, 90° rotations), as training augmentation did, so the
    statistics do not depend on the images' orientation. Statistics are the equal-weight average over
    batches of batch_size images (BatchNorm's momentum=None). Weights, biases and the model's own
    state are unchanged; the copy is returned in eval mode. Apply before `DermaCNN.fused()`.
    """
    if len(images_u8) < MIN_IMAGES:
        raise HybridError(f"BatchNorm adaptation needs at least {MIN_IMAGES} target images; got {len(images_u8)}.")
    m = copy.deepcopy(model).to(device).eval()
    bns = batchnorm_layers(m)
    if not bns:
        raise HybridError("BatchNorm adaptation needs a model with BatchNorm layers; this one has none "
                          "(a fused inference copy? adapt the unfused model).")
    momenta = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
        bn.train()  # only the BatchNorm layers: dropout stays off
    for i in range(0, len(images_u8), batch_size):
        x = to_float(torch.from_numpy(np.ascontiguousarray(images_u8[i:i + batch_size]))).to(device)
        if len(x) < 2:  # BatchNorm cannot estimate a variance from one image
            continue
        for v in (dihedral_views(x) if views else [x]):
            m(v)
    for bn, mom in zip(bns, momenta):
        bn.momentum = mom
    return m.eval()
