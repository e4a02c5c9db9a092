"""Pixel attributions for the CNN, one call shape for every method (after Captum's `attribute`).

    attr = attribute(model, x, target, method="integrated_gradients", n_steps=32)

`x` is a float tensor (N, C, H, W) of images in [0, 1] (the backbone normalises internally);
`target` is (N,) class indices; the result is a tensor shaped like `x`, in units of the logit of
`target` per unit input (gradient, SmoothGrad) or of logit (Integrated Gradients, expected
gradients, Grad-CAM — these sum approximately to a logit difference over the image).
`to_map` reduces it to one map per image (N, H, W) that faithfulness metrics rank.

All methods fold their samples (noise draws, path steps, background references) into the batch
dimension, so one forward+backward pass serves many samples; `max_batch` bounds the samples in
one pass and `batch_for_memory` derives it from a RAM budget. Captum and shap are the reference
implementations the tests hold these to (tests/test_attribution.py).
"""
from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F

from .augment import to_float

# samples per forward+backward pass: 64 ran fastest for every method on 2 CPU cores at 28 px (activations
# stay in cache; 256 ran 8–18% slower, 512 up to 30%: the sweep printed by bench/bench_attribution.py)
MAX_BATCH = 64
METHODS = ("gradient", "smoothgrad", "integrated_gradients", "gradcam", "expected_gradients", "random")
# how each method's (N, C, H, W) attribution becomes one map: magnitude for raw gradients, signed
# evidence (summed over channels) for path methods and Grad-CAM.
MAP_REDUCTION = {"gradient": "abs", "smoothgrad": "abs", "integrated_gradients": "sum",
                 "gradcam": "sum", "expected_gradients": "sum", "random": "sum"}
LABELS = {"gradient": "Gradient", "smoothgrad": "SmoothGrad", "integrated_gradients": "Integrated Gradients",
          "gradcam": "Grad-CAM", "expected_gradients": "SHAP (expected gradients)", "random": "Random (floor)"}


@contextmanager
def frozen(model: torch.nn.Module):
    """Eval mode with parameter gradients off: backward then computes input gradients only (~2x cheaper)."""
    was_training = model.training
    flags = [p.requires_grad for p in model.parameters()]
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        yield model
    finally:
        for p, f in zip(model.parameters(), flags):
            p.requires_grad_(f)
        model.train(was_training)


