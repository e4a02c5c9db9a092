"""A transfer set for distillation: more images for the CNN to label than the 7,007 train ones.

A surrogate imitates the CNN only where it has seen the CNN's answers. Each train image is copied
COPIES times with the training augmentation (flips, 90° rotations, a 2-px reflect shift) plus a mild
brightness/contrast/saturation jitter of ±JITTER — the jitter moves the colour concepts, so the
surrogate also sees how the CNN's answer changes with colour. The CNN labels every copy and the
concepts are measured on it, exactly as on a real image (Craven & Shavlik's TREPAN queries the
teacher the same way). Only train images are copied; val (model choice) and test stay untouched.

Measured on the default preset, seeds 0–2 (bench/results_transfer_set.md): the concept XGBoost's
test κ with the CNN rises from 0.667 ± 0.029 to 0.721 ± 0.013 (29 mask concepts); the logistic surrogate
does not gain on val, so it stays fitted on the train images alone. With the 41 concepts the depth-≤ 6 tree
gains on val for every run and feature set (bench/results_transfer_tree.md), so it is fitted on the copies too.
"""
from __future__ import annotations

import numpy as np
import torch

from .augment import augment, to_float
from .concepts import measure_concepts
from .train import embed_and_proba

COPIES = 5  # augmented copies per train image (k = 10 gained < 0.01 κ on val for twice the cost)
JITTER = 0.1  # ± brightness/contrast/saturation; 0 gained half as much, 0.2 the same as 0.1 (val)


def augmented_copies(images: np.ndarray, copies: int = COPIES, jitter: float = JITTER, seed: int = 0,
                     acquisition: float = 0.0) -> np.ndarray:
    """uint8 (copies·N, S, S, 3): `copies` augmented copies of uint8 images (N, S, S, 3), copy-major;
    acquisition > 0 adds hybrid.augment.acquisition_shift (colour cast, gamma, zoom, blur, vignette)."""
    g = torch.Generator().manual_seed(seed)
    x = to_float(torch.from_numpy(np.ascontiguousarray(images)))
    out = [augment(x, g, crop_pad=2, jitter=jitter, acquisition=acquisition) for _ in range(copies)]
    if not out:
        return np.zeros((0, *images.shape[1:]), np.uint8)
    return torch.cat(out).permute(0, 2, 3, 1).mul(255).round().clamp(0, 255).byte().numpy()


def cnn_answers(model, views: np.ndarray) -> dict:
    """What the CNN says about uint8 images (M, S, S, 3) and what is measured on them: embeddings (M, D),
    proba (M, K), pred (M,), concepts (M, C)."""
    emb, proba = embed_and_proba(model, views)
    return {"embeddings": emb, "proba": proba.astype(np.float32), "pred": proba.argmax(1).astype(np.int64),
            "concepts": measure_concepts(views, n_jobs=-1)}


def transfer_table(model, images: np.ndarray, copies: int = COPIES, jitter: float = JITTER, seed: int = 0,
                   bar=None) -> dict:
    """`cnn_answers` on augmented copies of `images`, plus source (M,): the row of `images` each copy
    was made from; M = copies · N. `bar` (a tqdm bar, optional) advances by N after each round of copies."""
    views = augmented_copies(images, copies, jitter, seed)
    parts = []
    for chunk in np.split(views, copies):  # one round of copies at a time (views are copy-major)
        parts.append(cnn_answers(model, chunk))
        if bar is not None:
            bar.update(len(chunk))
    table = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
    table["source"] = np.tile(np.arange(len(images)), copies).astype(np.int64)
    return table
