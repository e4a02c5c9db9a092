"""Stages run against a run folder: the glue between stage code (arrays) and artifacts (paths)."""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

from . import __version__
from .artifacts import CheckpointStore, RunDir, git_commit, package_versions
from .backbone import DermaCNN, from_config
from .concepts import measure_concepts
from .config import with_defaults
from .data import class_legend, file_md5, load_dataset, short_class_names
from .errors import HybridError
from .metrics import anchors_markdown, classification_report, confusion_table
from .shortcut import KINDS, plant
from .train import predict_proba, train_backbone

BACKBONE = "backbone.pt"


def open_run(cfg: dict, runs_dir: str | Path = "artifacts/runs", name: str | None = None,
             restart: bool = False) -> RunDir:
    """Create or reopen artifacts/runs/<name>; a run keeps the config it was started with."""
    name = name or cfg["run"]["name"]
    run = RunDir(Path(runs_dir) / name)
    old = run.manifest.get("config")
    old = _recipe(with_defaults(old)) if old is not None else None
    new = _recipe(cfg)
    if restart:
        run.manifest = {"created": run.manifest.get("created"), "files": {}, "stages": {}}
    elif old is not None and old != new:
        changed = sorted(f"{s}.{k}" for s in new for k in new[s] if old.get(s, {}).get(k) != new[s][k])
        raise HybridError(
            f"Run folder {run.path} was made with a different config (changed: {', '.join(changed) or 'sections'}); "
            "use another --run name, or --restart to start it over."
        )
    run.manifest.update({"config": cfg, "seed": cfg["run"]["seed"], "hybrid_version": __version__,
                         "versions": package_versions(), "git_commit": git_commit()})
    run.save_manifest()
    return run


def _recipe(cfg: dict) -> dict:
    """The config without where the data lives: moving the data does not change a run
    (its content is checked by md5 instead, see check_data)."""
    return {**cfg, "data": {**cfg["data"], "root": ""}}


def check_data(run: RunDir, path: Path) -> str:
    """md5 of the data file; refused when the run was trained on another file."""
    got = file_md5(path)
    want = run.manifest.get("data", {}).get("md5")
    if want and got != want:
        raise HybridError(f"Data file {path} has md5 {got}, but run {run.path} was trained on a file with md5 {want}; "
                          "pass --data-root to the data it was trained on.")
    return got


def run_dataset(run: RunDir, data_root=None):
    """The run's dataset (as its config names it, from data_root if given), checked against the
    md5 the run was trained on, so no stage reads other data than the CNN learned from."""
    dc = run.manifest["config"]["data"]
    data = load_dataset(dc["flag"], dc["size"], data_root or dc["root"] or None, dc["subset"],
                        dc["metadata_root"] or None)
    check_data(run, data.path)
    return data


def _npy_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=False)
    return buf.getvalue()


def training_data(cfg: dict, data_root=None):
    """(dataset, train images as the CNN sees them, boolean stamped mask or None) for a config."""
    dc = cfg["data"]
    data = load_dataset(dc["flag"], dc["size"], data_root or dc["root"] or None, dc["subset"], dc["metadata_root"] or None)
    tr = data.splits["train"]
    st = dc["stamp"]
    if not st["kind"]:
        return data, tr.images, None
    if st["kind"] not in KINDS:
        raise HybridError(f"Config: data.stamp.kind '{st['kind']}' is unknown; expected one of {', '.join(KINDS)} "
                          "(or \"\" for no planted shortcut).")
    if not 0 <= st["class"] < data.n_classes:
        raise HybridError(f"Config: data.stamp.class {st['class']} is not a class of {data.flag} (0–{data.n_classes - 1}).")
    images, stamped = plant(tr.images, tr.labels, st["kind"], st["class"], st["fraction"], st["fraction_other"],
                            cfg["run"]["seed"])
    return data, images, stamped


def concept_targets(cfg: dict, train_images: np.ndarray) -> np.ndarray | None:
    """Measured concepts of the train images when the config trains a joint concept head, else None."""
    if cfg["train"]["concept_weight"] <= 0:
        return None
    if train_images.ndim != 4 or train_images.shape[-1] != 3:
        raise HybridError(f"Config: train.concept_weight needs RGB images to measure concepts on; "
                          f"'{cfg['data']['flag']}' has shape {train_images.shape[1:]}.")
    return measure_concepts(train_images, n_jobs=-1)


class _ReadOnly:
    """A checkpoint store that resumes from rank 0's checkpoint and never writes."""

    def __init__(self, store):
        self.store = store

    def load(self):
        return self.store.load()

    def save(self, state):
        pass


def follow_train(cfg: dict, run_path: Path, data_root=None) -> None:
    """A non-zero rank under torchrun: the same training as rank 0, resuming from its checkpoint,
    writing nothing."""
    data, train_images, _ = training_data(cfg, data_root)
    tr, va = data.splits["train"], data.splits["val"]
    store = _ReadOnly(CheckpointStore(RunDir(run_path)))
    train_backbone(train_images, tr.labels, va.images, va.labels, data.n_classes, cfg, store, progress=False,
                   concept_targets=concept_targets(cfg, train_images))


