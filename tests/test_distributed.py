"""torchrun with two gloo processes on the CPU trains the same model as one process, within tolerance."""
import os
import subprocess
import sys

import torch

from hybrid.artifacts import RunDir
from hybrid.backbone import build_backbone
from hybrid.stages import load_backbone

from .conftest import PROJECT

SETS = ["--set", "data.subset=600", "--set", "model.width=8", "--set", "train.epochs=2", "--set", "train.batch_size=64",
        "--set", "metrics.n_bootstrap=1", "--set", "train.tta=false", "--set", "model.dropout=0.0"]


def _params(run) -> dict:
    model, _ = load_backbone(RunDir.open(run))
    return {k: v.detach().flatten() for k, v in model.named_parameters()}


def test_torchrun_two_gloo_processes_match_single_process(tmp_path, data_root):
    base = [sys.executable, "-m", "hybrid.cli", "train", "--config", str(PROJECT / "configs/quick.toml"), "--quiet",
            "--data-root", str(data_root), "--runs-dir", str(tmp_path), *SETS]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    single = subprocess.run([*base, "--run", "single", "--set", "train.threads=1"], capture_output=True, text=True,
                            env=env, timeout=600)
    assert single.returncode == 0, single.stderr[-2000:]
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          "-m", "hybrid.cli", *base[3:], "--set", "run.name=\"ddp\""], capture_output=True, text=True,
                         env=env, timeout=600, cwd=PROJECT)
    assert ddp.returncode == 0, ddp.stderr[-2000:]
    assert not (tmp_path / "ddp-rank1").exists() and len(list(tmp_path.iterdir())) == 2  # rank 0 alone wrote

    cfg = RunDir.open(tmp_path / "single").manifest["config"]
    torch.manual_seed(cfg["run"]["seed"])  # the initial weights both runs started from
    mc = cfg["model"]
    init = build_backbone(7, 3, 28, mc["width"], mc["blocks_per_stage"], mc["dropout"], mc["head"], mc["embed_dim"])
    w0 = torch.cat([p.detach().flatten() for p in init.parameters()])
    a = torch.cat(list(_params(tmp_path / "single").values())) - w0
    b = torch.cat(list(_params(tmp_path / "ddp").values())) - w0
    cos = float(a @ b / (a.norm() * b.norm()))
    ratio = float(b.norm() / a.norm())
    # the same updates up to per-process BatchNorm statistics on the CPU
    print("COS", cos, ratio)
    assert cos > 0.9 and 0.8 < ratio < 1.25, (cos, ratio)
    m1 = RunDir.open(tmp_path / "single").read_json("metrics.json")["test"]["acc"]
    m2 = RunDir.open(tmp_path / "ddp").read_json("metrics.json")["test"]["acc"]
    assert abs(m1 - m2) < 0.05
