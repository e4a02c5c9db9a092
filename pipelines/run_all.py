#!/usr/bin/env python
"""Every stage on one preset, in order: train → features → surrogates → rules of the concept tree →
faithfulness of the CNN's maps → gallery of side-by-side explanations → safety audit (with the
external PH2 set when present) → report. A stage whose inputs and options are unchanged since it
last succeeded is skipped (hybrid.pipeline); --force reruns every stage.

    python pipelines/run_all.py --config configs/default.toml [--run NAME] [--data-root DIR] [--force] [train flags]
"""
import argparse
import sys
from pathlib import Path

from hybrid.pipeline import run_pipeline


def run_all(argv: list[str]) -> int:
    if {"-h", "--help"} & set(argv):
        print(__doc__.strip() + "\n\nEvery flag but --force goes to `hybrid train`:\n")
        from hybrid.cli import build_parser

        build_parser().parse_args(["train", "--help"])  # prints train's options, exits 0
    ap = argparse.ArgumentParser(add_help=False)
    ap.add_argument("--config", default="configs/default.toml")
    ap.add_argument("--run")
    ap.add_argument("--runs-dir", default="artifacts/runs")
    ap.add_argument("--data-root")
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--force", action="store_true")
    known, _ = ap.parse_known_args(argv)
    train_argv = [a for a in argv if a != "--force"]
    from hybrid.cli import main
    from hybrid.config import load_config
    from hybrid.errors import HybridError

    try:
        cfg = load_config(known.config, known.set)
    except HybridError:
        return main(["train", *train_argv])  # the CLI prints the one-sentence error
    run = Path(known.runs_dir) / (known.run or cfg["run"]["name"])
    data = ["--data-root", known.data_root] if known.data_root else []
    code = run_pipeline(known.config, train_argv, run, data, known.force, cfg)
    if code == 0:
        from hybrid.report import closing_text

        print("\n" + closing_text(run) + f"run folder: {run}")
    return code


if __name__ == "__main__":
    sys.exit(run_all(sys.argv[1:]))
