"""Stages 2–3 against a run folder: feature tables, then surrogates and their fidelity table."""
from __future__ import annotations

import csv
import io
import time

import joblib
import numpy as np
from tqdm.auto import tqdm

from .artifacts import RunDir
from .concepts import CONCEPT_NAMES, REGISTRY
from .distill import READABLE_DEPTH, concept_ablation, evaluate, fit_surrogates
from .errors import HybridError
from .features import FEATURE_SETS, feature_matrix, fit_concept_probes, probe_predict, probe_r2, split_table
from .fidelity import FIDELITY_METRICS
from .shortcut import plant
from .stages import load_backbone, run_dataset
from .transfer import COPIES as TRANSFER_COPIES, transfer_table

SPLITS = ("train", "val", "test")
TABLE_KEYS = ("embeddings", "proba", "pred", "concepts", "cnn_concepts", "masks", "labels", "index")
# feature sets whose XGBoost and tree are also fitted on the transfer set. The embeddings joined on
# 2026-12-03, for XGBoost only: with the copies its val fidelity rose on 3 of 3 default seeds
# (0.976 -> 0.987 on average; bench/results_embedding_xgb.md) for ~25 s more fitting; the embedding
# tree's best val fidelity at depth ≤ 6 did not move (seed 0: 0.928 both), so it keeps the train images.
TRANSFER_SETS = ("embeddings", "concepts", "cnn_concepts", "concepts+cnn_concepts")


def _npz_bytes(arrays: dict) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def _joblib_bytes(obj) -> bytes:
    buf = io.BytesIO()
    joblib.dump(obj, buf)
    return buf.getvalue()


def load_joblib(run: RunDir, rel: str):
    """joblib.load only after the file's sha256 matches the manifest (joblib can run code)."""
    return joblib.load(run.verify(rel))


def features_stage(run: RunDir, data_root=None, progress: bool = True) -> dict:
    """Embeddings, CNN probabilities, measured and CNN-probed concepts for every split → features/*.npz;
    the CNN's answers on augmented copies of the train images → features/transfer.npz (hybrid.transfer).
    The progress bar counts images: the three splits, then the transfer copies."""
    cfg = run.manifest["config"]
    dc = cfg["data"]
    model, ckpt = load_backbone(run)
    model = model.fused()
    if dc["flag"] != "dermamnist" or ckpt["config"]["in_channels"] != 3:
        raise HybridError("The concept stage needs RGB dermoscopy images (DermaMNIST); this run trained on "
                          f"'{dc['flag']}'.")
    with run.stage("features"):
        data = run_dataset(run, data_root)
        images = {s: data.splits[s].images for s in SPLITS}
        st = dc.get("stamp", {})
        if st.get("kind"):  # a planted-shortcut run: the train split as the CNN saw it
            tr = data.splits["train"]
            images["train"] = plant(tr.images, tr.labels, st["kind"], st["class"], st["fraction"], st["fraction_other"],
                                    cfg["run"]["seed"])[0]
        n_copies = TRANSFER_COPIES * len(images["train"])
        bar = tqdm(total=sum(len(images[s]) for s in SPLITS) + n_copies, desc="features", unit="img",
                   disable=not progress, leave=False)
        tables = {}
        for s in SPLITS:
            bar.set_postfix_str(s)
            tables[s] = split_table(model, images[s], data.splits[s].labels, data.splits[s].index)
            bar.update(len(images[s]))
        probe = fit_concept_probes(tables["train"]["embeddings"], tables["train"]["concepts"])
        for s in SPLITS:
            tables[s]["cnn_concepts"] = probe_predict(probe, tables[s]["embeddings"]).astype(np.float32)
        r2 = probe_r2(probe, tables["test"]["embeddings"], tables["test"]["concepts"])
        bar.set_postfix_str("transfer copies")
        transfer = transfer_table(model, images["train"], TRANSFER_COPIES, seed=cfg["run"]["seed"], bar=bar)
        bar.close()
        transfer["cnn_concepts"] = probe_predict(probe, transfer["embeddings"]).astype(np.float32)
        run.write_bytes("features/transfer.npz", _npz_bytes(transfer))
        for s in SPLITS:
            run.write_bytes(f"features/{s}.npz", _npz_bytes(tables[s]))
            meta = data.splits[s].metadata
            if meta is not None:
                run.write_text(f"features/{s}_metadata.csv", meta.reset_index().to_csv(index=False))
        run.write_bytes("features/concept_probe.joblib", _joblib_bytes(probe))
        run.write_json("features/probe_r2.json", r2)
        lines = ["# What the CNN encodes: linear-probe R² per concept (test)", "",
                 "Ridge probe on the frozen embedding, fitted on train; R² on test (1 = fully linearly decodable, "
                 "≤ 0 = not at all).", "", "| concept | unit | R² | definition |", "| --- | --- | --- | --- |"]
        for name, v in sorted(r2.items(), key=lambda kv: -kv[1]):
            c = REGISTRY[name]
            lines.append(f"| {name} | {c.unit} | {v:.3f} | {c.definition} |")
        run.write_text("features/probe_r2.md", "\n".join(lines) + "\n")
    return r2


