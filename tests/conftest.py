"""Shared fixtures: the real data beside the project, and small configs for fast runs."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hybrid.config import load_config
from hybrid.data import SHARED_DATA

PROJECT = Path(__file__).resolve().parents[1]
DERMA = SHARED_DATA / "dermamnist"


@pytest.fixture(scope="session")
def data_root() -> Path:
    if not (DERMA / "dermamnist.npz").is_file():
        pytest.skip(f"real DermaMNIST not found at {DERMA}")
    return DERMA


@pytest.fixture(scope="session")
def real_npz(data_root) -> dict:
    with np.load(data_root / "dermamnist.npz") as z:
        return {k: z[k] for k in z.files}


def tiny_config(*extra: str) -> dict:
    """The quick preset shrunk to seconds: 600 images per split, a width-8 CNN."""
    return load_config(PROJECT / "configs" / "quick.toml",
                       ["data.subset=600", "train.epochs=2", "model.width=8", "train.batch_size=64",
                        "metrics.n_bootstrap=50", "train.threads=2", *extra])


def tiny_cli_args(epochs: int, n_bootstrap: int) -> list[str]:
    """`hybrid train` options for the quick preset shrunk to seconds: 600 images per split, a width-8 CNN."""
    sets = ["data.subset=600", "model.width=8", f"train.epochs={epochs}", f"metrics.n_bootstrap={n_bootstrap}"]
    return ["--config", str(PROJECT / "configs/quick.toml"), "--quiet", *[a for s in sets for a in ("--set", s)]]


def train_tiny_run(tmp_path_factory, data_root: Path, args: list[str]) -> Path:
    """Train a tiny run through the CLI in a fresh runs folder; returns its run folder."""
    from hybrid.cli import main

    runs = tmp_path_factory.mktemp("runs")
    assert main(["train", *args, "--data-root", str(data_root), "--runs-dir", str(runs)]) == 0
    return runs / "quick"


def tampered_copy(run: Path, dest: Path, relpath: str) -> Path:
    """A copy of run folder `run` at `dest` with one byte appended to `relpath` (its sha256 no longer matches)."""
    import shutil

    shutil.copytree(run, dest)
    with open(dest / relpath, "ab") as f:
        f.write(b"\0")
    return dest
