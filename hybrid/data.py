"""MedMNIST 2D data through medmnist's own dataset class, validated on load.

Images are returned as uint8 arrays (N, S, S, C) and labels as int64 (N,).
The data root is resolved as: argument → $HYBRID_DATA_ROOT → ../shared/data/dermamnist
(beside the project, when present) → medmnist's default root, with download.
"""
from __future__ import annotations

import hashlib
import os
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import HybridError, not_a_file

SPLITS = ("train", "val", "test")
PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"


def medmnist_info(flag: str) -> dict:
    """medmnist's INFO entry for a dataset flag such as 'dermamnist'."""
    from medmnist import INFO

    if flag not in INFO:
        names = sorted(k for k in INFO if not k.endswith("3d"))
        raise HybridError(f"Unknown MedMNIST dataset '{flag}'; expected one of {', '.join(names)}.")
    info = INFO[flag]
    if flag.endswith("3d") or info["task"] == "multi-label, binary-class":
        raise HybridError(
            f"MedMNIST dataset '{flag}' has task '{info['task']}'; hybrid trains 2D single-label sets "
            "(multi-class, binary-class or ordinal-regression)."
        )
    return info


def class_names(flag: str) -> list[str]:
    """Class names in label order."""
    labels = medmnist_info(flag)["label"]
    return [labels[str(i)] for i in range(len(labels))]


# HAM10000's diagnosis codes, in DermaMNIST's label order (medmnist INFO["dermamnist"]["label"])
HAM_CODES = {"actinic keratoses and intraepithelial carcinoma": "akiec", "basal cell carcinoma": "bcc",
             "benign keratosis-like lesions": "bkl", "dermatofibroma": "df", "melanoma": "mel",
             "melanocytic nevi": "nv", "vascular lesions": "vasc"}


def short_class_names(names: list[str], width: int = 14) -> list[str]:
    """Names that fit a small figure title: HAM10000's codes (mel, nv, …) for DermaMNIST's classes,
    other names cut to `width` characters."""
    return [HAM_CODES.get(n, n[:width]) for n in names]


def class_legend(names: list[str]) -> str:
    """'akiec: actinic keratoses …; bcc: …' for the classes whose short name differs from the name."""
    return "; ".join(f"{c}: {n}" for c, n in zip(short_class_names(names), names) if c != n)


def npz_name(flag: str, size: int) -> str:
    return f"{flag}.npz" if size == 28 else f"{flag}_{size}.npz"


def resolve_root(root: str | os.PathLike | None = None, flag: str = "dermamnist") -> tuple[Path, bool]:
    """Where the npz files live, and whether medmnist may download into it."""
    if root:
        return Path(root), False
    env = os.environ.get("HYBRID_DATA_ROOT")
    if env:
        return Path(env), False
    for shared in (SHARED_DATA / "dermamnist", Path.cwd().parent / "shared" / "data" / "dermamnist"):
        if shared.is_dir() and any(shared.glob(f"{flag}*.npz")):
            return shared, False
    from medmnist.info import DEFAULT_ROOT

    Path(DEFAULT_ROOT).mkdir(parents=True, exist_ok=True)
    return Path(DEFAULT_ROOT), True


def download(flag: str, size: int, root: Path) -> Path:
    """Fetch the npz with medmnist's own downloader; without torchvision, the same URL and MD5 by urllib."""
    info = medmnist_info(flag)
    suffix = "" if size == 28 else f"_{size}"
    path = root / npz_name(flag, size)
    if path.is_file():
        return path
    url, md5 = info[f"url{suffix}"], info[f"MD5{suffix}"]
    try:
        from torchvision.datasets.utils import download_url  # medmnist's path

        download_url(url=url, root=str(root), filename=path.name, md5=md5)
        return path
    except ImportError:
        pass
    tmp = path.with_suffix(".npz.part")
    try:
        urllib.request.urlretrieve(url, tmp)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise HybridError(
            f"Could not download {path.name} from {url} ({exc}); put the file in {root} or pass --data-root."
        ) from None
    if file_md5(tmp) != md5:
        tmp.unlink(missing_ok=True)
        raise HybridError(f"Downloaded {path.name} does not match medmnist's MD5 {md5}; try again.")
    os.replace(tmp, path)
    return path