def train_stage(cfg: dict, run: RunDir, data_root=None, progress: bool = True, stop_after: int | None = None) -> dict:
    """Load data, train (resuming from the run's checkpoint), evaluate on val/test; returns the metrics dict."""
    dc = cfg["data"]
    with run.stage("load_data"):
        data, train_images, stamped = training_data(cfg, data_root)
        run.manifest["data"] = {"flag": data.flag, "size": data.size, "file": str(data.path),
                                "md5": check_data(run, data.path), "subset": dc["subset"],
                                "n": {s: int(len(v.labels)) for s, v in data.splits.items()},
                                "metadata": data.splits["train"].metadata is not None}
    tr, va, te = data.splits["train"], data.splits["val"], data.splits["test"]
    if stamped is not None:
        st = dc["stamp"]
        run.write_bytes("stamped_train_index.npy", _npy_bytes(tr.index[stamped]))
        run.manifest["data"]["stamp"] = {**st, "n_stamped": int(stamped.sum()),
                                         "n_stamped_class": int((stamped & (tr.labels == st["class"])).sum())}
    with run.stage("train"):
        model, history, info = train_backbone(train_images, tr.labels, va.images, va.labels, data.n_classes, cfg,
                                              CheckpointStore(run), progress, stop_after,
                                              concept_targets(cfg, train_images))
        run.write_json("history.json", history)
        if info["epochs_done"] < cfg["train"]["epochs"]:
            run.manifest["train"] = info
            run.save_manifest()
            return {}
        run.save_torch(BACKBONE, {"config": model.config, "state": model.state_dict(),
                                  "class_names": data.class_names, "flag": data.flag})
    with run.stage("evaluate"):
        mc = cfg["metrics"]
        bs = cfg["train"]["eval_batch_size"]
        fused = model.fused()  # the same function with BatchNorm folded, faster to evaluate
        results, md_rows = {"train_info": info}, {}
        for split, s in (("val", va), ("test", te)):
            for tta in (False, True):
                p = predict_proba(fused, s.images, bs, tta)
                key = f"{split}{'_tta' if tta else ''}"
                results[key] = classification_report(s.labels, p, data.class_names, mc["n_bootstrap"] if split == "test" else 0,
                                                     mc["ece_bins"], cfg["run"]["seed"])
                run.write_bytes(f"predictions/{key}_proba.npy", _npy_bytes(p.astype(np.float32)))
        for split, s in (("val", va), ("test", te)):
            run.write_bytes(f"predictions/{split}_labels.npy", _npy_bytes(s.labels))
        md_rows["hybrid DermaCNN"] = results["test"]
        md_rows["hybrid DermaCNN + 8-view TTA"] = results["test_tta"]
        headline = "test_tta" if cfg["train"]["tta"] else "test"
        results["headline"] = headline
        run.write_json("metrics.json", results)
        run.write_text("metrics.md", metrics_markdown(results, data, cfg, md_rows))
    run.manifest["train"] = info
    run.save_manifest()
    return results


def metrics_markdown(results: dict, data, cfg: dict, rows: dict) -> str:
    test = results[results["headline"]]
    lines = [f"# Backbone metrics — {data.flag} {data.size} px", "",
             f"Best epoch {results['train_info']['best_epoch']} of {cfg['train']['epochs']} "
             f"(validation AUC {_fmt(results['train_info']['best_val_auc'])}); seed {cfg['run']['seed']}.", ""]
    if data.flag == "dermamnist":
        lines += [anchors_markdown(rows, data.size), ""]
    else:
        lines += ["| model | test ACC | test AUC |", "| --- | --- | --- |"]
        lines += [f"| {n} | {_fmt(r['acc'], 3)} | {_fmt(r['auc'], 3)} |" for n, r in rows.items()] + [""]
    view = "with 8-view test-time augmentation" if results["headline"].endswith("_tta") else "one view"
    lines += [f"## Test split, {view} (the headline)", "",
              f"balanced accuracy {test['balanced_acc']:.3f}, expected calibration error {test['ece']:.3f}", "",
              "| class | precision | recall | support |", "| --- | --- | --- | --- |"]
    for name, r in test["per_class"].items():
        f = lambda v: "–" if v is None else f"{v:.3f}"  # noqa: E731
        lines.append(f"| {name} | {f(r['precision'])} | {f(r['recall'])} | {r['support']} |")
    lines += ["", confusion_markdown(test["confusion"], list(test["per_class"])), ""]
    return "\n".join(lines)


def confusion_markdown(cm, names: list[str]) -> str:
    """The confusion matrix as a markdown table, rows true, columns predicted, classes by short name."""
    short = short_class_names(names)
    lines = ["Confusion matrix (rows: true class, columns: the CNN's prediction):", ""] + confusion_table(cm, short, short)
    legend = class_legend(names)
    if legend:
        lines += ["", legend]
    return "\n".join(lines)


def load_backbone(run: RunDir) -> tuple[DermaCNN, dict]:
    """The trained backbone of a run, checksum-verified and loaded weights-only."""
    if BACKBONE not in run.manifest["files"]:
        raise HybridError(f"Run folder {run.path} has no trained backbone; run `hybrid train` first.")
    ckpt = run.load_torch(BACKBONE)
    model = from_config(ckpt["config"])
    model.load_state_dict(ckpt["state"])
    model.eval()
    return model, ckpt


def _fmt(v, d=4) -> str:
    return "n/a" if v is None else f"{v:.{d}f}"


def summary_line(results: dict) -> str:
    """One line: headline test metrics with their bootstrap intervals."""
    t = results[results["headline"]]
    ci = lambda k: f"[{_fmt(t[k][0], 3)}, {_fmt(t[k][1], 3)}]" if k in t else ""  # noqa: E731
    return (f"test ACC {_fmt(t['acc'])} {ci('acc_ci95')}  AUC {_fmt(t['auc'])} {ci('auc_ci95')}  "
            f"balanced ACC {_fmt(t['balanced_acc'])}  ECE {_fmt(t['ece'])}")


__all__ = ["open_run", "train_stage", "load_backbone", "summary_line", "json"]
