import os
import subprocess
import sys

import numpy as np
import pytest

from hybrid.data import load_dataset, resolve_root, validate_npz
from hybrid.errors import HybridError

from .conftest import PROJECT


def test_loads_real_dermamnist_with_metadata(data_root):
    data = load_dataset("dermamnist", 28, data_root, subset=50)
    assert data.class_names[4] == "melanoma" and data.n_classes == 7
    for name, n in (("train", 50), ("val", 50), ("test", 50)):
        s = data.splits[name]
        assert s.images.shape == (n, 28, 28, 3) and s.images.dtype == np.uint8
        assert s.labels.min() >= 0 and s.labels.max() <= 6
        assert list(s.metadata["label"]) == list(s.labels)
        assert s.metadata["lesion_id"].str.startswith("HAM_").all()
        assert {"age", "sex", "localization", "dx_type"} <= set(s.metadata.columns)


def test_loads_64px_official_split_sizes(data_root):
    data = load_dataset("dermamnist", 64, data_root)
    assert {k: len(v.labels) for k, v in data.splits.items()} == {"train": 7007, "val": 1003, "test": 2005}
    assert data.splits["val"].images.shape[1:] == (64, 64, 3)
    assert np.bincount(data.splits["test"].labels).tolist() == [66, 103, 220, 23, 223, 1341, 29]


def test_root_resolution_order(tmp_path, monkeypatch, data_root):
    assert resolve_root(tmp_path) == (tmp_path, False)
    monkeypatch.setenv("HYBRID_DATA_ROOT", str(tmp_path / "env"))
    assert resolve_root(None) == (tmp_path / "env", False)
    monkeypatch.delenv("HYBRID_DATA_ROOT")
    assert resolve_root(None) == (data_root, False)


def test_missing_file(tmp_path):
    with pytest.raises(HybridError, match=r"dermamnist\.npz does not exist"):
        load_dataset("dermamnist", 28, tmp_path)


def test_truncated_npz(tmp_path, data_root):
    raw = (data_root / "dermamnist.npz").read_bytes()
    (tmp_path / "dermamnist.npz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(HybridError, match="truncated or corrupt"):
        load_dataset("dermamnist", 28, tmp_path)


def _write(tmp_path, arrays):
    np.savez(tmp_path / "dermamnist.npz", **arrays)


def test_wrong_shape(tmp_path, real_npz):
    bad = dict(real_npz, val_images=real_npz["val_images"][:, :27])
    _write(tmp_path, bad)
    with pytest.raises(HybridError, match=r"'val_images' has shape \(1003, 27, 28, 3\); expected \(1003, 28, 28, 3\)"):
        load_dataset("dermamnist", 28, tmp_path)


def test_missing_key(tmp_path, real_npz):
    bad = {k: v for k, v in real_npz.items() if k != "test_labels"}
    _write(tmp_path, bad)
    with pytest.raises(HybridError, match="no 'test_labels' array"):
        validate_npz(tmp_path / "dermamnist.npz", "dermamnist", 28)


def test_labels_out_of_range(tmp_path, real_npz):
    labels = real_npz["train_labels"].copy()
    labels[3] = 9
    _write(tmp_path, dict(real_npz, train_labels=labels))
    with pytest.raises(HybridError, match=r"'train_labels' has values in \[0, 9\]; expected 0..6"):
        load_dataset("dermamnist", 28, tmp_path)


def test_unknown_dataset():
    with pytest.raises(HybridError, match="Unknown MedMNIST dataset 'nosuchmnist'"):
        load_dataset("nosuchmnist", 28, "/nonexistent")


def test_cli_bad_data_is_one_sentence_and_exit_2(tmp_path):
    (tmp_path / "dermamnist.npz").write_bytes(b"not a zip file")
    r = subprocess.run([sys.executable, "-m", "hybrid.cli", "train", "--config", str(PROJECT / "configs/quick.toml"),
                        "--data-root", str(tmp_path), "--runs-dir", str(tmp_path / "runs"), "--quiet"],
                       capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(PROJECT)))
    assert r.returncode == 2
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("hybrid: error:")]
    assert len(lines) == 1 and "dermamnist.npz" in lines[0] and "truncated or corrupt" in lines[0]
    assert "Traceback" not in r.stderr


def test_another_medmnist_set_trains(tmp_path):
    """A grayscale, binary MedMNIST 2D set (BreastMNIST's shapes) goes through the same code path."""
    from hybrid.config import load_config
    from hybrid.train import predict_proba, train_backbone

    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 546), ("val", 78), ("test", 156)):
        y = rng.integers(0, 2, n)
        x = rng.integers(0, 80, (n, 28, 28)).astype(np.uint8)
        x[y == 1, 8:20, 8:20] += 150  # a bright square marks class 1
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = x, y.reshape(-1, 1).astype(np.uint8)
    np.savez(tmp_path / "breastmnist.npz", **arrays)
    data = load_dataset("breastmnist", 28, tmp_path)
    assert data.n_channels == 1 and data.n_classes == 2 and data.splits["train"].metadata is None
    cfg = load_config(None, ["train.epochs=3", "model.width=8", "train.tta=false", "train.threads=2"])
    tr, va = data.splits["train"], data.splits["val"]
    model, history, _ = train_backbone(tr.images, tr.labels, va.images, va.labels, 2, cfg, progress=False)
    p = predict_proba(model, data.splits["test"].images)
    assert p.shape == (156, 2)
    assert (p.argmax(1) == data.splits["test"].labels).mean() > 0.9


def test_short_class_names_are_ham10000_codes_in_label_order():
    from hybrid.data import class_names, short_class_names

    assert short_class_names(class_names("dermamnist")) == ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]
    assert short_class_names(["a very long class name"], width=6) == ["a very"]
