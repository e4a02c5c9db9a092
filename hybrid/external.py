"""External image sets in a MedMNIST label space: loading, validation, resizing.

An external set is an npz with `test_images` (N, S, S, 3) uint8 and `test_labels` (N, 1) (or (N,))
integers in [0, n_classes). Images of another side are resized the way MedMNIST made its files:
the full frame, bicubic (PIL), no crop.
"""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from .data import SHARED_DATA
from .errors import HybridError, not_a_file

KEYS = ("test_images", "test_labels")


def default_external(name: str = "ph2", size: int = 28) -> Path | None:
    """The shared copy of an external set (../shared/data/external/<name>/<name>_<size>.npz), if present."""
    for root in (SHARED_DATA, Path.cwd().parent / "shared" / "data"):
        p = root / "external" / name / f"{name}_{size}.npz"
        if p.is_file():
            return p
    return None


def resize(images: np.ndarray, size: int) -> np.ndarray:
    """uint8 (N, S, S, C) → (N, size, size, C), full frame, PIL bicubic."""
    from PIL import Image

    if images.shape[1] == size:
        return images
    return np.stack([np.asarray(Image.fromarray(im).resize((size, size), Image.BICUBIC)) for im in images])


def load_external(path, size: int, n_classes: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (N, size, size, 3), labels int64 (N,)) from an external npz, validated."""
    path = Path(path)
    if not path.is_file():
        raise HybridError(f"External set {path} {not_a_file(path)}; expected an npz with keys {', '.join(KEYS)}.")
    if not zipfile.is_zipfile(path):
        raise HybridError(f"External set {path} is not a readable npz archive: it is not a complete zip file, as "
                          "numpy.savez writes; it may be truncated or another kind of file.")
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in KEYS if k not in z.files]
            if missing:
                raise HybridError(f"External set {path} has no key(s) {', '.join(missing)}; expected {', '.join(KEYS)} "
                                  f"(found {', '.join(z.files) or 'none'}).")
            images, labels = z["test_images"], z["test_labels"]
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise HybridError(f"External set {path} is not a readable npz ({type(exc).__name__}: {exc}).") from None
    if images.ndim != 4 or images.shape[-1] != 3 or images.shape[1] != images.shape[2] or images.dtype != np.uint8:
        raise HybridError(f"External set {path}: 'test_images' is {images.dtype} {images.shape}; expected uint8 (N, S, S, 3).")
    if len(images) == 0:
        raise HybridError(f"External set {path} is empty; expected at least one image in 'test_images'.")
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1 or len(labels) != len(images) or not np.issubdtype(labels.dtype, np.integer):
        raise HybridError(f"External set {path}: 'test_labels' is {labels.dtype} {labels.shape}; expected integers "
                          f"({len(images)}, 1), one per image.")
    bad = (labels < 0) | (labels >= n_classes)
    if bad.any():
        raise HybridError(f"External set {path}: 'test_labels' holds {labels[bad][0]} (row {int(np.argmax(bad))}); "
                          f"expected labels 0–{n_classes - 1}.")
    return resize(images, size), labels.astype(np.int64)
