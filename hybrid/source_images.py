"""The 200×150 HAM10000 source images behind DermaMNIST, at any square size.

DermaMNIST's images are these source images resized to S×S with bicubic resampling and no crop
(../shared/data/README.md); `load_source_images(ids, 28)` reproduces the 28-px npz byte for byte
(tests/test_concepts.py). Larger sizes give concept measurement more pixels of the same view:

    ids = dataset.splits["test"].metadata["image_id"]
    concepts = measure_concepts(load_source_images(ids, size=128))

The images are read from `ham10000_images_200x150.tar` or from the folder it unpacks to, in the
HAM10000 data root (the metadata root: ../shared/data/ham10000 when present).
"""
from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np

from .data import default_metadata_root
from .errors import HybridError, not_a_file

FOLDER = "ham10000_images_200x150"
TAR = FOLDER + ".tar"


def _open(root: Path):
    """A function image_id → file-like JPEG, from the unpacked folder or the tar."""
    folder = root / FOLDER
    if folder.is_dir():
        def get(image_id: str):
            p = folder / f"{image_id}.jpg"
            if not p.is_file():
                raise HybridError(f"Source image {p} {not_a_file(p)}; expected one JPEG per HAM10000 image_id.")
            return open(p, "rb")
        return get, None
    tar_path = root / TAR
    if not tar_path.is_file():
        raise HybridError(f"No HAM10000 source images in {root}: expected the folder {FOLDER}/ or the file {TAR}.")
    try:
        tf = tarfile.open(tar_path)
    except tarfile.TarError as e:
        raise HybridError(f"{tar_path} is not a readable tar file ({e}); expected the HAM10000 source-image archive.") from None
    members = {Path(m.name).stem: m for m in tf.getmembers() if m.isfile() and m.name.endswith(".jpg")}

    def get(image_id: str):
        if image_id not in members:
            raise HybridError(f"{tar_path} has no image for image_id '{image_id}'.")
        return tf.extractfile(members[image_id])
    return get, tf


def load_source_images(image_ids, size: int, root=None) -> np.ndarray:
    """uint8 RGB (N, size, size, 3): each HAM10000 source image resized the way DermaMNIST was made
    (PIL bicubic, full field of view, no crop). `image_ids` like 'ISIC_0027615', in the order wanted."""
    from PIL import Image

    root = Path(root) if root else default_metadata_root()
    if root is None:
        raise HybridError("HAM10000 source images not found: pass the folder holding "
                          f"{TAR} (../shared/data/ham10000 is the default).")
    if int(size) < 1:
        raise HybridError(f"Source image size must be a positive number of pixels; got {size}.")
    get, tf = _open(root)
    ids = [str(i) for i in image_ids]
    out = np.empty((len(ids), size, size, 3), np.uint8)
    try:
        for k, image_id in enumerate(ids):
            with get(image_id) as f:
                try:
                    out[k] = np.asarray(Image.open(f).convert("RGB").resize((size, size), Image.BICUBIC))
                except OSError as e:  # PIL's UnidentifiedImageError and truncated files are OSErrors
                    raise HybridError(f"Source image '{image_id}' in {root} is not a readable JPEG ({e}).") from None
    finally:
        if tf is not None:
            tf.close()
    return out
