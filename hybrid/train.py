"""Train the backbone: seeded, resumable epoch by epoch, model chosen on validation AUC.

Stage code: takes arrays and a checkpoint store (anything with load() → dict | None and
save(dict)); paths live in hybrid.artifacts.
"""
from __future__ import annotations

import copy
import os

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from . import distributed as D
from .adapt import batchnorm_layers
from .augment import augment, dihedral_views, skin_swap, to_float
from .backbone import build_backbone, channels_last_trainable, from_config
from .errors import HybridError
from .metrics import auc_ovr, accuracy


def select_device(preference: str = "auto") -> torch.device:
    """CUDA → MPS → CPU when 'auto'; otherwise the named device, refused when this machine lacks it."""
    usable = {"cuda": torch.cuda.is_available(),
              "mps": bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()),
              "cpu": True}
    if preference == "auto":
        return torch.device(next(kind for kind, ok in usable.items() if ok))
    try:
        device = torch.device(preference)
    except RuntimeError:
        device = None
    if device is None or device.type not in usable:
        raise HybridError(f"Config 'train.device' is '{preference}'; expected auto, cpu, cuda (or cuda:N) or mps.")
    if not usable[device.type]:
        raise HybridError(f"Config 'train.device' is '{preference}', but torch {torch.__version__} sees no "
                          f"{device.type} device on this machine; use --device auto or cpu.")
    return device


def set_threads(threads: int = 0) -> int:
    """Intra-op CPU threads: all cores available to this process unless told otherwise."""
    if threads <= 0:
        threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    torch.set_num_threads(threads)
    return threads


def make_optimizer(model: torch.nn.Module, tc: dict) -> torch.optim.Optimizer:
    """AdamW (the default) or SGD with Nesterov momentum, at train.lr and train.weight_decay.

    The one-cycle schedule then cycles SGD's momentum (like AdamW's beta1) between 0.95 and 0.85;
    the 0.9 set here is only its starting value. SGD needs a peak learning rate ~30x AdamW's
    (e.g. 0.1 against 3e-3).
    """
    if tc["optimizer"] == "sgd":
        return torch.optim.SGD(model.parameters(), lr=tc["lr"], momentum=0.9, nesterov=True,
                               weight_decay=tc["weight_decay"])
    return torch.optim.AdamW(model.parameters(), lr=tc["lr"], weight_decay=tc["weight_decay"])


def class_weights(labels: np.ndarray, n_classes: int, mode: str) -> torch.Tensor:
    """Loss weights ∝ frequency^-p (p = 0 none, 0.5 sqrt, 1 balanced), normalised to mean 1 over samples."""
    p = {"none": 0.0, "sqrt": 0.5, "balanced": 1.0}[mode]
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    w = np.where(counts > 0, np.maximum(counts, 1) ** -p, 0.0)
    w = w / (w * counts).sum() * counts.sum()
    return torch.tensor(w, dtype=torch.float32)


