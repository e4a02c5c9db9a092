"""Faithfulness metrics and region maps on cases with a known answer."""
import numpy as np
import torch
from scipy.stats import spearmanr

from hybrid import faithfulness as FA
from hybrid.backbone import build_backbone
from hybrid.concepts import REGIONS, region_masks


class PatchModel(torch.nn.Module):
    """Logit of class 0 = 40 · mean of the top-left 7×7 patch − 20; class 1 fixed at 0."""

    def forward(self, x):
        z = 40 * x[:, :, :7, :7].mean((1, 2, 3)) - 20
        return torch.stack([z, torch.zeros_like(z)], 1)


def test_deletion_and_insertion_rank_the_true_evidence_first():
    x = torch.full((6, 3, 28, 28), 0.2)
    x[:, :, :7, :7] = 1.0  # the evidence; blurring spreads it out (insertion starts near p = 0)
    target = torch.zeros(6, dtype=torch.long)
    truth = np.zeros((6, 28, 28))
    truth[:, :7, :7] = 1.0
    truth += np.random.default_rng(0).uniform(0, 0.01, truth.shape)  # break ties
    rand = np.random.default_rng(1).uniform(size=truth.shape)
    good = FA.deletion_insertion(PatchModel(), x, target, truth)
    bad = FA.deletion_insertion(PatchModel(), x, target, -truth)
    floor = FA.deletion_insertion(PatchModel(), x, target, rand)
    assert good["deletion_auc"].mean() < floor["deletion_auc"].mean() < bad["deletion_auc"].mean()
    assert good["insertion_auc"].mean() > floor["insertion_auc"].mean()
    c = good["deletion_curve"]
    assert c.shape == (6, 17)
    np.testing.assert_allclose(c[:, 0], 1.0, atol=1e-6)  # nothing removed: the model is sure
    assert (c[:, 1] < 0.5).all() and (c[:, -1] < 1e-6).all()  # the patch is 49 of 784 px: gone by step 1


def test_rank_corr_equals_scipy_spearman():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(5, 8, 8)), rng.normal(size=(5, 8, 8))
    b[0] = a[0] * 3 + 1
    b[1] = np.round(b[1])  # ties
    ref = [spearmanr(a[i].ravel(), b[i].ravel())[0] for i in range(5)]
    np.testing.assert_allclose(FA.rank_corr(a, b), ref, atol=1e-12)
    assert FA.rank_corr(a, np.zeros_like(a))[0] == 0.0


def test_randomised_copy_reinitialises_weights_and_keeps_input_normalisation():
    m = build_backbone(7, 3, 28, width=8, blocks_per_stage=1)
    m.set_normalization([0.6, 0.5, 0.4], [0.2, 0.2, 0.2])
    r = FA.randomised_copy(m, seed=1)
    for (name, p), q in zip(m.named_parameters(), r.parameters()):
        if p.dim() > 1:
            assert not torch.equal(p, q), name
    assert torch.equal(m.mean, r.mean) and torch.equal(m.std, r.std)


def test_mass_share_known_answers():
    region = np.zeros((3, 10, 10), bool)
    region[:, :5] = True
    maps = np.ones((3, 10, 10))
    maps[1] = 0
    maps[1, :5] = 2.0
    maps[2] = -1.0  # no positive mass: counts as uniform
    np.testing.assert_allclose(FA.mass_share(maps, region), [0.5, 1.0, 0.5])


def test_region_masks_partition_the_image_and_find_the_disc():
    s = 28
    img = np.full((2, s, s, 3), (200, 150, 130), np.uint8)
    yy, xx = np.mgrid[:s, :s]
    img[:, np.hypot(yy - 13.5, xx - 13.5) < 6] = (90, 50, 40)
    img[1, 3, :] = (20, 20, 20)  # a dark hair line
    reg = region_masks(img)
    stack = np.stack([reg[r] for r in REGIONS]).sum(0)
    assert (stack == 1).all()
    assert reg["lesion"][:, 13, 13].all() and reg["border"][0, 13, 13 + 6]
    assert not reg["artifact"][0].any() and reg["artifact"][1, 3, 8:20].all()
    assert reg["corners"][0, 0, 0] and not reg["corners"][0, 14, 14]