def file_md5(path: str | os.PathLike) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def validate_npz(path: Path, flag: str, size: int) -> None:
    """Check keys, shapes, dtypes, label range and split sizes; raise HybridError naming the problem."""
    info = medmnist_info(flag)
    n_classes = len(info["label"])
    if not path.is_file():
        raise HybridError(
            f"Data file {path} {not_a_file(path)}; expected medmnist's {npz_name(flag, size)} "
            "(pass --data-root or set HYBRID_DATA_ROOT)."
        )
    try:
        npz = np.load(path)
        keys = set(npz.files)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise HybridError(f"Data file {path} is not a readable npz archive ({type(exc).__name__}); it may be truncated or corrupt.") from None
    with npz:
        for split in SPLITS:
            for kind in ("images", "labels"):
                if f"{split}_{kind}" not in keys:
                    raise HybridError(
                        f"Data file {path} has no '{split}_{kind}' array; expected keys "
                        f"train/val/test _images and _labels, found {sorted(keys)}."
                    )
            try:
                images = npz[f"{split}_images"]
                labels = npz[f"{split}_labels"]
            except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
                raise HybridError(f"Data file {path}: array '{split}_images' or '{split}_labels' cannot be read ({type(exc).__name__}); the file may be truncated or corrupt.") from None
            n = info["n_samples"][split]
            c = info["n_channels"]
            want = (n, size, size, c) if c == 3 else (n, size, size)
            if images.shape != want:
                raise HybridError(f"Data file {path}: '{split}_images' has shape {images.shape}; expected {want}.")
            if images.dtype != np.uint8:
                raise HybridError(f"Data file {path}: '{split}_images' has dtype {images.dtype}; expected uint8.")
            if labels.shape not in ((n, 1), (n,)):
                raise HybridError(f"Data file {path}: '{split}_labels' has shape {labels.shape}; expected ({n}, 1).")
            if not np.issubdtype(labels.dtype, np.integer):
                raise HybridError(f"Data file {path}: '{split}_labels' has dtype {labels.dtype}; expected integers.")
            if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
                raise HybridError(
                    f"Data file {path}: '{split}_labels' has values in [{labels.min()}, {labels.max()}]; "
                    f"expected 0..{n_classes - 1}."
                )


@dataclass
class Split:
    """One split: images uint8 (N, S, S, C), labels int64 (N,), index into the official split (N,)."""

    images: np.ndarray
    labels: np.ndarray
    index: np.ndarray
    metadata: object = None  # pandas DataFrame aligned with `index`, or None


@dataclass
class Dataset:
    flag: str
    size: int
    path: Path
    class_names: list[str]
    splits: dict[str, Split] = field(default_factory=dict)

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def n_channels(self) -> int:
        return self.splits["train"].images.shape[-1]


def load_dataset(flag: str = "dermamnist", size: int = 28, root=None, subset: int = 0,
                 metadata_root=None) -> Dataset:
    """Load and validate train/val/test with medmnist's dataset class.

    subset > 0 keeps the first `subset` images of each split (after validating the full file).
    HAM10000 metadata is joined by split index when available (DermaMNIST only).
    """
    import medmnist

    info = medmnist_info(flag)
    root, may_download = resolve_root(root, flag)
    path = root / npz_name(flag, size)
    if may_download and not path.is_file():
        download(flag, size, root)
    validate_npz(path, flag, size)
    cls = getattr(medmnist, info["python_class"])
    data = Dataset(flag, size, path, class_names(flag))
    meta = load_metadata(metadata_root) if flag == "dermamnist" else None
    for split in SPLITS:
        ds = cls(split=split, root=str(root), size=None if size == 28 else size, download=False)
        images = np.asarray(ds.imgs)
        if images.ndim == 3:
            images = images[..., None]
        labels = np.asarray(ds.labels).reshape(-1).astype(np.int64)
        index = np.arange(len(labels))
        if subset:
            images, labels, index = images[:subset], labels[:subset], index[:subset]
        split_meta = None
        if meta is not None:
            split_meta = meta[meta["split"] == split].set_index("index").reindex(index)
            if len(split_meta) != len(index) or split_meta["label"].isna().any():
                raise HybridError(f"HAM10000 split info does not cover every {split} index of {path}.")
            if (split_meta["label"].to_numpy() != labels).any():
                raise HybridError(
                    f"HAM10000 split info disagrees with the labels in {path} for split '{split}'; "
                    "the metadata and the npz are from different releases."
                )
        data.splits[split] = Split(images, labels, index, split_meta)
    return data


def default_metadata_root() -> Path | None:
    for p in (SHARED_DATA / "ham10000", Path.cwd().parent / "shared" / "data" / "ham10000"):
        if (p / "HAM10000_metadata.csv").is_file():
            return p
    return None


META_COLUMNS = ("lesion_id", "image_id", "dx", "dx_type", "age", "sex", "localization")


def load_metadata(root=None):
    """HAM10000 metadata joined to DermaMNIST (split, index); None when not available.

    Returns a DataFrame with columns split, index, label and META_COLUMNS.
    """
    import pandas as pd

    root = Path(root) if root else default_metadata_root()
    if root is None:
        return None
    meta_csv, split_csv = root / "HAM10000_metadata.csv", root / "dermamnist_split_info.csv"
    for p in (meta_csv, split_csv):
        if not p.is_file():
            raise HybridError(f"Metadata file {p} {not_a_file(p)}; expected HAM10000_metadata.csv and dermamnist_split_info.csv in {root}.")
    meta = pd.read_csv(meta_csv)
    split = pd.read_csv(split_csv)
    for p, df, cols in ((meta_csv, meta, META_COLUMNS), (split_csv, split, ("split", "index", "image_id", "label"))):
        missing = [c for c in cols if c not in df.columns]
        if missing:
            raise HybridError(f"Metadata file {p} has no column(s) {', '.join(missing)}; expected {', '.join(cols)}.")
    joined = split[["split", "index", "image_id", "label"]].merge(
        meta[list(META_COLUMNS)], on="image_id", how="left", validate="many_to_one"
    )
    if joined["lesion_id"].isna().any():
        n = int(joined["lesion_id"].isna().sum())
        raise HybridError(f"{n} image_id(s) of {split_csv} are missing from {meta_csv}.")
    return joined
