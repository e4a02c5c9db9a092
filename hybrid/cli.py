"""Command line: `hybrid train | features | surrogates | fidelity | rules | explain | faithfulness | audit | evaluate | report | compare | verify`. Bad input → one sentence on stderr, exit 2."""
from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from .errors import HybridError


def _count(minimum: int):
    """argparse type: an integer ≥ minimum, refused in one sentence otherwise."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got '{text}'") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected a whole number ≥ {minimum}, got {value}")
        return value
    parse.__name__ = "count"
    return parse


def _fraction(text: str) -> float:
    """argparse type: a proportion in (0, 1], e.g. a target sensitivity."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got '{text}'") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], e.g. 0.80, got {value}")
    return value


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
    from . import distributed as D

    D.setup()
    try:
        if D.rank() != 0:  # under torchrun: train alongside rank 0, which alone writes the run folder
            from .stages import follow_train

            follow_train(cfg, Path(args.runs_dir) / (args.run or cfg["run"]["name"]))
            return 0
        path = Path(args.runs_dir) / (args.run or cfg["run"]["name"])
        is_new = not (path / "manifest.json").exists()
        run = open_run(cfg, args.runs_dir, args.run, args.restart)
        print(f"run folder: {run.path}", file=sys.stderr)
        try:
            results = train_stage(cfg, run, progress=not args.quiet)
        except HybridError:
            if is_new and not run.manifest["files"]:  # bad data on a first start: leave no empty run behind
                shutil.rmtree(run.path, ignore_errors=True)
            raise
    finally:
        D.teardown()
    print(summary_line(results))
    print(f"metrics: {run.path / 'metrics.md'}")
    return 0


def _features(args) -> int:
    from .artifacts import RunDir
    from .surrogate_stage import features_stage

    run = RunDir.open(args.run)
    r2 = features_stage(run, args.data_root, progress=not args.quiet)
    top = sorted(r2.items(), key=lambda kv: -kv[1])
    print("linear-probe R² on test (what the CNN encodes): " + ", ".join(f"{k} {v:.2f}" for k, v in top))
    print(f"feature tables: {run.path / 'features'}")
    return 0


def _surrogates(args) -> int:
    from .artifacts import RunDir
    from .surrogate_stage import surrogates_stage

    run = RunDir.open(args.run)
    surrogates_stage(run, args.n_bootstrap, progress=not args.quiet)
    print((run.path / "surrogates" / "fidelity.md").read_text())
    if args.ablation:
        from .surrogate_stage import ablation_stage

        ablation_stage(run)
        print((run.path / "surrogates" / "ablation.md").read_text())
    return 0


def _fidelity(args) -> int:
    from .artifacts import RunDir
    from .errors import HybridError

    run = RunDir.open(args.run)
    rel = "surrogates/fidelity.md"
    if rel not in run.manifest["files"]:
        raise HybridError(f"Run folder {run.path} has no fidelity table; run `hybrid surrogates {run.path}` first.")
    print(run.verify(rel).read_text())
    return 0