def _target_grad(model, inputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """d logit[target] / d inputs for a batch (B, C, H, W); target (B,). Channels-last on the CPU
    (measured ~1.7x faster here for this CNN)."""
    inputs = inputs.detach()
    if inputs.device.type == "cpu":
        inputs = inputs.contiguous(memory_format=torch.channels_last)
    inputs.requires_grad_(True)
    out = model(inputs)
    sel = out.gather(1, target.view(-1, 1)).sum()
    (g,) = torch.autograd.grad(sel, inputs)
    return g


def activation_bytes(model, shape: tuple[int, int, int], device="cpu") -> int:
    """Bytes of float32 activations one sample of `shape` (C, H, W) produces in a forward pass
    (sum over every module's output); backward roughly doubles it."""
    total = [0]

    def hook(_m, _i, out):
        if isinstance(out, torch.Tensor):
            total[0] += out.numel() * out.element_size()

    handles = [m.register_forward_hook(hook) for m in model.modules() if not list(m.children())]
    try:
        with torch.no_grad(), frozen(model):
            model(torch.zeros((1, *shape), device=device))
    finally:
        for h in handles:
            h.remove()
    return total[0]


def batch_for_memory(model, shape: tuple[int, int, int], memory_mb: float = 1024, device="cpu") -> int:
    """Samples per forward+backward pass that keep activations, their gradients and the inputs
    within `memory_mb` MiB (factor 3 on the forward activations; measured peak RSS is in bench/)."""
    per = 3 * activation_bytes(model, shape, device) + 3 * int(np.prod(shape)) * 4
    return max(1, int(memory_mb * 2**20 // per))


def _expand(t: torch.Tensor, k: int) -> torch.Tensor:
    """(B, ...) → (k*B, ...) sample-major: rows [s*B + b]."""
    return t.unsqueeze(0).expand(k, *t.shape).reshape(k * t.shape[0], *t.shape[1:])


def _chunks(n: int, per_image: int, max_batch: int):
    step = max(1, max_batch // per_image)
    for lo in range(0, n, step):
        yield slice(lo, min(n, lo + step))


def gradient(model, x, target, max_batch: int = MAX_BATCH, **_):
    """Vanilla gradient (Simonyan et al. 2014), signed; Captum's Saliency(abs=False)."""
    out = torch.empty_like(x)
    for sl in _chunks(len(x), 1, max_batch):
        out[sl] = _target_grad(model, x[sl], target[sl])
    return out


def smoothgrad(model, x, target, n_samples: int = 16, noise: float = 0.15, seed: int = 0,
               noise_draws: torch.Tensor | None = None, max_batch: int = MAX_BATCH, **_):
    """SmoothGrad (Smilkov et al. 2017): mean gradient over inputs + N(0, noise²) (noise in [0, 1]
    image units). `noise_draws` (n_samples, N, C, H, W) replaces the seeded draws."""
    if noise_draws is None:
        g = torch.Generator().manual_seed(seed)
        noise_draws = torch.randn((n_samples, *x.shape), generator=g) * noise
    k = noise_draws.shape[0]
    out = torch.empty_like(x)
    for sl in _chunks(len(x), k, max_batch):
        xb, b = x[sl], x[sl].shape[0]
        noisy = (_expand(xb, k) + noise_draws[:, sl].to(x.device).reshape(k * b, *x.shape[1:]))
        g = _target_grad(model, noisy, _expand(target[sl], k))
        out[sl] = g.view(k, b, *x.shape[1:]).mean(0)
    return out


def _gauss_legendre(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights on [0, 1] (Captum's default 'gausslegendre' rule)."""
    nodes, weights = np.polynomial.legendre.leggauss(n)
    return (nodes + 1) / 2, weights / 2


def integrated_gradients(model, x, target, baselines: torch.Tensor | float = 0.0, n_steps: int = 32,
                         max_batch: int = MAX_BATCH, **_):
    """Integrated Gradients (Sundararajan et al. 2017) on the straight path from `baselines`
    (default black) with an n-step Gauss–Legendre rule, as Captum's default."""
    base = torch.as_tensor(baselines, dtype=x.dtype, device=x.device).expand_as(x)
    alphas, w = _gauss_legendre(n_steps)
    a = torch.as_tensor(alphas, dtype=x.dtype, device=x.device).view(-1, 1, 1, 1, 1)
    wt = torch.as_tensor(w, dtype=x.dtype, device=x.device).view(-1, 1, 1, 1, 1)
    out = torch.empty_like(x)
    for sl in _chunks(len(x), n_steps, max_batch):
        xb, bb = x[sl], base[sl]
        b = xb.shape[0]
        path = (bb.unsqueeze(0) + a * (xb - bb).unsqueeze(0)).reshape(n_steps * b, *x.shape[1:])
        g = _target_grad(model, path, _expand(target[sl], n_steps)).view(n_steps, b, *x.shape[1:])
        out[sl] = (g * wt).sum(0) * (xb - bb)
    return out


def gradcam(model, x, target, max_batch: int = MAX_BATCH, **_):
    """Grad-CAM (Selvaraju et al. 2017) on the last convolutional stage, ReLU'd, bilinearly
    upsampled to the input and spread evenly over channels (so the channel sum is the map)."""
    out = torch.empty_like(x)
    for sl in _chunks(len(x), 1, max_batch):
        feats = model.features(x[sl]).detach().requires_grad_(True)
        logits = model.head(model.dropout(model.pool(feats)))
        (g,) = torch.autograd.grad(logits.gather(1, target[sl].view(-1, 1)).sum(), feats)
        cam = F.relu((g.mean((2, 3), keepdim=True) * feats).sum(1, keepdim=True))
        cam = F.interpolate(cam, size=x.shape[2:], mode="bilinear", align_corners=False)
        out[sl] = (cam / x.shape[1]).expand(-1, x.shape[1], -1, -1).detach()
    return out


def expected_gradients_draws(n_images: int, n_samples: int, n_background: int, seed: int = 0):
    """(reference index (N, S) int, alpha (N, S) float) for expected gradients."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, n_background, (n_images, n_samples)), rng.uniform(size=(n_images, n_samples))


def shap_draws(n_images: int, n_samples: int, n_background: int, rseed: int):
    """The draws shap.GradientExplainer(...).shap_values(X, nsamples, rseed=rseed) makes for one
    ranked output — lets a test feed both implementations identical samples."""
    np.random.seed(rseed)
    idx = np.zeros((n_images, n_samples), int)
    alpha = np.zeros((n_images, n_samples))
    for j in range(n_images):
        for k in range(n_samples):
            idx[j, k] = np.random.choice(n_background)
            alpha[j, k] = np.random.uniform()
    return idx, alpha


def expected_gradients(model, x, target, background: torch.Tensor | None = None, n_samples: int = 50,
                       seed: int = 0, draws=None, max_batch: int = MAX_BATCH, **_):
    """SHAP values for the CNN by expected gradients (Erion et al. 2021; shap's GradientExplainer):
    mean over (reference r from `background`, α ~ U(0, 1)) of ∇f(r + α(x − r)) · (x − r)."""
    if background is None:
        raise ValueError("expected_gradients needs background images (M, C, H, W), e.g. drawn from train")
    background = background.to(x.device, x.dtype)
    idx, alpha = draws if draws is not None else expected_gradients_draws(len(x), n_samples, len(background), seed)
    idx = torch.as_tensor(np.asarray(idx), device=x.device)
    alpha = torch.as_tensor(np.asarray(alpha), dtype=x.dtype, device=x.device)
    k = idx.shape[1]
    out = torch.empty_like(x)
    for sl in _chunks(len(x), k, max_batch):
        xb = x[sl]
        b = xb.shape[0]
        refs = background[idx[sl].T.reshape(-1)]  # sample-major (k*b, C, H, W)
        a = alpha[sl].T.reshape(-1, 1, 1, 1)
        delta = _expand(xb, k) - refs
        g = _target_grad(model, refs + a * delta, _expand(target[sl], k))
        out[sl] = (g * delta).view(k, b, *x.shape[1:]).mean(0)
    return out


def random_attribution(model, x, target, seed: int = 0, **_):
    """Uniform noise: the floor every faithfulness metric is read against."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(x.shape, generator=g).to(x.device)


_IMPL = {"gradient": gradient, "smoothgrad": smoothgrad, "integrated_gradients": integrated_gradients,
         "gradcam": gradcam, "expected_gradients": expected_gradients, "random": random_attribution}


def attribute(model, inputs: torch.Tensor, target, method: str = "gradient", **kwargs) -> torch.Tensor:
    """Attribution of `target` logits to `inputs` (N, C, H, W) by `method`; same shape as inputs.

    kwargs by method: smoothgrad (n_samples, noise, seed); integrated_gradients (baselines,
    n_steps); expected_gradients (background, n_samples, seed); all: max_batch (samples per pass).
    """
    if method not in _IMPL:
        raise ValueError(f"unknown attribution method '{method}'; expected one of {', '.join(METHODS)}")
    if inputs.ndim != 4:
        raise ValueError(f"inputs must be (N, C, H, W); got shape {tuple(inputs.shape)}")
    target = torch.as_tensor(target, device=inputs.device).long().view(-1)
    if len(target) != len(inputs):
        raise ValueError(f"target has {len(target)} entries for {len(inputs)} inputs")
    with frozen(model):
        return _IMPL[method](model, inputs, target, **kwargs).detach()


def to_map(attr: torch.Tensor | np.ndarray, method: str) -> np.ndarray:
    """One map per image (N, H, W): |·| summed over channels for gradient methods, the signed
    channel sum for path methods and Grad-CAM (see MAP_REDUCTION)."""
    a = attr.detach().cpu().numpy() if isinstance(attr, torch.Tensor) else np.asarray(attr)
    return (np.abs(a) if MAP_REDUCTION.get(method, "sum") == "abs" else a).sum(1)


def images_to_tensor(images_u8: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, C) or (N, H, W) → float32 (N, C, H, W) in [0, 1]."""
    a = np.ascontiguousarray(images_u8)
    if a.ndim == 3:
        a = a[..., None]
    return to_float(torch.from_numpy(a)).contiguous()
