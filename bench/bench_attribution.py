#!/usr/bin/env python
"""Attribution benchmark: images per second of each method on the DermaMNIST test split, side by
side with the model's raw forward+backward throughput and with Captum's and shap's implementations
of the same methods on the same inputs, all in one run; and peak RAM of 64-px Integrated Gradients.

    python bench/bench_attribution.py                       # 2,005 test images, 28 px, all threads
    python bench/bench_attribution.py --run artifacts/runs/default   # a trained backbone instead of a fresh one

Throughput does not depend on the weights, so without --run the default preset's architecture is
built untrained. Prints a table and writes bench/results_attribution.md.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hybrid import attribution as A  # noqa: E402
from hybrid.artifacts import peak_rss_mb  # noqa: E402
from hybrid.backbone import build_backbone  # noqa: E402
from hybrid.config import load_config  # noqa: E402
from hybrid.data import load_dataset  # noqa: E402


def model_for(args, size: int):
    if args.run:
        from hybrid.artifacts import RunDir
        from hybrid.stages import load_backbone

        return load_backbone(RunDir.open(args.run))[0]
    m = load_config(ROOT / "configs" / "default.toml")["model"]
    torch.manual_seed(0)
    return build_backbone(7, 3, size, m["width"], m["blocks_per_stage"], m["dropout"], m["head"], m["embed_dim"],
                          arch=m["arch"]).eval()


def timed(fn, repeat: int = 1) -> float:
    """Best wall time (s) of `repeat` calls."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def interleaved(ours, ref, n: int, chunk: int, passes: int) -> tuple[float, float, list[float]]:
    """Time two implementations of one method chunk by chunk, alternating which runs first, over
    `passes` passes of the n inputs, so that a drift in this shared machine's speed (it moves by
    tens of percent over seconds to minutes) hits both alike. `ours(sl)` and `ref(sl)` attribute
    inputs[sl]. Returns (ours s per pass, ref s per pass, per-pass ratios ref s / ours s)."""
    o, r = np.zeros(passes), np.zeros(passes)
    for p in range(passes):
        for j, lo in enumerate(range(0, n, chunk)):
            sl = slice(lo, min(n, lo + chunk))
            order = [(o, ours), (r, ref)] if (j + p) % 2 == 0 else [(r, ref), (o, ours)]
            for acc, fn in order:
                t0 = time.perf_counter()
                fn(sl)
                acc[p] += time.perf_counter() - t0
    return float(o.mean()), float(r.mean()), [float(b / a) for a, b in zip(o, r)]


def raw_fwd_bwd(model, x, target, batch: int, repeat: int = 3) -> float:
    """Samples/s of plain forward + backward to the input, parameters frozen (the ceiling); best of `repeat`."""
    def run():
        with A.frozen(model):
            for i in range(0, len(x), batch):
                A._target_grad(model, x[i:i + batch], target[i:i + batch])
    return len(x) / timed(run, repeat)


