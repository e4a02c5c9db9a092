import importlib.metadata
import json

import numpy as np
import pytest
import torch

from hybrid.artifacts import RunDir
from hybrid.cli import main
from hybrid.stages import load_backbone
from hybrid.train import predict_proba
from hybrid.data import load_dataset

from .conftest import PROJECT, tampered_copy, tiny_cli_args, train_tiny_run

ARGS = tiny_cli_args(epochs=2, n_bootstrap=50)


@pytest.fixture(scope="module")
def run(tmp_path_factory, data_root):
    return train_tiny_run(tmp_path_factory, data_root, ARGS)


def test_manifest_is_complete_and_checksums_verify(run):
    m = json.loads((run / "manifest.json").read_text())
    for key in ("config", "versions", "data", "seed", "git_commit", "stages", "files", "train"):
        assert key in m, key
    assert m["data"]["md5"] == "45f3783dfb11efb4ae98644d4a7ae5f5"
    assert m["hybrid_version"] == importlib.metadata.version("hybrid")
    assert {"torch", "numpy", "medmnist", "scikit-learn", "python"} <= set(m["versions"])
    for stage in ("load_data", "train", "evaluate"):
        assert m["stages"][stage]["wall_s"] >= 0 and m["stages"][stage]["peak_rss_mb"] > 0
    for rel in ("backbone.pt", "metrics.json", "metrics.md", "history.json", "predictions/test_proba.npy"):
        assert rel in m["files"]
    assert RunDir.open(run).verify_all()
    assert main(["verify", str(run)]) == 0


def test_metrics_files_and_saved_model_agree(run, data_root):
    metrics = json.loads((run / "metrics.json").read_text())
    assert 0 <= metrics["test"]["acc"] <= 1 and "auc_ci95" in metrics["test"]
    assert "MedMNIST v2 ResNet-18" in (run / "metrics.md").read_text()
    model, ckpt = load_backbone(RunDir.open(run))
    assert ckpt["class_names"][4] == "melanoma"
    test = load_dataset("dermamnist", 28, data_root, subset=600).splits["test"]
    saved = np.load(run / "predictions/test_proba.npy")
    assert np.allclose(predict_proba(model, test.images), saved, atol=1e-5)


def test_tampered_file_is_refused(run, tmp_path, capsys):
    copy = tampered_copy(run, tmp_path / "copy", "backbone.pt")
    assert main(["verify", str(copy)]) == 2
    err = capsys.readouterr().err
    assert "backbone.pt does not match its sha256" in err


def test_changed_config_on_existing_run_is_refused(run, capsys, data_root):
    code = main(["train", *ARGS, "--set", "train.lr=0.01", "--data-root", str(data_root),
                 "--runs-dir", str(run.parent)])
    assert code == 2
    assert "different config (changed: train.lr)" in capsys.readouterr().err


