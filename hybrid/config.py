"""Run configuration: TOML presets merged over defaults, unknown keys rejected."""
from __future__ import annotations

import copy
import tomllib
from pathlib import Path

from .errors import HybridError, not_a_file

DEFAULTS: dict = {
    "run": {"name": "default", "seed": 0},
    "data": {
        "flag": "dermamnist",  # any MedMNIST 2D multi-class set by its medmnist flag
        "size": 28,  # 28, 64, 128 or 224 (medmnist's sizes)
        "root": "",  # empty: resolve (see hybrid.data.resolve_root)
        "metadata_root": "",  # empty: ../shared/data/ham10000 when present
        "subset": 0,  # >0: keep the first N images of each split (demos, tests)
        # planted shortcut (hybrid.shortcut): stamp an artifact on the train images of one class
        "stamp": {"kind": "",  # "" (off) | ruler | dot | patch
                  "class": 4,  # the class whose images carry it (DermaMNIST: 4 = melanoma)
                  "fraction": 0.9,  # share of that class stamped
                  "fraction_other": 0.05},  # share of every other class stamped
    },
    "model": {"arch": "resnet",  # resnet | plain (the VGG-style CNN of the floor; hybrid.backbone)
              "width": 32, "blocks_per_stage": 2, "dropout": 0.2,
              "head": "avg",  # avg: global average pooling | grid: 3×3 layout → linear → ReLU
              "embed_dim": 256,  # embedding size of the grid head
              "colour_constancy": 0},  # >0: Shades of Gray with this Minkowski norm (6), at train and test time
    "train": {
        "epochs": 30,
        "batch_size": 128,
        "optimizer": "adamw",  # adamw | sgd (Nesterov; momentum cycled 0.95-0.85 by the one-cycle schedule)
        "lr": 3e-3,  # peak learning rate of the one-cycle schedule
        "weight_decay": 5e-4,
        "label_smoothing": 0.1,
        "class_weight": "sqrt",  # none | sqrt | balanced: loss weight ∝ freq^-0 / ^-0.5 / ^-1
        "ema_decay": 0.0,  # >0: evaluate and keep an exponential moving average of weights
        "ema_warmup": False,  # decay min(ema_decay, (1+t)/(10+t)) at step t: no lag behind the random init
        "mixup_alpha": 0.0,  # >0: mixup with Beta(alpha, alpha) mixing weights
        "sam_rho": 0.0,  # >0: sharpness-aware minimisation with this neighbourhood radius (two passes a step)
        "concept_weight": 0.0,  # >0: joint concept head, + weight × MSE to the standardised measured concepts
        "augment": {"flip": True, "rot90": True, "crop_pad": 2, "jitter": 0.1,
                    "acquisition": 0.0,  # >0: camera/dermoscope shift strength (hybrid.augment.acquisition_shift)
                    "cutout": 0.0,  # >0: cutout square side as a fraction of the image (hybrid.augment.cutout_patch)
                    "skin_swap": 0.0},  # >0: share of images whose skin takes another's colour (hybrid.augment.skin_swap)
        "tta": True,  # average the 8 flips/rotations at evaluation
        "device": "auto",  # auto | cpu | cuda | mps
        "amp": True,  # mixed precision, used on CUDA only
        "threads": 0,  # CPU threads; 0: all cores
        "eval_batch_size": 128,  # inference batch; ~128 keeps activations in cache (faster than 512 on a CPU)
    },
    "metrics": {"n_bootstrap": 1000, "ece_bins": 15},  # n_bootstrap: resamples for every interval of a run
    "explain": {"n": 200},  # test images in the fixed faithfulness sample
    # the clinical operating point (hybrid.operating): temperature and threshold fitted on val only
    "operating_point": {"positive_class": 4,  # DermaMNIST: 4 = melanoma
                        "negative_class": 5,  # 5 = melanocytic nevus (the binary mel-vs-nv view)
                        "target_sensitivity": 0.80},
}


