"""Command line: `hybrid train`, `hybrid verify`. Bad input → one sentence on stderr, exit 2."""
from __future__ import annotations

import argparse
import sys

from .errors import HybridError


def _train(args) -> int:
    from .config import load_config
    from .stages import open_run, summary_line, train_stage

    cfg = load_config(args.config, args.set)
    if args.seed is not None:
        cfg["run"]["seed"] = args.seed
    if args.epochs is not None:
        cfg["train"]["epochs"] = args.epochs
    if args.device:
        cfg["train"]["device"] = args.device
    if args.data_root:
        cfg["data"]["root"] = args.data_root
    run = open_run(cfg, args.runs_dir, args.run, args.restart)
    print(f"run folder: {run.path}", file=sys.stderr)
    results = train_stage(cfg, run, progress=not args.quiet)
    print(summary_line(results))
    print(f"metrics: {run.path / 'metrics.md'}")
    return 0


def _verify(args) -> int:
    from .artifacts import RunDir

    run = RunDir.open(args.run)
    files = run.verify_all()
    print(f"{len(files)} files match their sha256 in {run.manifest_path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hybrid", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train the CNN backbone and evaluate it (resumes an interrupted run)")
    t.add_argument("--config", default="configs/default.toml", help="TOML preset (configs/quick|default|gpu.toml)")
    t.add_argument("--data-root", help="folder with medmnist's npz files")
    t.add_argument("--run", help="run name under --runs-dir (default: the config's run.name)")
    t.add_argument("--runs-dir", default="artifacts/runs")
    t.add_argument("--seed", type=int)
    t.add_argument("--epochs", type=int)
    t.add_argument("--device", help="auto | cpu | cuda | mps")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value, e.g. train.lr=0.002")
    t.add_argument("--restart", action="store_true", help="discard the run's checkpoint and start over")
    t.add_argument("--quiet", action="store_true", help="no progress bars")
    t.set_defaults(func=_train)
    v = sub.add_parser("verify", help="check every file of a run against the sha256 in its manifest")
    v.add_argument("run", help="run folder, e.g. artifacts/runs/default")
    v.set_defaults(func=_verify)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except HybridError as exc:
        print(f"hybrid: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("hybrid: interrupted; run the same command again to resume from the last finished epoch.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
