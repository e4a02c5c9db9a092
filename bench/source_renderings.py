#!/usr/bin/env python
"""Does re-rendering the 28-px train images from their 200×150 HAM10000 sources help the backbone?

DermaMNIST-28 is each source image resized to 28×28 (PIL bicubic, full field, no crop). This
experiment adds K more renderings of every *train* image: a random square-aspect crop of the source
covering a fraction s ~ U(smin, 1) of each side at a random (sub-pixel) offset, resized the same way.
They carry pixel information the one official rendering lost (other sampling phases, mild zoom).
Val and test stay the official files, so the numbers compare with the default preset directly.

The pool of (K + 1) × 7,007 images is trained for round(epochs / (K + 1)) epochs, so the run makes
the default's number of optimiser steps (same one-cycle schedule length, same EMA). Selection is
on validation AUC; test is reported. Only train-split sources are read (no val/test image is used).

    python bench/source_renderings.py --variants 5 --seed 0

Prints one markdown row (and writes the model's metrics to --out as JSON).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from hybrid.config import load_config  # noqa: E402
from hybrid.data import default_metadata_root, load_dataset  # noqa: E402
from hybrid.metrics import accuracy, auc_ovr  # noqa: E402
from hybrid.source_images import _open  # noqa: E402  (image_id → JPEG, tar or folder)
from hybrid.train import predict_proba, train_backbone  # noqa: E402


def renderings(image_ids, size: int, k: int, smin: float, seed: int) -> np.ndarray:
    """uint8 (k, N, size, size, 3): k random crop-and-resize renderings of each source image."""
    from PIL import Image
    from tqdm import tqdm

    rng = np.random.default_rng(seed)
    get, tar = _open(default_metadata_root())
    out = np.empty((k, len(image_ids), size, size, 3), np.uint8)
    for n, image_id in enumerate(tqdm(image_ids, desc="render", unit="img")):
        with get(image_id) as f:
            im = Image.open(f).convert("RGB")
            im.load()
        w, h = im.size
        for j in range(k):
            s = rng.uniform(smin, 1.0)
            x0, y0 = rng.uniform(0, (1 - s) * w), rng.uniform(0, (1 - s) * h)
            out[j, n] = np.asarray(im.resize((size, size), Image.BICUBIC, box=(x0, y0, x0 + s * w, y0 + s * h)))
    if tar is not None:
        tar.close()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="configs/default.toml")
    ap.add_argument("--variants", type=int, default=5)
    ap.add_argument("--smin", type=float, default=0.85, help="smallest crop side, as a fraction of the source")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    cfg = load_config(ROOT / args.config, [f"run.seed={args.seed}"])
    data = load_dataset("dermamnist", cfg["data"]["size"])
    tr, va, te = (data.splits[s] for s in ("train", "val", "test"))
    t0 = time.perf_counter()
    extra = renderings(list(tr.metadata["image_id"]), cfg["data"]["size"], args.variants, args.smin, args.seed)
    t_render = time.perf_counter() - t0
    pool_x = np.concatenate([tr.images, *extra])
    pool_y = np.tile(tr.labels, args.variants + 1)
    epochs = cfg["train"]["epochs"]
    cfg["train"]["epochs"] = max(1, round(epochs / (args.variants + 1)))
    t0 = time.perf_counter()
    model, history, info = train_backbone(pool_x, pool_y, va.images, va.labels, data.n_classes, cfg)
    t_train = time.perf_counter() - t0
    res = {"variants": args.variants, "smin": args.smin, "seed": args.seed, "epochs": cfg["train"]["epochs"],
           "render_s": round(t_render, 1), "train_s": round(t_train, 1),
           "best_val_auc": max(h["val_auc"] for h in history)}
    for tta in (False, True):
        p = predict_proba(model, te.images, tta=tta)
        res[f"test_acc{'_tta' if tta else ''}"] = accuracy(te.labels, p)
        res[f"test_auc{'_tta' if tta else ''}"] = auc_ovr(te.labels, p)
    print("| K | s min | seed | epochs | render s | train s | best val AUC | test ACC / AUC | with TTA |")
    print(f"| {args.variants} | {args.smin} | {args.seed} | {res['epochs']} | {res['render_s']:.0f} | {res['train_s']:.0f} | "
          f"{res['best_val_auc']:.4f} | {res['test_acc']:.3f} / {res['test_auc']:.3f} | "
          f"{res['test_acc_tta']:.3f} / {res['test_auc_tta']:.3f} |")
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