def pixel_batch(batch_size: int, images_u8: np.ndarray) -> int:
    """Images per inference pass: `batch_size` counts 28-px images; larger images get proportionally
    fewer (the same pixels per pass), so 64- and 224-px inputs stream in bounded memory."""
    s = images_u8.shape[1] * images_u8.shape[2] if np.ndim(images_u8) >= 3 else 28 * 28
    return max(1, min(batch_size, batch_size * 28 * 28 // s))


def _inference_batches(model, images_u8: np.ndarray, batch_size: int, device):
    """Float batches (B, C, S, S) in [0, 1] on `device` (channels-last on the CPU), pixel_batch-sized;
    puts the model in eval mode."""
    model.eval()
    device = torch.device(device)
    step = pixel_batch(batch_size, images_u8)
    for i in range(0, len(images_u8), step):
        x = to_float(torch.from_numpy(np.ascontiguousarray(images_u8[i:i + step]))).to(device)
        yield x.contiguous(memory_format=torch.channels_last) if device.type == "cpu" else x


@torch.no_grad()
def predict_proba(model, images_u8: np.ndarray, batch_size: int = 128, tta: bool = False,
                  device: torch.device | str = "cpu") -> np.ndarray:
    """Softmax probabilities (N, K) for uint8 images (N, S, S, C); TTA averages the 8 dihedral views.
    batch_size: images per pass at 28 px (see pixel_batch)."""
    out = []
    for x in _inference_batches(model, images_u8, batch_size, device):
        views = list(dihedral_views(x)) if tta else [x]
        p = sum(F.softmax(model(v).float(), dim=1) for v in views) / len(views)
        out.append(p.cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, model.config["n_classes"]), np.float32)


@torch.no_grad()
def embed_and_proba(model, images_u8: np.ndarray, batch_size: int = 128, device="cpu") -> tuple[np.ndarray, np.ndarray]:
    """Embeddings (N, D) and softmax probabilities (N, K) from one forward pass (no TTA);
    batch_size: images per pass at 28 px (see pixel_batch)."""
    emb, proba = [], []
    for x in _inference_batches(model, images_u8, batch_size, device):
        e = model.embed(x)
        emb.append(e.float().cpu().numpy())
        proba.append(F.softmax(model.classify(e).float(), dim=1).cpu().numpy())
    k = model.config["n_classes"]
    return (np.concatenate(emb) if emb else np.zeros((0, model.embed_dim), np.float32),
            np.concatenate(proba) if proba else np.zeros((0, k), np.float32))


def channel_stats(model, images_u8: np.ndarray, batch: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std (+1e-6) of what the network sees — images in [0, 1] after
    model.preprocess — accumulated over batches so large inputs never sit in memory at once."""
    s = sq = 0.0
    n = 0
    with torch.no_grad():
        for i in range(0, len(images_u8), batch):
            x = model.preprocess(to_float(torch.from_numpy(images_u8[i:i + batch]))).double()
            s, sq, n = s + x.sum((0, 2, 3)), sq + (x * x).sum((0, 2, 3)), n + x[:, 0].numel()
    mean = s / n
    return mean.numpy(), ((sq / n - mean * mean).clamp_min(0).sqrt() + 1e-6).numpy()


def train_skin(images_u8: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lesion masks (N, S, S) bool and mean skin colour (N, 3) in [0, 1] of RGB uint8 images, for skin_swap."""
    from skimage.color import rgb2lab

    from .concepts import lesion_masks, skin_mean

    if images_u8.shape[-1] != 3:
        raise HybridError(f"Config 'train.augment.skin_swap' needs RGB images; these have {images_u8.shape[-1]} channel(s).")
    masks = lesion_masks(rgb2lab(images_u8))
    return masks, skin_mean(np.asarray(images_u8, np.float64) / 255.0, masks)


def _epoch_seed(seed: int, epoch: int) -> int:
    return seed * 100_003 + epoch


def ema_decay_at(step: int, decay: float, warmup: bool) -> float:
    """EMA decay at optimiser step `step` (0-based).

    With warmup (TensorFlow's ExponentialMovingAverage num_updates rule) the decay starts at 0.1 and
    rises to `decay`, so the random initial weights do not linger: without it, a 0.998 average still
    holds 0.998^t of them after t steps (11% after 1,100 steps, 20 epochs at batch 128).
    """
    return min(decay, (1 + step) / (10 + step)) if warmup else decay


def _ema_update(ema: dict, model: torch.nn.Module, decay: float) -> None:
    for k, v in model.state_dict().items():
        if v.dtype.is_floating_point:
            ema[k].mul_(decay).add_(v.detach(), alpha=1 - decay)
        else:
            ema[k].copy_(v)


def _loss(module, x, y, weights, smoothing: float, mix, cw: float, ct_batch):
    """Cross-entropy of one batch (+ mixup with mix = (lam, perm); + cw × concept MSE)."""
    ce = lambda logits, t: F.cross_entropy(logits.float(), t, weight=weights, label_smoothing=smoothing)
    if mix is not None:
        lam, j = mix
        logits = module(lam * x + (1 - lam) * x[j])
        return lam * ce(logits, y) + (1 - lam) * ce(logits, y[j])
    if cw > 0:
        logits, c_hat = module(x, with_concepts=True)
        return ce(logits, y) + cw * F.mse_loss(c_hat.float(), ct_batch)
    return ce(module(x), y)


def _sam_ascent(model, batch_loss, rho: float, scaler) -> list | None:
    """Sharpness-aware minimisation's first step (Foret et al. 2021): move the weights by
    rho · g / ‖g‖ along this batch's gradient g, so the next backward pass sees the loss at the
    worst nearby point. Runs on the bare module (under DDP each rank perturbs with its own shard's
    gradient, SAM's usual m-sharpness) and leaves BatchNorm's running statistics untouched.
    Returns the perturbations to undo (None if the gradient was not finite, e.g. an AMP overflow)."""
    bns = batchnorm_layers(model)
    saved = [m.momentum for m in bns]
    for m in bns:
        m.momentum = 0.0  # running = (1 - 0) · running + 0 · batch: unchanged
    try:
        params = [p for p in model.parameters() if p.requires_grad]
        grads = torch.autograd.grad(scaler.scale(batch_loss(model)), params, allow_unused=True)
    finally:
        for m, mom in zip(bns, saved):
            m.momentum = mom
    pairs = [(p, g.float() / scaler.get_scale() if scaler.is_enabled() else g.float())
             for p, g in zip(params, grads) if g is not None]
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for _, g in pairs]))
    if not torch.isfinite(norm) or norm == 0:
        return None
    eps = []
    with torch.no_grad():
        for p, g in pairs:
            e = (g * (rho / (norm + 1e-12))).to(p.dtype)
            p.add_(e)
            eps.append((p, e))
    return eps


