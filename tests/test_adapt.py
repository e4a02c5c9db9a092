"""Test-time BatchNorm adaptation (hybrid.adapt): exact statistics on a known answer, and on real images."""
import numpy as np
import pytest
import torch
from torch import nn

from hybrid.adapt import MIN_IMAGES, adapt_batchnorm
from hybrid.backbone import build_backbone
from hybrid.errors import HybridError
from hybrid.train import predict_proba


class _Probe(nn.Module):
    """uint8-range images → 1×1 conv → BatchNorm: the BN layer's statistics have a closed form."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)
        self.bn = nn.BatchNorm2d(4)
        self.drop = nn.Dropout(0.5)

    def forward(self, x):
        return self.drop(self.bn(self.conv(x)))


def test_statistics_are_the_target_images_own_and_the_model_is_untouched():
    torch.manual_seed(0)
    model = _Probe().eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    images = np.random.default_rng(0).integers(0, 256, (40, 6, 6, 3), dtype=np.uint8)
    adapted = adapt_batchnorm(model, images, batch_size=64)  # one batch: the statistics are exact
    with torch.no_grad():
        z = model.conv(torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255)
    flat = z.permute(1, 0, 2, 3).reshape(4, -1)
    torch.testing.assert_close(adapted.bn.running_mean, flat.mean(1))
    torch.testing.assert_close(adapted.bn.running_var, flat.var(1, unbiased=True))
    assert not adapted.training and not adapted.bn.training and adapted.bn.momentum == model.bn.momentum
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, before[k])  # the original keeps its own statistics
    torch.testing.assert_close(adapted.conv.weight, model.conv.weight)


def test_adapting_undoes_a_brightness_and_contrast_shift_on_real_images(real_npz):
    """An affine change of every pixel is absorbed by the stem's BatchNorm (up to the zero-padded
    border and uint8 rounding): the adapted model on shifted images predicts nearly what the source
    model predicts on the originals; the unadapted one does not."""
    torch.manual_seed(0)
    x = real_npz["val_images"][:256]
    source = adapt_batchnorm(build_backbone(7, 3, 28, width=8, blocks_per_stage=1), x)  # realistic statistics
    shifted = np.clip(x.astype(np.float32) * 0.6 + 20, 0, 255).round().astype(np.uint8)
    p = predict_proba(source, x)
    tv_plain = 0.5 * np.abs(predict_proba(source, shifted) - p).sum(1).mean()
    tv_adapted = 0.5 * np.abs(predict_proba(adapt_batchnorm(source, shifted), shifted) - p).sum(1).mean()
    assert tv_adapted < 0.5 * tv_plain
    np.testing.assert_allclose(predict_proba(adapt_batchnorm(source, x), x), p, atol=1e-4)  # same images: no change


def test_too_few_images_or_a_fused_model_get_one_clear_sentence():
    model = build_backbone(7, 3, 28, width=8, blocks_per_stage=1)
    few = np.zeros((MIN_IMAGES - 1, 28, 28, 3), np.uint8)
    with pytest.raises(HybridError, match=f"at least {MIN_IMAGES} target images; got {MIN_IMAGES - 1}"):
        adapt_batchnorm(model, few)
    with pytest.raises(HybridError, match="no BatchNorm|has none"):
        adapt_batchnorm(model.eval().fused(), np.zeros((64, 28, 28, 3), np.uint8))