# numeric settings with a meaningful range: key → (what is expected, test)
RANGES: dict = {
    "data.subset": ("≥ 0 (0: every image)", lambda v: v >= 0),
    "data.stamp.fraction": ("a share in [0, 1]", lambda v: 0 <= v <= 1),
    "data.stamp.fraction_other": ("a share in [0, 1]", lambda v: 0 <= v <= 1),
    "model.width": ("≥ 1", lambda v: v >= 1),
    "model.blocks_per_stage": ("≥ 1", lambda v: v >= 1),
    "model.dropout": ("a probability in [0, 1)", lambda v: 0 <= v < 1),
    "model.embed_dim": ("≥ 1", lambda v: v >= 1),
    "model.colour_constancy": ("≥ 0 (0: off; 6 for Shades of Gray)", lambda v: v >= 0),
    "train.epochs": ("≥ 1", lambda v: v >= 1),
    "train.batch_size": ("≥ 1", lambda v: v >= 1),
    "train.eval_batch_size": ("≥ 1", lambda v: v >= 1),
    "train.lr": ("> 0", lambda v: v > 0),
    "train.weight_decay": ("≥ 0", lambda v: v >= 0),
    "train.label_smoothing": ("in [0, 1)", lambda v: 0 <= v < 1),
    "train.ema_decay": ("in [0, 1) (0: off)", lambda v: 0 <= v < 1),
    "train.mixup_alpha": ("≥ 0 (0: off)", lambda v: v >= 0),
    "train.sam_rho": ("≥ 0 (0: off)", lambda v: v >= 0),
    "train.concept_weight": ("≥ 0 (0: off)", lambda v: v >= 0),
    "train.threads": ("≥ 0 (0: all cores)", lambda v: v >= 0),
    "train.augment.crop_pad": ("≥ 0 pixels", lambda v: v >= 0),
    "train.augment.jitter": ("≥ 0", lambda v: v >= 0),
    "train.augment.acquisition": ("≥ 0 (0: off)", lambda v: v >= 0),
    "train.augment.cutout": ("a fraction of the image in [0, 1)", lambda v: 0 <= v < 1),
    "train.augment.skin_swap": ("a probability in [0, 1]", lambda v: 0 <= v <= 1),
    "metrics.n_bootstrap": ("≥ 1", lambda v: v >= 1),
    "metrics.ece_bins": ("≥ 1", lambda v: v >= 1),
    "explain.n": ("≥ 1", lambda v: v >= 1),
    "operating_point.target_sensitivity": ("a sensitivity in (0, 1]", lambda v: 0 < v <= 1),
}


def _get(cfg: dict, key: str):
    for part in key.split("."):
        cfg = cfg[part]
    return cfg


def _merge(base: dict, new: dict, where: str, source: str) -> dict:
    out = copy.deepcopy(base)
    for key, value in new.items():
        if key not in base:
            raise HybridError(
                f"{source}: unknown key '{where}{key}'; expected one of {sorted(base)}."
            )
        if isinstance(base[key], dict):
            if not isinstance(value, dict):
                raise HybridError(f"{source}: '{where}{key}' must be a table, got {value!r}.")
            out[key] = _merge(base[key], value, f"{where}{key}.", source)
        else:
            want = type(base[key])
            if want is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if not isinstance(value, want) or (want is int and isinstance(value, bool)):
                raise HybridError(
                    f"{source}: '{where}{key}' must be {want.__name__}, got {value!r}."
                )
            out[key] = value
    return out


def with_defaults(cfg: dict, base: dict | None = None) -> dict:
    """cfg with every key it lacks taken from DEFAULTS — a run saved before a key existed compares
    equal to the same run today, since the key's default is what it used."""
    base = DEFAULTS if base is None else base
    out = copy.deepcopy(cfg)
    for k, v in base.items():
        if k not in out:
            out[k] = copy.deepcopy(v)
        elif isinstance(v, dict) and isinstance(out[k], dict):
            out[k] = with_defaults(out[k], v)
    return out


def _parse_override(text: str) -> dict:
    """'train.epochs=3' → {'train': {'epochs': 3}}; the value is read as TOML."""
    if "=" not in text:
        raise HybridError(f"--set '{text}': expected KEY=VALUE, e.g. train.epochs=3.")
    key, raw = text.split("=", 1)
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw  # a bare word: a string
    out: dict = {}
    node = out
    parts = key.strip().split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    node[parts[-1]] = value
    return out


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> dict:
    """Defaults, then the TOML file at `path`, then `overrides` ('section.key=value')."""
    cfg = copy.deepcopy(DEFAULTS)
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise HybridError(f"Config file {path} {not_a_file(path)}; expected a TOML preset such as configs/default.toml.")
        try:
            data = tomllib.loads(path.read_text())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise HybridError(f"Config file {path} is not valid TOML ({exc}).") from None
        cfg = _merge(cfg, data, "", str(path))
    for text in overrides or []:
        cfg = _merge(cfg, _parse_override(text), "", f"--set {text}")
    if cfg["train"]["class_weight"] not in ("none", "sqrt", "balanced"):
        raise HybridError("Config 'train.class_weight' must be one of none, sqrt, balanced.")
    if cfg["model"]["arch"] not in ("resnet", "plain"):
        raise HybridError("Config 'model.arch' must be one of resnet, plain.")
    if cfg["train"]["optimizer"] not in ("adamw", "sgd"):
        raise HybridError("Config 'train.optimizer' must be one of adamw, sgd.")
    if cfg["train"]["concept_weight"] > 0 and cfg["train"]["mixup_alpha"] > 0:
        raise HybridError("Config: train.concept_weight and train.mixup_alpha cannot both be set "
                          "(a mixed image has no measured concepts).")
    for key, (expected, ok) in RANGES.items():
        value = _get(cfg, key)
        if not ok(value):
            raise HybridError(f"Config '{key}' must be {expected}, got {value}.")
    if cfg["data"]["size"] not in (28, 64, 128, 224):
        raise HybridError(f"Config 'data.size' must be 28, 64, 128 or 224 (medmnist's sizes), got {cfg['data']['size']}.")
    return cfg