def _sam_descend(eps: list) -> None:
    """Undo _sam_ascent's perturbation; the gradients taken at the perturbed point stay for the step."""
    with torch.no_grad():
        for p, e in eps:
            p.sub_(e)


class NullStore:
    """A checkpoint store that keeps nothing (no resume)."""

    def load(self):
        return None

    def save(self, state):
        pass


class MemoryStore:
    """A checkpoint store in memory (tests, notebooks): keeps a deep copy of the last state."""

    def __init__(self):
        self.state = None

    def load(self):
        return copy.deepcopy(self.state)

    def save(self, state):
        self.state = copy.deepcopy(state)


def train_backbone(train_x: np.ndarray, train_y: np.ndarray, val_x: np.ndarray, val_y: np.ndarray,
                   n_classes: int, cfg: dict, store=None, progress: bool = True, stop_after: int | None = None,
                   concept_targets: np.ndarray | None = None):
    """Train a DermaCNN on uint8 images (N, S, S, C) and int labels (N,).

    With train.concept_weight > 0 a concept head is trained jointly: concept_targets (N, C), the
    measured concepts of the unaugmented train images, standardised; the loss adds weight × their
    mean squared error (flips and 90° rotations leave the concepts unchanged, a 2-px shift nearly so).

    With train.sam_rho > 0 each step is sharpness-aware (two forward-backward passes, see
    _sam_ascent); the logged train loss is then the loss at the perturbed weights.

    cfg: the full config (sections 'run', 'model', 'train'). Each finished epoch is saved to
    `store`; if `store` holds a checkpoint, training continues from it and reaches the same
    weights as an uninterrupted run (every epoch's randomness is derived from (seed, epoch)).
    stop_after: stop after that many epochs in total (to simulate an interruption in tests).

    Returns (model with the best-validation-AUC weights, on CPU; history: list of per-epoch dicts;
    info dict with best epoch, device, threads).
    """
    tc, mc, seed = cfg["train"], cfg["model"], cfg["run"]["seed"]
    store = store or NullStore()
    device = D.device_for(select_device(tc["device"]))
    threads = tc["threads"]
    if threads <= 0 and D.world_size() > 1 and device.type == "cpu":
        threads = D.cpu_threads_share(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    threads = set_threads(threads)
    progress = progress and D.rank() == 0
    use_amp = bool(tc["amp"]) and device.type == "cuda"
    torch.manual_seed(seed)
    np.random.seed(seed)
    size, channels = train_x.shape[1], train_x.shape[-1]
    model = build_backbone(n_classes, channels, size, mc["width"], mc["blocks_per_stage"], mc["dropout"],
                           mc["head"], mc["embed_dim"], mc["colour_constancy"], mc["arch"])
    model.set_normalization(*channel_stats(model, train_x))
    cw = tc["concept_weight"]
    if cw > 0:
        if concept_targets is None or len(concept_targets) != len(train_x):
            raise ValueError("train.concept_weight > 0 needs concept_targets, one row per train image.")
        ct = np.asarray(concept_targets, np.float64)
        ct = torch.tensor((ct - ct.mean(0)) / (ct.std(0) + 1e-8), dtype=torch.float32, device=device)
        model.attach_concept_head(ct.shape[1])
    model.to(device)
    channels_last = device.type == "cpu" and channels_last_trainable(model)  # faster on a CPU, where safe
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    net = D.wrap(model, device)  # DDP under torchrun; `model` itself otherwise (shares parameters)

    steps_per_epoch = int(np.ceil(len(train_x) / tc["batch_size"]))
    opt = make_optimizer(model, tc)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=tc["lr"], epochs=tc["epochs"],
                                                steps_per_epoch=steps_per_epoch, pct_start=0.25)
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    weights = class_weights(train_y, n_classes, tc["class_weight"]).to(device)
    ema = copy.deepcopy(model.state_dict()) if tc["ema_decay"] > 0 else None

    start, history = 0, []
    best = {"auc": -1.0, "epoch": -1, "state": None}
    ckpt = store.load()
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        scaler.load_state_dict(ckpt["scaler"])
        if ema is not None:
            ema = ckpt["ema"]
        start, history, best = ckpt["epoch"], ckpt["history"], ckpt["best"]

    images = torch.from_numpy(np.ascontiguousarray(train_x)).to(device)
    labels = torch.from_numpy(train_y.astype(np.int64)).to(device)
    aug = tc["augment"]
    if aug["skin_swap"] > 0:
        masks, skin_rgb = train_skin(train_x)
        masks, skin_rgb = torch.from_numpy(masks).to(device), torch.from_numpy(skin_rgb).float().to(device)
    eval_model = copy.deepcopy(model) if ema is not None else model
    for epoch in range(start, tc["epochs"]):
        if stop_after is not None and epoch >= stop_after:
            break
        g = torch.Generator().manual_seed(_epoch_seed(seed, epoch))
        torch.manual_seed(_epoch_seed(seed, epoch))  # dropout
        net.train()
        perm = torch.randperm(len(images), generator=g).to(device)
        total, n_seen = 0.0, 0
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{tc['epochs']}", leave=False,
                   disable=None if progress else True, unit="batch")
        for s in bar:
            idx = perm[s * tc["batch_size"]:(s + 1) * tc["batch_size"]]
            x = to_float(images[idx])
            if aug["skin_swap"] > 0:
                x = skin_swap(x, masks[idx], skin_rgb[idx], g, aug["skin_swap"])
            x = augment(x, g, aug["flip"], aug["rot90"], aug["crop_pad"], aug["jitter"],
                        aug["acquisition"], aug["cutout"])
            y = labels[idx]
            x, y = D.shard(x), D.shard(y)  # the whole batch was drawn and augmented alike on every rank
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            mix = None
            if tc["mixup_alpha"] > 0:
                lam = float(torch.distributions.Beta(tc["mixup_alpha"], tc["mixup_alpha"]).sample())
                mix = (lam, torch.randperm(len(x), generator=g).to(device))
            ct_batch = D.shard(ct[idx]) if cw > 0 else None

            def batch_loss(module):
                with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
                    return _loss(module, x, y, weights, tc["label_smoothing"], mix, cw, ct_batch)

            opt.zero_grad(set_to_none=True)
            eps = _sam_ascent(model, batch_loss, tc["sam_rho"], scaler) if tc["sam_rho"] > 0 else None
            loss = batch_loss(net)
            scaler.scale(loss).backward()
            if eps is not None:
                _sam_descend(eps)
            scaler.step(opt)
            scaler.update()
            sched.step()
            if ema is not None:
                _ema_update(ema, model, ema_decay_at(epoch * steps_per_epoch + s, tc["ema_decay"], tc["ema_warmup"]))
            total += float(loss.detach()) * len(y)
            n_seen += len(y)
            bar.set_postfix(loss=f"{total / n_seen:.4f}")
        if ema is not None:
            eval_model.load_state_dict(ema)
        val_p = predict_proba(eval_model.fused(), val_x, tc["eval_batch_size"], False, device)  # TTA only at the end: 8× cheaper
        val_auc, val_acc = auc_ovr(val_y, val_p), accuracy(val_y, val_p)
        history.append({"epoch": epoch + 1, "train_loss": total / max(n_seen, 1),
                        "val_auc": val_auc, "val_acc": val_acc, "lr": float(sched.get_last_lr()[0])})
        if best["state"] is None or val_auc > best["auc"]:
            best = {"auc": val_auc, "epoch": epoch + 1,
                    "state": {k: v.detach().cpu().clone() for k, v in eval_model.state_dict().items()}}
        if progress:
            tqdm.write(f"epoch {epoch + 1}/{tc['epochs']}: loss {total / max(n_seen, 1):.4f}  "
                       f"val AUC {val_auc:.4f}  val ACC {val_acc:.4f}" + ("  *" if best["epoch"] == epoch + 1 else ""))
        store.save({
            "epoch": epoch + 1, "model": model.state_dict(), "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(), "scaler": scaler.state_dict(), "ema": ema,
            "history": history, "best": best,
        })
    final = from_config(model.config)
    final.load_state_dict(best["state"] if best["state"] is not None else model.state_dict())
    final.eval()
    info = {"best_epoch": best["epoch"], "best_val_auc": best["auc"], "device": str(device),
            "threads": threads, "amp": use_amp, "epochs_done": len(history)}
    return final, history, info
