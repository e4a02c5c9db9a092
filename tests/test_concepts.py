"""Concepts on synthetic images with known answers, and on real images."""
import numpy as np
import pytest
from skimage.color import lab2rgb

from hybrid.concepts import COLOURS, CONCEPT_NAMES, ConceptExtractor, measure_concepts

S = 64


def _rgb(lab):
    return (np.clip(lab2rgb(np.array(lab, float).reshape(1, 1, 3)), 0, 1) * 255).round().astype(np.uint8).reshape(3)


def _image(skin_lab=(70, 12, 18), lesion=None, lines=0):
    img = np.tile(_rgb(skin_lab), (S, S, 1))
    yy, xx = np.mgrid[:S, :S]
    if lesion is not None:
        for mask, lab in lesion(yy, xx):
            img[mask] = _rgb(lab)
    for k in range(lines):  # thin dark hairs across the skin
        img[np.abs(yy - (xx * 0.3 + 6 + 12 * k)) < 0.6] = _rgb((20, 3, 3))
    return img


def disc(lab=COLOURS["dark_brown"], r=14):
    return lambda yy, xx: [(((yy - 31.5) ** 2 + (xx - 31.5) ** 2) <= r * r, lab)]


def two_colour(yy, xx):
    d = ((yy - 31.5) ** 2 + (xx - 31.5) ** 2) <= 15 ** 2
    return [(d & (xx < 32), COLOURS["dark_brown"]), (d & (xx >= 32), COLOURS["black"])]


def _c(img, name):
    return float(measure_concepts(img[None])[0, CONCEPT_NAMES.index(name)])


def test_disc_is_symmetric_and_compact():
    img = _image(lesion=disc())
    assert _c(img, "asymmetry") < 0.03
    assert _c(img, "compactness") == pytest.approx(1.0, abs=0.08)
    assert _c(img, "area") == pytest.approx(np.pi * 14**2 / S**2, rel=0.05)


def test_irregular_lesion_is_less_compact_and_asymmetric():
    def blob(yy, xx):
        theta = np.arctan2(yy - 31.5, xx - 31.5)
        r = np.hypot(yy - 31.5, xx - 31.5)
        return [(r <= 10 + 5 * np.sin(5 * theta) * (theta > 0), COLOURS["dark_brown"])]
    img = _image(lesion=blob)
    assert _c(img, "compactness") < 0.75
    assert _c(img, "asymmetry") > 0.1


def test_two_colour_lesion_has_two_colours():
    assert _c(_image(lesion=two_colour), "n_colours") == 2
    assert _c(_image(lesion=disc()), "n_colours") == 1


def test_dark_lines_raise_hair_score():
    plain, hairy = _image(lesion=disc(r=8)), _image(lesion=disc(r=8), lines=4)
    assert _c(hairy, "hair") > _c(plain, "hair") + 0.02


def test_darker_skin_has_lower_ita():
    light = _image(skin_lab=(72, 10, 16), lesion=disc())
    dark = _image(skin_lab=(45, 12, 25), lesion=disc(lab=COLOURS["black"]))
    assert _c(light, "skin_ita") == pytest.approx(np.degrees(np.arctan(22 / 16)), abs=3)
    assert _c(dark, "skin_ita") < 0 < _c(light, "skin_ita")


def _lab_of(rgb):
    from skimage.color import rgb2lab
    return rgb2lab(np.asarray(rgb, np.uint8).reshape(1, 1, 3))[0, 0]


def test_layout_concepts_read_the_central_disc_and_the_rest_without_a_mask():
    from hybrid.concepts import CENTRE_RADIUS

    # a lesion filling exactly the central disc: its colour inside, the skin's outside, no spread
    skin, lesion = (70, 12, 18), COLOURS["dark_brown"]
    r = CENTRE_RADIUS * S
    img = _image(skin_lab=skin, lesion=lambda yy, xx: [(np.hypot(yy - 31.5, xx - 31.5) < r, lesion)])
    for zone, lab in (("centre", _lab_of(_rgb(lesion))), ("outer", _lab_of(_rgb(skin)))):
        for k, ch in enumerate("Lab"):
            assert _c(img, f"{zone}_{ch}") == pytest.approx(lab[k], abs=1e-3)
            assert _c(img, f"{zone}_{ch}_std") == pytest.approx(0, abs=1e-3)
    # a lesion twice that radius: the centre is all lesion, the outer zone a mix, so its sd rises
    big = _image(skin_lab=skin, lesion=disc(r=2 * r))
    assert _c(big, "centre_L") == pytest.approx(_lab_of(_rgb(lesion))[0], abs=1e-3)
    assert _c(big, "outer_L") < _c(img, "outer_L") - 5 and _c(big, "outer_L_std") > 5