def _rules(args) -> int:
    from .artifacts import RunDir
    from .concepts import REGISTRY
    from .data import HAM_CODES, short_class_names
    from .errors import HybridError
    from .features import feature_matrix
    from .rules import extract_rules, format_rules
    from .stages import load_backbone
    from .surrogate_stage import load_joblib, load_tables

    run = RunDir.open(args.run)
    rel = f"surrogates/{args.surrogate}.joblib"
    if rel not in run.manifest["files"]:
        have = sorted(k[len("surrogates/"):-len(".joblib")] for k in run.manifest["files"]
                      if k.startswith("surrogates/") and k.endswith("__tree.joblib"))
        raise HybridError(f"Run folder {run.path} has no surrogate '{args.surrogate}'; tree surrogates here: "
                          f"{', '.join(have) or 'none (run `hybrid surrogates` first)'}.")
    sur = load_joblib(run, rel)
    if sur.kind != "tree":
        raise HybridError(f"Surrogate '{args.surrogate}' is not a tree (kind: {sur.kind}); rules come from tree "
                          "surrogates (*__tree).")
    _, ckpt = load_backbone(run)
    names = ckpt["class_names"]
    klass = None
    if args.klass is not None:
        short = {c: i for i, c in enumerate(short_class_names(names)) if c in HAM_CODES.values()}
        matches = [i for i, n in enumerate(names) if args.klass.lower() in n.lower()]
        klass = short.get(args.klass.lower(), matches[0] if len(matches) == 1 else None)
        if klass is None:
            raise HybridError(f"--class '{args.klass}' matches no single class; expected one of: {'; '.join(names)}.")
    table = load_tables(run)[args.split]
    fs = args.surrogate.split("__")[0]
    X, feat = feature_matrix(table, fs)
    units = [REGISTRY[f.removeprefix("cnn_")].unit if f.removeprefix("cnn_") in REGISTRY else "" for f in feat]
    rules = extract_rules(sur, X, table["pred"], feat, units)
    print(f"# rules of {args.surrogate} — support and CNN agreement on the {args.split} split "
          f"({len(X)} images); {len(rules)} {'leaf' if len(rules) == 1 else 'leaves'} in all\n")
    print(format_rules(rules, names, klass, args.min_support, args.sort))
    return 0


def _verify(args) -> int:
    from .artifacts import RunDir

    run = RunDir.open(args.run)
    files = run.verify_all()
    print(f"{len(files)} files match their sha256 in {run.manifest_path}")
    return 0


def _explain_opts(args) -> dict:
    opts = {"seed": args.seed, "surrogate": args.surrogate, "tree": args.tree}
    if getattr(args, "n", None):
        opts["n"] = args.n
    if args.methods:
        from .attribution import METHODS

        bad = [m for m in args.methods if m not in METHODS]
        if bad:
            raise HybridError(f"--methods: unknown method '{bad[0]}'; expected some of {', '.join(METHODS)}.")
        opts["methods"] = args.methods
    return opts


def _explain(args) -> int:
    from .artifacts import RunDir
    from .explain_stage import explain_images, gallery_indices
    from .surrogate_stage import load_tables

    run = RunDir.open(args.run)
    idx = list(args.index)
    if args.gallery:
        idx += [int(i) for i in gallery_indices(load_tables(run)["test"], args.per_class, args.seed)]
    if not idx:
        raise HybridError("Nothing to explain: give --index N (a test-split index, repeatable) or --gallery.")
    idx = sorted(set(idx))
    paths = explain_images(run, idx, args.data_root, _explain_opts(args), progress=not args.quiet, gallery=args.gallery)
    print("\n".join(paths))
    return 0


def _faithfulness(args) -> int:
    from .artifacts import RunDir
    from .explain_stage import faithfulness_stage

    run = RunDir.open(args.run)
    faithfulness_stage(run, args.data_root, _explain_opts(args), progress=not args.quiet)
    print((run.path / "explain" / "faithfulness.md").read_text())
    print((run.path / "explain" / "regions.md").read_text())
    return 0


def _audit(args) -> int:
    from .artifacts import RunDir
    from .audit_stage import audit_stage

    run = RunDir.open(args.run)
    opts = {"stamp": args.stamp, "seed": args.seed, "n_boot": args.n_bootstrap, "external": args.external}
    audit_stage(run, args.data_root, opts, progress=not args.quiet)
    print((run.path / "audit" / "audit.md").read_text())
    return 0


def _evaluate(args) -> int:
    from .artifacts import RunDir
    from .evaluate_stage import evaluate_stage
    from .external import default_external

    run = RunDir.open(args.run)
    path = args.external or default_external("ph2", run.manifest["config"]["data"]["size"])
    if path is None:
        raise HybridError("No external set given and none found at ../shared/data/external/ph2; pass --external PATH.npz.")
    name = args.name or Path(path).stem
    evaluate_stage(run, path, name, args.sensitivity, args.n_bootstrap, args.adapt_bn)
    print((run.path / "evaluate" / f"{name}.md").read_text())
    return 0


