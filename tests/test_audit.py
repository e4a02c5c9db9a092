"""Audits on known answers: stamps land where configured, a corner-only model is flagged, ITA
strata and leakage counts on hand-made data."""
import numpy as np
import pytest
import torch

from hybrid import attribution as A
from hybrid import audit as AU
from hybrid.concepts import region_masks
from hybrid.shortcut import KINDS, apply_stamp, plant, stamp_mask


def _images(n=40, s=28, seed=0):
    rng = np.random.default_rng(seed)
    img = np.full((n, s, s, 3), (200, 150, 130), np.uint8)
    yy, xx = np.mgrid[:s, :s]
    img[:, np.hypot(yy - 13.5, xx - 13.5) < 6] = (90, 50, 40)
    return np.clip(img.astype(int) + rng.integers(-10, 10, img.shape), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("kind", KINDS)
def test_stamp_lands_where_and_as_often_as_configured(kind):
    imgs = _images(200)
    labels = np.r_[np.full(50, 4), np.zeros(150, int)]
    out, chosen = plant(imgs, labels, kind, klass=4, fraction=0.9, fraction_other=0.1, seed=3)
    assert chosen[:50].sum() == 45 and chosen[50:].sum() == 15
    m = stamp_mask(kind, 28)
    assert 0 < m.mean() < 0.1 and not m[:14, :14].any()  # bottom-right, small
    changed = (out != imgs).any(-1)
    assert not changed[~chosen].any()
    assert changed[chosen][:, ~m].sum() == 0  # nothing outside the mask moves
    np.testing.assert_array_equal(plant(imgs, labels, kind, 4, 0.9, 0.1, seed=3)[1], chosen)
    assert stamp_mask(kind, 64).sum() > m.sum()
    with pytest.raises(ValueError, match="unknown stamp kind"):
        apply_stamp(imgs[:1], "sticker")


class CornerModel(torch.nn.Module):
    """Decides from the top-left 6×6 corner only."""

    def forward(self, x):
        z = 10 * x[:, :, :6, :6].mean((1, 2, 3))
        return torch.stack([z, -z], 1)


class LesionModel(torch.nn.Module):
    """Decides from the central 10×10 only (where the synthetic lesion is)."""

    def forward(self, x):
        z = 10 * x[:, :, 9:19, 9:19].mean((1, 2, 3))
        return torch.stack([z, -z], 1)


def test_a_corner_only_model_is_flagged_and_a_lesion_model_is_not():
    imgs = _images(16)
    regions = region_masks(imgs)
    x = A.images_to_tensor(imgs)
    t = torch.zeros(16, dtype=torch.long)
    corner = np.zeros((16, 28, 28), bool)
    corner[:, :6, :6] = True
    bg = A.images_to_tensor(_images(8, seed=1))
    verdicts = {}
    for name, model in (("corner", CornerModel()), ("lesion", LesionModel())):
        enr, focus = {}, []
        for m in AU.FLAG_METHODS_V1:
            kw = {"background": bg, "n_samples": 8} if m == "expected_gradients" else {"n_samples": 4} if m == "smoothgrad" else {}
            mp = A.to_map(A.attribute(model, x, t, m, **kw), m)
            enr[m] = float(AU.enrichment(mp, corner).mean())
            focus.append(AU.region_table(mp, regions)["off_lesion"].mean())
        verdicts[name] = (AU.shortcut_flag(enr)[0], float(np.mean(focus)))
    assert verdicts["corner"] == (True, 1.0)  # flagged, and every image is off-lesion
    assert verdicts["lesion"][0] is False and verdicts["lesion"][1] == 0.0


def test_ita_categories_and_age_bands():
    ita = np.array([-45.0, -30.0, 0.0, 20.0, 35.0, 50.0, 70.0])
    assert list(AU.ita_category(ita)) == ["dark (< −30°)", "brown (−30–10°)", "brown (−30–10°)", "tan (10–28°)",
                                          "intermediate (28–41°)", "light (41–55°)", "very light (> 55°)"]
    assert list(AU.age_band([10, 30, 59, 60, 80, np.nan])) == ["< 30", "30–44", "45–59", "60–74", "≥ 75", "unknown"]


def test_leakage_counts_and_group_metrics_on_hand_made_data():
    train = ["L1", "L2", "L3", "L3"]
    test = np.array(["L3", "L4", "L1", "L5", "L5"])
    assert AU.leaked(train, test).tolist() == [True, False, True, False, False]
    y = np.array([0, 1, 1, 0, 1, 0])
    proba = np.array([[.9, .1], [.2, .8], [.6, .4], [.7, .3], [.4, .6], [.3, .7]])
    groups = np.array(["a", "a", "a", "b", "b", "b"])
    rows = AU.group_metrics(groups, y, proba, sur_pred=np.array([0, 1, 1, 0, 0, 0]), n_boot=20)
    assert [r["group"] for r in rows] == ["a", "b"] and [r["n"] for r in rows] == [3, 3]
    assert rows[0]["acc"] == pytest.approx(2 / 3) and rows[1]["acc"] == pytest.approx(2 / 3)
    assert rows[0]["fidelity"] == pytest.approx(2 / 3) and rows[1]["fidelity"] == pytest.approx(1 / 3)
    assert rows[0]["auc"] == 1.0
    y = np.array([2, 2, 2, 1, 2, 1])  # class 2 is the most frequent overall: a is all class 2, b half, c none
    rows = AU.group_metrics(np.array(["a", "a", "a", "b", "b", "c"]), y, np.eye(3)[y], n_boot=20)
    assert [r["majority_acc"] for r in rows] == pytest.approx([1.0, 0.5, 0.0])


def test_shortcut_rule_is_fixed_and_needs_a_method():
    v1 = AU.FLAG_METHODS_V1
    assert AU.shortcut_flag({"gradient": 5.0, "smoothgrad": 3.0, "expected_gradients": 1.0}, v1) == (True, 3.0)
    assert AU.shortcut_flag({"gradient": 1.0, "smoothgrad": 1.0, "expected_gradients": 9.0}) == (True, 9.0)  # v2
    assert AU.shortcut_flag({"gradient": 9.0, "expected_gradients": 2.9})[0] is False
    with pytest.raises(ValueError):
        AU.shortcut_flag({"gradcam": 9.0})


class SaturatedStampModel(torch.nn.Module):
    """Calls class 0 when the bottom-right stamp region is dark, through a saturating tanh — as a CNN
    that has fully learned a planted artifact: on a stamped image the gradient there is ~0 — plus a
    weak linear term on the central lesion."""

    def __init__(self, mask):
        super().__init__()
        self.mask = torch.as_tensor(mask, dtype=torch.float32)

    def forward(self, x):
        dark = 1 - (x * self.mask).sum((1, 2, 3)) / (3 * self.mask.sum())
        z = 5 * torch.tanh(20 * (dark - 0.5)) + 0.5 * x[:, :, 9:19, 9:19].mean((1, 2, 3))
        return torch.stack([z, -z], 1)


def test_rule_v2_finds_a_saturated_shortcut_that_gradients_miss():
    """Why the rule moved to SHAP for the CNN (hybrid.audit): gradients see no sensitivity on a
    saturated artifact, expected gradients credit it."""
    mask = stamp_mask("ruler", 28)
    stamped = apply_stamp(_images(16), "ruler")
    x, t = A.images_to_tensor(stamped), torch.zeros(16, dtype=torch.long)
    bg = A.images_to_tensor(_images(8, seed=1))  # clean references
    model = SaturatedStampModel(mask)
    assert (model(x).argmax(1) == 0).all() and (model(bg).argmax(1) == 1).all()
    region = np.broadcast_to(mask, (16, 28, 28))
    enr = {}
    for m, kw in (("gradient", {}), ("smoothgrad", {"n_samples": 8}), ("expected_gradients", {"background": bg, "n_samples": 16})):
        enr[m] = float(AU.enrichment(A.to_map(A.attribute(model, x, t, m, **kw), m), region).mean())
    assert AU.shortcut_flag(enr)[0] is True  # v2: enrichment ≈ 34
    assert AU.shortcut_flag(enr, AU.FLAG_METHODS_V1)[0] is False  # v1: gradient and SmoothGrad ≈ 0.003


def test_skin_tone_shift_zero_is_identity_and_darkening_lowers_ita_only_on_skin():
    from hybrid.concepts import CONCEPT_NAMES, measure_concepts

    imgs = _images(6)
    _, masks = measure_concepts(imgs, return_masks=True)
    np.testing.assert_array_equal(AU.skin_tone_shift(imgs, masks, 0), imgs)
    dark = AU.skin_tone_shift(imgs, masks, 30)
    ita = CONCEPT_NAMES.index("skin_ita")
    assert (measure_concepts(dark)[:, ita] < measure_concepts(imgs)[:, ita] - 15).all()
    np.testing.assert_array_equal(dark[masks], imgs[masks])  # the lesion is kept


@pytest.mark.parametrize("kind", AU.CORRUPTIONS)
def test_corruptions_grow_with_severity(kind):
    imgs = _images(4)
    np.testing.assert_array_equal(AU.corrupt(imgs, kind, 0), imgs)
    d = [np.abs(AU.corrupt(imgs, kind, s).astype(int) - imgs).mean() for s in (1, 2, 3)]
    assert 0 < d[0] < d[2]


def test_skin_swap_moves_a_skin_reader_and_not_a_lesion_reader():
    """Known answers: a 'model' that reads only the lesion pixels is untouched by any skin recolouring;
    one that reads only the skin's redness follows the swap, and the control (each class's own typical
    skin) leaves it where it was."""
    from hybrid.audit import skin_lab, skin_swap_response

    s, n = 16, 40
    yy, xx = np.mgrid[:s, :s]
    mask = np.broadcast_to(np.hypot(yy - 7.5, xx - 7.5) < 4, (n, s, s)).copy()
    y = np.repeat([4, 5], n // 2)
    rng = np.random.default_rng(0)
    skin = np.where((y == 5)[:, None], [200, 120, 110], [190, 160, 150]) + rng.integers(-5, 6, (n, 3))  # nevi: redder skin
    lesion = rng.integers(60, 120, (n, 3))
    img = np.where(mask[..., None], lesion[:, None, None], skin[:, None, None]).astype(np.uint8)
    _, skin_lab_mean = skin_lab(img, mask)
    typical = {c: np.median(skin_lab_mean[y == c], axis=0) for c in (4, 5)}

    def reader(region):
        def predict(x):
            _, m = skin_lab(x, mask[: len(x)]) if region == "skin" else (None, None)
            score = (m[:, 1] < 20).astype(float) if region == "skin" else x[:, 8, 8, 0] / 255.0  # low a* → melanoma
            p = np.zeros((len(x), 7))
            p[:, 4], p[:, 5] = score, 1 - score
            return p
        return predict

    lesion_r = skin_swap_response(reader("lesion"), img, mask, y, typical, 4, 5)
    for side in ("positive", "negative"):
        assert lesion_r[side]["swap"] == lesion_r[side]["before"] == lesion_r[side]["control"]
    skin_r = skin_swap_response(reader("skin"), img, mask, y, typical, 4, 5)
    assert skin_r["positive"]["before"]["called_pos"] == 1.0 and skin_r["positive"]["swap"]["called_pos"] == 0.0
    assert skin_r["negative"]["before"]["called_pos"] == 0.0 and skin_r["negative"]["swap"]["called_pos"] == 1.0
    assert skin_r["positive"]["control"]["called_pos"] == 1.0 and skin_r["negative"]["control"]["called_pos"] == 0.0
    assert skin_r["auc"]["before"] == 1.0 and skin_r["auc"]["swap"] == 0.0 and skin_r["auc"]["control"] == 1.0
