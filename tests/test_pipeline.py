"""The whole pipeline on a tiny quick run: every stage, the report, a second run that skips them all,
a damaged output that reruns its stage alone, and a stage killed part-way that reruns cleanly."""
import json
import os
import signal
import subprocess
import sys
import time

from hybrid.artifacts import RunDir

from .conftest import PROJECT


def test_pipeline_end_to_end_then_every_stage_skipped(tmp_path, data_root, capsys, monkeypatch):
    import importlib.util

    spec = importlib.util.spec_from_file_location("run_all", PROJECT / "pipelines" / "run_all.py")
    run_all = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run_all)
    argv = ["--config", str(PROJECT / "configs/quick.toml"), "--quiet", "--runs-dir", str(tmp_path),
            "--data-root", str(data_root), "--set", "data.subset=600", "--set", "model.width=8",
            "--set", "train.epochs=1", "--set", "metrics.n_bootstrap=20", "--set", "explain.n=20"]
    assert run_all.run_all(argv) == 0
    out = capsys.readouterr().out
    run = tmp_path / "quick"
    for rel in ("report/report.html", "report/summary.md", "audit/audit.json", "evaluate/ph2.json",
                "explain/gallery.png", "surrogates/fidelity.json"):
        assert (run / rel).is_file(), rel
    assert "# Summary" in out and "report: " in out and "## Caveats and recommendations" in out
    import pandas as pd

    sets = json.loads((run / "evaluate/ph2.json").read_text())["sets"]
    meta = pd.read_csv(run / "features/test_metadata.csv")
    n_follow_up = int(((meta["label"] == 5) & (meta["dx_type"] == "follow_up")).sum())
    full, same_device = sets["DermaMNIST test"], sets["DermaMNIST test, no follow-up nevi"]
    assert 0 < n_follow_up and same_device["n"] == full["n"] - n_follow_up
    assert same_device["binary"]["n_positive"] == full["binary"]["n_positive"]
    assert same_device["binary"]["n_negative"] == full["binary"]["n_negative"] - n_follow_up
    swap = json.loads((run / "audit/audit.json").read_text())["skin_swap"]
    assert set(swap["auc"]) == {"before", "swap", "control"} and swap["positive"]["n"] == full["binary"]["n_positive"]
    keys = json.loads((run / "manifest.json").read_text())["stage_keys"]
    assert set(keys) == {"train", "features", "surrogates", "faithfulness", "explain", "audit", "report"}

    assert run_all.run_all(argv) == 0  # nothing changed: every stage is skipped
    out = capsys.readouterr().out
    assert out.count("== skip ") == 7 and "== hybrid train" not in out

    gallery = (run / "explain/gallery.png").read_bytes()
    (run / "explain/gallery.png").write_bytes(b"")  # damage one output: that stage alone reruns
    assert run_all.run_all(argv) == 0
    out = capsys.readouterr().out
    assert "== hybrid explain" in out
    assert (run / "explain/gallery.png").read_bytes() == gallery  # same seed, same picture, byte for byte
    # the report reads the gallery, but the regenerated gallery has the same sha256: nothing to redo
    for stage in ("train", "features", "surrogates", "faithfulness", "audit", "report"):
        assert f"== skip {stage}" in out

    import hybrid.pipeline as P  # a new version of the surrogates' code: that stage and what reads it rerun

    monkeypatch.setitem(P.CODE, "surrogates", P.CODE["surrogates"][:-1])
    assert run_all.run_all(argv) == 0
    out = capsys.readouterr().out
    assert "== skip train" in out and "== skip features" in out and "== hybrid surrogates" in out
    monkeypatch.undo()

    # SIGKILL the surrogates stage part-way (it has started, not finished)
    proc = subprocess.Popen([sys.executable, "-m", "hybrid.cli", "surrogates", str(run), "--n-bootstrap", "20"],
                            env=dict(os.environ, PYTHONPATH=str(PROJECT)),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        try:
            st = json.loads((run / "manifest.json").read_text())["stages"]["surrogates"]
        except (json.JSONDecodeError, KeyError):
            st = {}
        if "started" in st:
            break
        time.sleep(0.02)
    time.sleep(1.0)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    man = json.loads((run / "manifest.json").read_text())  # still valid JSON
    assert "finished" not in man["stages"]["surrogates"], "killed too late: the stage had finished"
    assert "surrogates" not in man["stage_keys"]  # a started stage is never taken for up to date
    RunDir(run).verify_all()  # every recorded file is whole: writes are atomic
    assert run_all.run_all(argv) == 0
    out = capsys.readouterr().out
    assert "== hybrid surrogates" in out and "== skip train" in out and "== skip features" in out
    assert not list(run.rglob("*.tmp")), "a half-written temp file was left behind"
    assert "finished" in json.loads((run / "manifest.json").read_text())["stages"]["surrogates"]
    RunDir(run).verify_all()