def _report(args) -> int:
    from .artifacts import RunDir
    from .report import build_report, closing_text

    run = RunDir.open(args.run)
    build_report(run)
    print(closing_text(run.path), end="")
    return 0


def _compare(args) -> int:
    from .artifacts import RunDir
    from .report import compare_markdown, run_items

    runs = [RunDir.open(r) for r in args.runs]
    if len({r.path.resolve() for r in runs}) < len(runs):
        raise HybridError(f"A run is given twice in: {' '.join(args.runs)}; name each run folder once.")
    names = [r.path.name for r in runs]
    if len(set(names)) < len(names):  # folders of the same name: show the paths as given
        names = list(args.runs)
    text = compare_markdown({n: run_items(r) for n, r in zip(names, runs)}, spread=args.spread)
    print(text, end="")
    if args.out:
        from .artifacts import atomic_write_bytes

        atomic_write_bytes(Path(args.out), text.encode())
    return 0


def _explain_args(e) -> None:
    e.add_argument("run", help="run folder with features and surrogates")
    e.add_argument("--data-root", help="folder with medmnist's npz files")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--surrogate", default="concepts__xgboost", help="surrogate whose SHAP is shown and compared")
    e.add_argument("--tree", default="concepts__tree", help="tree surrogate whose rule path is shown")
    e.add_argument("--methods", nargs="+", help="attribution methods (default: all)")
    e.add_argument("--quiet", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    p = argparse.ArgumentParser(prog="hybrid", description=__doc__)
    p.add_argument("--version", action="version", version=f"hybrid {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train the CNN backbone and evaluate it (resumes an interrupted run)")
    t.add_argument("--config", default="configs/default.toml", help="TOML preset (configs/quick|default|gpu.toml)")
    t.add_argument("--data-root", help="folder with medmnist's npz files")
    t.add_argument("--run", help="run name under --runs-dir (default: the config's run.name)")
    t.add_argument("--runs-dir", default="artifacts/runs")
    t.add_argument("--seed", type=int)
    t.add_argument("--epochs", type=_count(1))
    t.add_argument("--device", help="auto | cpu | cuda | mps")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value, e.g. train.lr=0.002")
    t.add_argument("--restart", action="store_true", help="discard the run's checkpoint and start over")
    t.add_argument("--quiet", action="store_true", help="no progress bars")
    t.set_defaults(func=_train)
    f = sub.add_parser("features", help="embeddings, CNN probabilities, measured and CNN-probed concepts per split")
    f.add_argument("run", help="run folder, e.g. artifacts/runs/default")
    f.add_argument("--data-root", help="folder with medmnist's npz files")
    f.add_argument("--quiet", action="store_true", help="no progress bar")
    f.set_defaults(func=_features)
    s = sub.add_parser("surrogates", help="distil the CNN into logistic, tree and XGBoost surrogates; print the fidelity table")
    s.add_argument("run")
    s.add_argument("--n-bootstrap", type=_count(0), default=1000, help="resamples for the 95%% intervals (0: none)")
    s.add_argument("--ablation", action="store_true", help="also leave each concept out in turn (about a minute)")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=_surrogates)
    fi = sub.add_parser("fidelity", help="print a run's surrogate fidelity table")
    fi.add_argument("run")
    fi.set_defaults(func=_fidelity)
    r = sub.add_parser("rules", help="print a tree surrogate's IF-THEN rules")
    r.add_argument("run")
    r.add_argument("--surrogate", default="concepts__tree", help="a tree surrogate, e.g. concepts__tree")
    r.add_argument("--class", dest="klass", help="only rules for this class (name, part of it, or akiec/bcc/bkl/df/mel/nv/vasc)")
    r.add_argument("--min-support", type=_count(0), default=0, help="only rules reached by at least N images")
    r.add_argument("--split", default="test", choices=["train", "val", "test"], help="where support and agreement are counted")
    r.add_argument("--sort", default="support", choices=["support", "agreement"])
    r.set_defaults(func=_rules)
    e = sub.add_parser("explain", help="CNN saliency maps beside the concept surrogate's SHAP and the tree's rule path")
    _explain_args(e)
    e.add_argument("--index", type=int, action="append", default=[], help="test-split index to explain (repeatable)")
    e.add_argument("--gallery", action="store_true", help="images covering every class, correct and wrong")
    e.add_argument("--per-class", type=_count(1), default=2, help="gallery images per class (one correct, one wrong)")
    e.set_defaults(func=_explain)
    fa = sub.add_parser("faithfulness", help="deletion/insertion, randomisation check, lesion mass, SHAP-vs-saliency regions")
    _explain_args(fa)
    fa.add_argument("--n", type=_count(1), default=200, help="test images in the fixed sample")
    fa.set_defaults(func=_faithfulness)
    au = sub.add_parser("audit", help="shortcut audit, planted-stamp probe, leakage, skin-tone and subgroup metrics")
    au.add_argument("run", help="run folder with features and surrogates")
    au.add_argument("--data-root", help="folder with medmnist's npz files")
    au.add_argument("--stamp", default="ruler", help="artifact drawn for the stamp probe: ruler | dot | patch")
    au.add_argument("--seed", type=int, default=0)
    au.add_argument("--n-bootstrap", type=_count(1), default=500, help="resamples for every interval")
    au.add_argument("--external", help="external set for the other-clinic audit (default: ../shared/data/external/ph2)")
    au.add_argument("--quiet", action="store_true", help="no progress bars")
    au.set_defaults(func=_audit)
    ev = sub.add_parser("evaluate", help="external set: melanoma operating point, calibration, surrogate fidelity")
    ev.add_argument("run", help="run folder with features and surrogates")
    ev.add_argument("--external", help="npz with test_images (N,S,S,3) uint8 and test_labels (N,1); "
                                       "default: ../shared/data/external/ph2 at the run's image size")
    ev.add_argument("--name", help="name of the set in the report (default: the file's stem)")
    ev.add_argument("--sensitivity", type=_fraction, help="target melanoma sensitivity on val (default: config, 0.80)")
    ev.add_argument("--n-bootstrap", type=_count(0), default=1000, help="resamples for the 95%% intervals (0: none)")
    ev.add_argument("--adapt-bn", action="store_true",
                    help="add a column with BatchNorm statistics re-estimated on the external images (AdaBN; transductive)")
    ev.set_defaults(func=_evaluate)
    rp = sub.add_parser("report", help="one self-contained HTML report and summary.md of a run")
    rp.add_argument("run", help="run folder")
    rp.set_defaults(func=_report)
    c = sub.add_parser("compare", help="runs side by side: recipe and every summary number (markdown table)")
    c.add_argument("runs", nargs="+", help="run folders, e.g. artifacts/runs/default artifacts/runs/accurate")
    c.add_argument("--out", help="also write the table to this markdown file")
    c.add_argument("--spread", action="store_true", help="add a column with the mean ± sd over the runs (e.g. seeds)")
    c.set_defaults(func=_compare)
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
    except BrokenPipeError:  # the reader went away (`hybrid rules RUN | head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as exc:  # the file system refused: a path that is not a folder, no space, no permission
        where = f" {exc.filename}" if exc.filename else ""
        print(f"hybrid: error: cannot use{where}: {exc.strerror or exc}.", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        again = ("to resume from the last finished epoch" if args.command == "train"
                 else "to redo this stage (files are written whole or not at all)")
        print(f"hybrid: interrupted; run the same command again {again}.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