def load_transfer(run: RunDir) -> dict | None:
    """The transfer table of `features_stage`, or None for a run featurised before it existed."""
    if "features/transfer.npz" not in run.manifest["files"]:
        return None
    with np.load(run.verify("features/transfer.npz"), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def load_tables(run: RunDir) -> dict:
    out = {}
    for s in SPLITS:
        rel = f"features/{s}.npz"
        if rel not in run.manifest["files"]:
            raise HybridError(f"Run folder {run.path} has no feature tables; run `hybrid features {run.path}` first.")
        with np.load(run.verify(rel), allow_pickle=False) as z:
            out[s] = {k: z[k] for k in z.files}
        n = out[s]["concepts"].shape[1]
        if n != len(CONCEPT_NAMES):
            raise HybridError(f"{run.path / rel} holds {n} concepts per image; this version of hybrid measures "
                              f"{len(CONCEPT_NAMES)}. Run `hybrid features {run.path}` again.")
    return out


def transfer_rows(tf: dict | None, fs: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(features, CNN labels) of the transfer copies for feature set `fs`, or None when `fs` is not in
    TRANSFER_SETS or the run's transfer table lacks its columns (featurised before they were kept)."""
    if tf is None or fs not in TRANSFER_SETS:
        return None
    try:
        return feature_matrix(tf, fs)[0], tf["pred"]
    except KeyError:
        return None


def surrogates_stage(run: RunDir, n_boot: int = 1000, progress: bool = True) -> list[dict]:
    """Fit every family × feature set on the CNN's train predictions; fidelity table on test.
    The progress bar counts feature sets (each: depth sweep, logistic, tree, XGBoost, bootstrap)."""
    cfg = run.manifest["config"]
    seed = cfg["run"]["seed"]
    tables = load_tables(run)
    tr, va, te = tables["train"], tables["val"], tables["test"]
    tf = load_transfer(run)
    n_classes = tr["proba"].shape[1]
    rows, sweeps = [], []
    with run.stage("surrogates"):
        for fs in tqdm(FEATURE_SETS, desc="surrogates", unit="feature set", disable=not progress, leave=False):
            Xtr, names = feature_matrix(tr, fs)
            Xva, _ = feature_matrix(va, fs)
            Xte, _ = feature_matrix(te, fs)
            transfer = transfer_rows(tf, fs)
            fitted, sweep = fit_surrogates(Xtr, tr["pred"], Xva, va["pred"], n_classes, seed, transfer=transfer,
                                           transfer_tree=fs != "embeddings")
            for family, (s, fit_s) in fitted.items():
                if family == "majority" and fs != "concepts":
                    continue
                t0 = time.perf_counter()
                row = evaluate(s, Xte, te["pred"], te["proba"], te["labels"], n_boot, seed)
                row.update({"surrogate": family, "features": "any" if family == "majority" else fs,
                            "train_fidelity": float((s.predict(Xtr) == tr["pred"]).mean()),
                            "fit_rows": int(s.n_samples_fit_),
                            "fit_s": round(fit_s, 3), "eval_s": round(time.perf_counter() - t0, 3)})
                if family == "tree":
                    row["depth"] = s.complexity()["depth"]
                name = "majority" if family == "majority" else f"{fs}__{family}"
                row["name"] = name
                s.feature_names_ = names
                run.write_bytes(f"surrogates/{name}.joblib", _joblib_bytes(s))
                rows.append(row)
            for r in sweep:
                s = r.pop("surrogate")
                r.update({"features": fs, "train_fidelity": float((s.predict(Xtr) == tr["pred"]).mean()),
                          "test_fidelity": float((s.predict(Xte) == te["pred"]).mean()),
                          "test_kappa": evaluate(s, Xte, te["pred"], te["proba"], te["labels"], 0)["kappa"]})
                sweeps.append(r)
        run.write_json("surrogates/fidelity.json", rows)
        run.write_text("surrogates/fidelity.csv", _csv(rows))
        run.write_text("surrogates/fidelity.md", fidelity_markdown(rows))
        run.write_text("surrogates/depth_sweep.csv", _csv(sweeps))
        run.write_bytes("surrogates/depth_sweep.png", _sweep_png(sweeps))
    return rows


def ablation_stage(run: RunDir) -> list[dict]:
    """Leave-one-concept-out XGBoost on measured concepts: which concepts the surrogate needs."""
    tables = load_tables(run)
    tr, te = tables["train"], tables["test"]
    with run.stage("ablation"):
        rows = concept_ablation(tr["concepts"], tr["pred"], te["concepts"], te["pred"], list(CONCEPT_NAMES),
                                tr["proba"].shape[1], run.manifest["config"]["run"]["seed"])
        run.write_json("surrogates/ablation.json", rows)
        lines = ["# Leave-one-concept-out: XGBoost on measured concepts (test kappa with the CNN)", "",
                 f"All concepts: kappa {rows[0]['kappa_full']:.3f}.", "",
                 "| concept left out | kappa without it | drop |", "| --- | --- | --- |"]
        lines += [f"| {r['concept']} | {r['kappa_without']:.3f} | {r['kappa_drop']:+.3f} |" for r in rows]
        run.write_text("surrogates/ablation.md", "\n".join(lines) + "\n")
    return rows


def _csv(rows: list[dict]) -> str:
    keys = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    w = csv.DictWriter(buf, keys)
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{v[0]:.4f}–{v[1]:.4f}" if isinstance(v, list) else v) for k, v in r.items()})
    return buf.getvalue()


def fidelity_markdown(rows: list[dict]) -> str:
    arrow = {k: "↑" if d == "higher" else "↓" for k, (d, _) in FIDELITY_METRICS.items()}
    f = lambda v: "–" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.3f}"  # noqa: E731
    ci = lambda r, k: f" [{r[k][0]:.3f}, {r[k][1]:.3f}]" if k in r else ""  # noqa: E731
    lines = ["# Surrogate fidelity (test split; surrogates fitted to the CNN's train predictions)", "",
             f"| surrogate | features | fidelity {arrow['fidelity']} | train fidelity | kappa {arrow['kappa']} | balanced fidelity {arrow['balanced_fidelity']} | "
             f"non-majority agreement {arrow['non_majority_fidelity']} | TV distance {arrow['tv_distance']} | ACC {arrow['acc']} | "
             f"AUC {arrow['auc']} | complexity | fitted on | fit s |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in sorted(rows, key=lambda r: (r["features"] != "any", r["features"], r["surrogate"])):
        depth = f" (depth {r['depth']})" if "depth" in r else ""
        lines.append(f"| {r['surrogate']}{depth} | {r['features']} | {f(r['fidelity'])}{ci(r, 'fidelity_ci95')} | "
                     f"{f(r.get('train_fidelity'))} | {f(r['kappa'])}{ci(r, 'kappa_ci95')} | {f(r['balanced_fidelity'])} | {f(r['non_majority_fidelity'])} | "
                     f"{f(r.get('tv_distance'))} | {f(r.get('acc'))} | {f(r.get('auc'))} | "
                     f"{r['complexity_text']} | {r.get('fit_rows', '–')} | {r['fit_s']:.2f} |")
    lines += ["", "↑ higher is better, ↓ lower is better. Brackets: bootstrap 95% intervals over test images.", ""]
    lines += [f"- **{k}**: {d}" for k, (_, d) in FIDELITY_METRICS.items()]
    lines += ["- **fitted on**: images the surrogate was fitted to — the train split, plus for XGBoost and the concept "
              "trees the transfer set: augmented copies of the train images labelled by the CNN (hybrid.transfer)."]
    lines += ["- **complexity**: non-zero coefficients (logistic), leaves (tree), or trees × their maximum depth "
              "(XGBoost grows one tree per class in every boosting round)."]
    lines += ["- **train fidelity**: agreement with the CNN on the train images the surrogate was fitted to. Far above "
              "test fidelity: the surrogate memorised; close to it: its capacity, not the data, is the limit."]
    lines += ["- **majority**: always the CNN's most frequent prediction (nevus) — the floor any surrogate must beat.",
              f"- **tree**: the depth ≤ {READABLE_DEPTH} with the best validation fidelity (readable default); "
              "the full 1–12 sweep is in depth_sweep.csv/png.", ""]
    return "\n".join(lines)


def _sweep_png(sweeps: list[dict]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    for fs in dict.fromkeys(r["features"] for r in sweeps):
        rs = [r for r in sweeps if r["features"] == fs]
        line, = ax.plot([r["leaves"] for r in rs], [r["test_fidelity"] for r in rs], marker="o", ms=3, label=fs)
        ax.plot([r["leaves"] for r in rs], [r["train_fidelity"] for r in rs], ls="--", lw=1, color=line.get_color(), alpha=0.6)
        for r in rs:
            if r["depth"] in (2, 4, 6, 8, 12):
                ax.annotate(str(r["depth"]), (r["leaves"], r["test_fidelity"]), fontsize=7, alpha=0.7,
                            xytext=(2, 2), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("leaves (log scale; labels = depth)")
    ax.set_ylabel("fidelity to the CNN")
    ax.set_title("Decision-tree surrogates: fidelity versus complexity")
    ax.grid(alpha=0.3)
    ax.plot([], [], ls="--", lw=1, color="grey", label="dashed: on the train\nimages it was fitted to")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1), title="test fidelity", title_fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    return buf.getvalue()


__all__ = ["features_stage", "surrogates_stage", "load_tables", "load_joblib", "CONCEPT_NAMES"]
