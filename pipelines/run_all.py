#!/usr/bin/env python
"""Every stage on one preset, in order: train → features → surrogates → rules of the concept tree →
faithfulness of the CNN's maps → gallery of side-by-side explanations → safety audit
(with the external PH2 set when present) → report.

    python pipelines/run_all.py --config configs/default.toml [--run NAME] [--data-root DIR] [train flags]

Training resumes an interrupted run; later stages rerun on the trained backbone.
"""
import argparse
import sys
from pathlib import Path

from hybrid.cli import main


def run_all(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(add_help=False)
    ap.add_argument("--config", default="configs/default.toml")
    ap.add_argument("--run")
    ap.add_argument("--runs-dir", default="artifacts/runs")
    ap.add_argument("--data-root")
    known, _ = ap.parse_known_args(argv)
    code = main(["train", *argv])
    if code:
        return code
    if known.run:
        name = known.run
    else:
        from hybrid.config import load_config

        name = load_config(known.config)["run"]["name"]
    run = str(Path(known.runs_dir) / name)
    data = ["--data-root", known.data_root] if known.data_root else []
    stages = (["features", run, *data], ["surrogates", run], ["rules", run, "--class", "mel", "--min-support", "20"],
              ["faithfulness", run, *data], ["explain", run, "--gallery", *data], ["audit", run, *data],
              ["report", run])
    for stage in stages:
        print(f"\n== hybrid {' '.join(stage)}", flush=True)
        code = main(stage)
        if code:
            return code
    print(f"\nrun folder: {run}  (report/report.html, report/summary.md, metrics.md, surrogates/fidelity.md,\n"
          "  explain/faithfulness.md, explain/gallery.png, audit/audit.md, evaluate/ph2.md, manifest.json)")
    return 0


if __name__ == "__main__":
    sys.exit(run_all(sys.argv[1:]))