def memory_child(size: int, memory_mb: float, n: int) -> None:
    """Run 64-px IG in this (fresh) process and print its peak RSS in MiB."""
    ds = load_dataset("dermamnist", size)
    model = model_for(argparse.Namespace(run=None), size)
    x = A.images_to_tensor(ds.splits["test"].images[:n])
    t = torch.zeros(n, dtype=torch.long)
    model = model.fused()
    mb = min(A.MAX_BATCH, A.batch_for_memory(model, (3, size, size), memory_mb))
    before = peak_rss_mb()
    t0 = time.perf_counter()
    A.attribute(model, x, t, "integrated_gradients", n_steps=32, max_batch=mb)
    print(json.dumps({"peak_rss_mb": peak_rss_mb(),
                      "rss_before_mb": before, "max_batch": mb, "images": n,
                      "images_per_s": n / (time.perf_counter() - t0)}))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", help="run folder whose trained backbone to use")
    ap.add_argument("--n", type=int, default=0, help="test images (0: all 2,005)")
    ap.add_argument("--n-shap-ref", type=int, default=40, help="images for shap's (per-image, slow) GradientExplainer")
    ap.add_argument("--memory-mb", type=float, default=1024.0, help="attribution budget for the 64-px check")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results_attribution.md"), help="markdown written here")
    ap.add_argument("--memory-child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.memory_child:
        memory_child(args.memory_child, args.memory_mb, 256)
        return 0

    import shap
    from captum.attr import IntegratedGradients, NoiseTunnel, Saliency

    threads = torch.get_num_threads()
    ds = load_dataset("dermamnist", 28)
    imgs = ds.splits["test"].images
    imgs = imgs[: args.n] if args.n else imgs
    x = A.images_to_tensor(imgs)
    unfused = model_for(args, 28)
    model = unfused.fused()  # what the stages attribute: BatchNorm folded (the same function); Captum and shap get it too
    with torch.no_grad():
        target = model(x).argmax(1)
    bg = A.images_to_tensor(ds.splits["train"].images[np.random.default_rng(0).choice(len(ds.splits["train"].images), 100, replace=False)])
    n = len(x)
    mb = A.MAX_BATCH  # samples per pass, as in the stages; the sweep below shows why
    raw = raw_fwd_bwd(model, x, target, mb)  # measured again at the end; the faster of the two is the ceiling
    sweep = {b: n / timed(lambda: A.attribute(model, x, target, "gradient", max_batch=b), 3) for b in (64, 128, 256, 512)}
    unfused_ips = n / timed(lambda: A.attribute(unfused, x, target, "gradient", max_batch=mb), 2)
    print({"gradient img/s by samples per pass": sweep, "unfused model": unfused_ips}, flush=True)
    rows = []

    def add(name, ours_s, samples, ref_name=None, ref_s=None, ref_n=None, passes=None):
        ips = n / ours_s
        row = {"method": name, "img_per_s": ips, "samples_per_img": samples,
               "of_raw": ips * samples / raw}
        if ref_s is not None:
            row.update(ref=ref_name, ref_img_per_s=ref_n / ref_s, speedup=ips / (ref_n / ref_s))
        if passes:
            row["pass_ratios"] = passes
        rows.append(row)
        print(row, flush=True)

    sal = Saliency(model)
    # gradient and IG are the same computation as Captum's: interleave the two chunk by chunk and keep
    # every pass's ratio, so the reader sees the ratio's spread on this machine. Chunks of `mb` give both
    # the same passes; chunks of 256 and of all n images compare them as a user calls them, one call per
    # chunk: attribute() still splits a call into passes of `mb` samples, Saliency makes one pass
    def ours_gradient(sl):
        A.attribute(model, x[sl], target[sl], "gradient", max_batch=mb)

    def captum_gradient(sl):
        sal.attribute(x[sl], target=target[sl], abs=False)

    for b in (mb, 256, n):
        o, r, ratios = interleaved(ours_gradient, captum_gradient, n, b, 3)
        add("gradient" if b == mb else f"gradient, calls of {b} images", o, 1, "captum Saliency", r, n, ratios)
    nt = NoiseTunnel(sal)
    add("smoothgrad (16)", timed(lambda: A.attribute(model, x, target, "smoothgrad", n_samples=16, max_batch=mb)), 16,
        "captum NoiseTunnel(Saliency)", timed(lambda: [nt.attribute(x[i:i + 64], target=target[i:i + 64], nt_type="smoothgrad",
                                                                     nt_samples=16, stdevs=0.15, abs=False)
                                                        for i in range(0, n, 64)]), n)
    ig = IntegratedGradients(model)
    o, r, ratios = interleaved(
        lambda sl: A.attribute(model, x[sl], target[sl], "integrated_gradients", n_steps=32, max_batch=mb),
        lambda sl: ig.attribute(x[sl], target=target[sl], n_steps=32, internal_batch_size=mb), n, 16, 3)
    add("integrated_gradients (32)", o, 32, "captum IntegratedGradients", r, n, ratios)
    add("gradcam", timed(lambda: A.attribute(model, x, target, "gradcam", max_batch=mb), 2), 1)
    k = args.n_shap_ref
    ge = shap.GradientExplainer(model, bg, batch_size=50)
    add("expected_gradients (50)", timed(lambda: A.attribute(model, x, target, "expected_gradients", background=bg,
                                                             n_samples=50, max_batch=mb)), 50,
        f"shap GradientExplainer ({k} images)", timed(lambda: ge.shap_values(x[:k], nsamples=50, ranked_outputs=1)), k)

    raw_end = raw_fwd_bwd(model, x, target, mb)
    if raw_end > raw:  # a shared machine's speed drifts: rescale the shares to the faster ceiling
        for r in rows:
            r["of_raw"] *= raw / raw_end
        raw = raw_end
    child = subprocess.run([sys.executable, __file__, "--memory-child", "64", "--memory-mb", str(args.memory_mb)],
                           capture_output=True, text=True, cwd=ROOT)
    if child.returncode:
        print(child.stderr, file=sys.stderr)
        return child.returncode
    mem = json.loads(child.stdout.strip().splitlines()[-1])

    lines = ["# Attribution benchmark", "",
             f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__} with {threads} threads, "
             f"python {platform.python_version()}. Model: {'trained backbone of ' + args.run if args.run else 'default preset architecture (untrained; speed does not depend on weights)'}.",
             f"Command: `python bench/bench_attribution.py{' --run ' + args.run if args.run else ''}`", "",
             f"{n} DermaMNIST test images at 28 px. Raw forward+backward (to the input, parameters frozen, batch {mb}; "
             f"the best of three runs before the methods and three after): "
             f"**{raw:.0f} samples/s** — the ceiling for methods that take many samples per image.", "",
             "| method | ours img/s | samples per image | ours as share of raw fwd+bwd (samples/s) | reference | reference img/s | ours / reference |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        ref = (f"{r['ref']} | {r['ref_img_per_s']:.1f} | {r['speedup']:.2f}×" if "ref" in r else "– | – | –")
        if "pass_ratios" in r:
            ref += " (passes: " + ", ".join(f"{v:.2f}" for v in r["pass_ratios"]) + ")"
        lines.append(f"| {r['method']} | {r['img_per_s']:.1f} | {r['samples_per_img']} | {r['of_raw']:.0%} | {ref} |")
    lines += ["", "Gradient and Integrated Gradients run the same computation as Captum's (same model, batches of "
              f"{mb} samples). They were timed interleaved: chunk by chunk ({mb} images for gradient, 16 for IG), "
              "ours and Captum's in turn with the order alternating, over three passes of the test set; img/s is the "
              "mean pass, the ratio is total against total, and the per-pass ratios in brackets show the spread that "
              "remains. The rows \"calls of B images\" time the same two implementations as a user calls them, one "
              f"call per B images: ours still runs passes of {mb} samples, Saliency one pass of B; the sweep below "
              "shows what a larger pass costs on this CPU."]
    lines += ["", "Gradient img/s by samples per pass (folded model): "
              + ", ".join(f"{b}: {v:.0f}" for b, v in sweep.items())
              + f". The checkpoint's unfused model (BatchNorm as separate layers), batch {mb}: {unfused_ips:.0f} img/s; "
              "every row above uses the folded copy (`DermaCNN.fused()`), Captum and shap included.", ""]
    lines += ["", f"64-px Integrated Gradients (32 steps, {mem['images']} images, budget {args.memory_mb:.0f} MiB → "
              f"{mem['max_batch']} samples per pass): peak RSS **{mem['peak_rss_mb']:.0f} MiB** for the whole process "
              f"({mem['rss_before_mb']:.0f} MiB before attributing), {mem['images_per_s']:.1f} img/s.", ""]
    text = "\n".join(lines)
    print(text)
    Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