def test_bad_config_key(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("[train]\nepoch = 3\n")
    assert main(["train", "--config", str(bad), "--runs-dir", str(tmp_path)]) == 2
    assert "unknown key 'train.epoch'" in capsys.readouterr().err


def test_version_matches_the_package_metadata(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"hybrid {importlib.metadata.version('hybrid')}"


def test_concept_head_with_mixup_is_refused(tmp_path, capsys):
    args = ["train", "--config", str(PROJECT / "configs/quick.toml"), "--runs-dir", str(tmp_path),
            "--set", "train.concept_weight=1.0", "--set", "train.mixup_alpha=0.2"]
    assert main(args) == 2
    assert "train.concept_weight and train.mixup_alpha cannot both be set" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_readme_python_example_runs(run):
    """The README's 'From Python' block, run as written against a finished run folder."""
    text = (PROJECT / "README.md").read_text()
    block = text.split("## From Python", 1)[1].split("```python", 1)[1].split("```", 1)[0]
    assert 'RunDir.open("artifacts/runs/default")' in block
    ns: dict = {}
    exec(compile(block.replace("artifacts/runs/default", str(run)), "README.md", "exec"), ns)
    assert ns["proba"].shape == (2005, 7) and ns["p"].shape == (2005, 7)
    assert ns["emb"].shape == (2005, ns["model"].embed_dim)
    assert np.allclose(ns["p"], predict_proba(ns["model"], ns["test"].images), atol=1e-5)


@pytest.mark.parametrize("override,message", [
    ("model.arch=vgg", "'model.arch' must be one of resnet, plain"),
    ("train.optimizer=adam", "'train.optimizer' must be one of adamw, sgd"),
])
def test_unknown_choice_is_refused(tmp_path, capsys, override, message):
    args = ["train", "--config", str(PROJECT / "configs/quick.toml"), "--runs-dir", str(tmp_path),
            "--set", override]
    assert main(args) == 2
    assert message in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("override,message", [
    ("train.epochs=0", "'train.epochs' must be ≥ 1, got 0"),
    ("train.lr=-0.001", "'train.lr' must be > 0, got -0.001"),
    ("model.dropout=1.0", "'model.dropout' must be a probability in [0, 1), got 1.0"),
    ("operating_point.target_sensitivity=1.5", "'operating_point.target_sensitivity' must be a sensitivity in (0, 1]"),
])
def test_out_of_range_setting_is_refused(tmp_path, capsys, override, message):
    args = ["train", "--config", str(PROJECT / "configs/quick.toml"), "--runs-dir", str(tmp_path),
            "--set", override]
    assert main(args) == 2
    assert message in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("argv,message", [
    (["train", "--epochs", "0"], "argument --epochs: expected a whole number ≥ 1, got 0"),
    (["evaluate", "RUN", "--sensitivity", "1.5"], "argument --sensitivity: expected a number in (0, 1], e.g. 0.80, got 1.5"),
    (["evaluate", "RUN", "--n-bootstrap", "-3"], "argument --n-bootstrap: expected a whole number ≥ 0, got -3"),
    (["audit", "RUN", "--n-bootstrap", "0"], "argument --n-bootstrap: expected a whole number ≥ 1, got 0"),
    (["rules", "RUN", "--min-support", "x"], "argument --min-support: expected a whole number, got 'x'"),
])
def test_out_of_range_argument_is_refused_before_any_work(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_missing_data_on_a_first_start_leaves_no_run_folder(tmp_path, capsys):
    """A mistyped --data-root must not leave a run folder that then refuses the corrected command."""
    args = ["train", "--config", str(PROJECT / "configs/quick.toml"), "--runs-dir", str(tmp_path / "runs")]
    assert main([*args, "--data-root", str(tmp_path / "nowhere")]) == 2
    assert "dermamnist.npz does not exist" in capsys.readouterr().err
    assert not (tmp_path / "runs" / "quick").exists()


def test_moved_data_is_accepted_and_other_data_refused_by_md5(run, tmp_path, capsys, data_root, real_npz):
    """Where the data lives is not part of a run; what it contains is (its md5 in the manifest)."""
    import shutil

    runs = tmp_path / "runs"
    shutil.copytree(run, runs / "quick")
    moved = tmp_path / "moved"
    moved.mkdir()
    (moved / "dermamnist.npz").symlink_to(data_root / "dermamnist.npz")
    assert main(["train", *ARGS, "--data-root", str(moved), "--runs-dir", str(runs)]) == 0
    capsys.readouterr()

    other = tmp_path / "other"
    other.mkdir()
    np.savez(other / "dermamnist.npz", **real_npz)  # the same arrays, another file: another md5
    for argv in (["train", *ARGS, "--data-root", str(other), "--runs-dir", str(runs)],
                 ["features", str(runs / "quick"), "--data-root", str(other), "--quiet"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "dermamnist.npz has md5" in err and "was trained on a file with md5 45f3783dfb11efb4ae98644d4a7ae5f5" in err


@pytest.mark.parametrize("device,message", [
    ("tpu", "'train.device' is 'tpu'; expected auto, cpu, cuda (or cuda:N) or mps"),
    pytest.param("cuda", "sees no cuda device on this machine; use --device auto or cpu",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")),
])
def test_unusable_device_is_refused_and_leaves_no_run_folder(tmp_path, capsys, data_root, device, message):
    args = ["train", *ARGS, "--data-root", str(data_root), "--runs-dir", str(tmp_path), "--device", device]
    assert main(args) == 2
    assert message in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("command,says", [("train", "resume from the last finished epoch"),
                                          ("fidelity", "redo this stage")])
def test_ctrl_c_says_how_to_go_on(monkeypatch, capsys, command, says):
    import hybrid.cli as cli

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, f"_{command}", interrupted)
    assert cli.main([command] + (["RUN"] if command != "train" else [])) == 130
    assert says in capsys.readouterr().err


def test_a_closed_pipe_ends_quietly():
    """`hybrid rules RUN | head`: when the reader goes away, no traceback."""
    import subprocess
    import sys

    code = ("import sys, hybrid.cli as c\n"
            "def closed(args):\n    raise BrokenPipeError\n"
            "c._verify = closed\nsys.exit(c.main(['verify', 'RUN']))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=PROJECT)
    assert done.returncode == 141 and done.stderr == ""


def test_a_folder_given_for_a_file_and_an_unwritable_runs_dir_get_one_sentence(tmp_path, capsys):
    assert main(["train", "--config", str(tmp_path)]) == 2
    assert f"Config file {tmp_path} is a folder, not a file" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["train", "--config", str(PROJECT / "configs/quick.toml"), "--runs-dir", str(blocker)]) == 2
    assert capsys.readouterr().err == f"hybrid: error: cannot use {blocker / 'quick'}: Not a directory.\n"
