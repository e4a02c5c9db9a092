"""Every stage on one preset, skipping a stage whose inputs and options are unchanged.

A stage's key is the sha256 of its command line, of the sha256s (from the manifest) of the
files it reads and of the code that computes the stage (CODE: a new version of hybrid re-measures,
re-fits and re-draws); after a stage succeeds its key is stored in manifest["stage_keys"]. On the next
run a stage is skipped when its key matches and the files it wrote are still intact; `force`
reruns everything. Training is keyed by the run's whole config.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from .artifacts import RunDir

# stage → prefixes of the run files it reads, and of the files it writes
READS = {"features": ["backbone.pt"], "surrogates": ["features/"],
         "faithfulness": ["backbone.pt", "features/", "surrogates/"], "explain": ["backbone.pt", "features/", "surrogates/"],
         "audit": ["backbone.pt", "features/", "surrogates/"],
         "report": ["metrics.json", "surrogates/", "explain/", "audit/", "evaluate/", "features/probe_r2.md"]}
# stage → the modules whose code decides its numbers and figures: a new version of them re-runs the stage
CODE = {"features": ("concepts.py", "features.py", "transfer.py", "surrogate_stage.py"),
        "surrogates": ("distill.py", "surrogates.py", "fidelity.py", "surrogate_stage.py"),
        "audit": ("shift.py", "audit.py", "audit_shift.py", "audit_stage.py", "evaluate_stage.py"),
        "faithfulness": ("attribution.py", "faithfulness.py", "explain.py", "explain_stage.py"),
        "explain": ("attribution.py", "explain.py", "explain_stage.py", "plots.py"),
        "report": ("report.py", "model_card.py")}
WRITES = {"train": ["backbone.pt", "metrics.json"], "features": ["features/"], "surrogates": ["surrogates/"],
          "faithfulness": ["explain/faithfulness.json"], "explain": ["explain/gallery.png"],
          "audit": ["audit/audit.json"], "report": ["report/report.html"]}


def stage_key(run: RunDir, stage: str, argv: list[str], extra: str = "") -> str:
    """sha256 of the stage's command line, `extra` (training: the config file's text), the source of
    the modules in CODE[stage] and the manifest sha256s of the run files it reads."""
    files = run.manifest.get("files", {})
    reads = READS.get(stage, [])
    inputs = sorted((k, v) for k, v in files.items() if any(k.startswith(p) for p in reads))
    code = [hashlib.sha256((Path(__file__).parent / m).read_bytes()).hexdigest() for m in CODE.get(stage, ())]
    blob = json.dumps([stage, argv, inputs, extra] + ([code] if code else []), sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def up_to_date(run: RunDir, stage: str, key: str) -> bool:
    """The stored key matches and every file the stage wrote is present and intact."""
    if run.manifest.get("stage_keys", {}).get(stage) != key:
        return False
    outs = [k for k in run.manifest.get("files", {}) if any(k.startswith(p) for p in WRITES[stage])]
    if not outs:
        return False
    try:
        for k in outs:
            run.verify(k)
    except Exception:  # noqa: BLE001 — any damage means: rerun
        return False
    return True


def record(run: RunDir, stage: str, key: str) -> None:
    """Store the key of a stage that just succeeded (run: freshly opened, after the stage saved)."""
    run.manifest.setdefault("stage_keys", {})[stage] = key
    run.save_manifest()


def run_pipeline(config: str, train_argv: list[str], run_path: Path, data: list[str], force: bool = False,
                 cfg: dict | None = None) -> int:
    """train → features → surrogates → rules → faithfulness → explain → audit → report; exit status.
    cfg (the loaded config) supplies metrics.n_bootstrap and explain.n to the later stages."""
    from .cli import main
    from .config import DEFAULTS

    cfg = cfg or DEFAULTS
    boot = ["--n-bootstrap", str(cfg["metrics"]["n_bootstrap"])]
    stages = [("train", ["train", *train_argv]), ("features", ["features", str(run_path), *data]),
              ("surrogates", ["surrogates", str(run_path), *boot]),
              ("rules", ["rules", str(run_path), "--class", "mel", "--min-support", "20"]),
              ("faithfulness", ["faithfulness", str(run_path), "--n", str(cfg["explain"]["n"]), *data]),
              ("explain", ["explain", str(run_path), "--gallery", *data]),
              ("audit", ["audit", str(run_path), *boot, *data]), ("report", ["report", str(run_path)])]
    config_text = Path(config).read_text() if Path(config).is_file() else config
    for name, argv in stages:
        run = RunDir(run_path)
        key = stage_key(run, name, argv, config_text if name == "train" else "") if name in WRITES else None
        if key and not force and (run.path / "manifest.json").exists() and up_to_date(run, name, key):
            print(f"== skip {name}: inputs and options unchanged (--force reruns it)", flush=True)
            continue
        print(f"\n== hybrid {' '.join(argv)}", flush=True)
        code = main(argv)
        if code:
            return code
        if key:
            record(RunDir(run_path), name, key)
    return 0