def test_layout_concepts_do_not_change_under_flips_and_rotations(real_npz):
    from hybrid.concepts import N_MASK_CONCEPTS

    x = real_npz["test_images"][:50]
    ref = measure_concepts(x)[:, N_MASK_CONCEPTS:]
    for y in (x[:, ::-1], x[:, :, ::-1], np.rot90(x, 1, axes=(1, 2)), np.rot90(x, 3, axes=(1, 2))):
        assert np.allclose(measure_concepts(np.ascontiguousarray(y))[:, N_MASK_CONCEPTS:], ref, atol=1e-3)


def test_extractor_is_a_sklearn_transformer(data_root):
    from sklearn.base import clone
    from hybrid.data import load_dataset

    x = load_dataset("dermamnist", 28, data_root, subset=40).splits["test"].images
    ext = clone(ConceptExtractor()).fit(x)
    out = ext.transform(x)
    assert out.shape == (40, len(CONCEPT_NAMES)) and np.isfinite(out).all()
    assert np.allclose(ext.transform(x.reshape(40, -1)), out)
    assert list(ext.get_feature_names_out()) == CONCEPT_NAMES
    with pytest.raises(ValueError, match=r"\(N, S, S, 3\)"):
        measure_concepts(x[..., :1])


def test_streamed_and_parallel_measurement_equal_one_pass(real_npz, monkeypatch):
    import hybrid.concepts as C

    x = real_npz["test_images"][:450]
    one, m1 = measure_concepts(x, return_masks=True)
    two, m2 = measure_concepts(x, return_masks=True, n_jobs=2)
    assert np.array_equal(one, two) and np.array_equal(m1, m2)
    monkeypatch.setattr(C, "MAX_CHUNK_PIXELS", 28 * 28 * 100)  # 100 images at a time: 5 chunks
    calls, real = [], C._measure

    def counted(imgs, rm):
        calls.append(len(imgs))
        return real(imgs, rm)

    monkeypatch.setattr(C, "_measure", counted)
    streamed = measure_concepts(x)
    assert calls == [90] * 5 and np.array_equal(streamed, one)


@pytest.fixture(scope="module")
def ham_root():
    from hybrid.data import default_metadata_root
    from hybrid.source_images import TAR

    root = default_metadata_root()
    if root is None or not (root / TAR).is_file():
        pytest.skip("HAM10000 source images not found beside the project")
    return root


def test_source_images_resized_are_dermamnist_exactly(real_npz, ham_root):
    """DermaMNIST is the source images resized bicubic without crop: at 28 px the tar's images match
    the npz byte for byte (the unpacked folder's are checked below)."""
    from hybrid.data import load_metadata
    from hybrid.source_images import load_source_images

    meta = load_metadata(ham_root)
    ids = meta[meta["split"] == "test"].set_index("index").loc[range(12), "image_id"].tolist()
    src = load_source_images(ids, 28, ham_root)
    assert src.dtype == np.uint8 and np.array_equal(src, real_npz["test_images"][:12])
    big = load_source_images(ids[:3], 128, ham_root)
    assert big.shape == (3, 128, 128, 3)
    # measured on 128 px, a concept of the same lesion stays close to its 28-px value (lesion mean L*)
    j = CONCEPT_NAMES.index("lesion_L")
    assert np.abs(measure_concepts(big)[:, j] - measure_concepts(src[:3])[:, j]).max() < 10


def test_source_images_from_folder_and_bad_input(ham_root, real_npz, tmp_path):
    import tarfile

    from hybrid.data import load_metadata
    from hybrid.errors import HybridError
    from hybrid.source_images import FOLDER, TAR, load_source_images

    meta = load_metadata(ham_root)
    ids = meta[meta["split"] == "test"].set_index("index").loc[range(3), "image_id"].tolist()
    with tarfile.open(ham_root / TAR) as tf:
        for i in ids:
            tf.extract(f"{FOLDER}/{i}.jpg", tmp_path, filter="data")
    assert np.array_equal(load_source_images(ids, 28, tmp_path), real_npz["test_images"][:3])
    with pytest.raises(HybridError, match=r"ISIC_9999999\.jpg does not exist"):
        load_source_images(["ISIC_9999999"], 28, tmp_path)
    with pytest.raises(HybridError, match="has no image for image_id 'ISIC_9999999'"):
        load_source_images(["ISIC_9999999"], 28, ham_root)
    with pytest.raises(HybridError, match="No HAM10000 source images in"):
        load_source_images(ids, 28, tmp_path / "empty")
    (tmp_path / FOLDER / f"{ids[0]}.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(HybridError, match=f"Source image '{ids[0]}' in .* is not a readable JPEG"):
        load_source_images(ids, 28, tmp_path)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / TAR).write_bytes(b"not a tar")
    with pytest.raises(HybridError, match="is not a readable tar file"):
        load_source_images(ids, 28, tmp_path / "bad")
