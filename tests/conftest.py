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
