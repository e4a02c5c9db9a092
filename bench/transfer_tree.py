"""Does the depth-≤ 6 tree imitate the CNN better when it also sees the transfer copies? → bench/results_transfer_tree.md

With the 29 mask concepts the tree lost on validation when fitted on the train images plus the
transfer copies (`results_transfer_set.md`). This re-asks it with the 41 concepts, for each feature set
that has copies: the tree's depth (1–6) is chosen on val fidelity as the surrogates stage chooses it,
fitted once on the train images alone and once on train + copies (the CNN's labels). Val chooses,
test reports.

    python bench/transfer_tree.py --runs artifacts/runs/bench/default-seed0 artifacts/runs/bench/default-seed1 \
        artifacts/runs/bench/default-seed2
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hybrid.artifacts import RunDir  # noqa: E402
from hybrid.distill import READABLE_DEPTH  # noqa: E402
from hybrid.features import feature_matrix  # noqa: E402
from hybrid.fidelity import kappa  # noqa: E402
from hybrid.surrogate_stage import TRANSFER_SETS, load_tables, load_transfer  # noqa: E402
from hybrid.surrogates import Surrogate  # noqa: E402


def best_tree(X, y, Xva, yva, seed):
    """The depth ≤ READABLE_DEPTH with the best val fidelity, as hybrid.distill picks it."""
    best = None
    for d in range(1, READABLE_DEPTH + 1):
        s = Surrogate("tree", 7, random_state=seed, max_depth=d).fit(X, y)
        f = float((s.predict(Xva) == yva).mean())
        if best is None or f > best[0]:
            best = (f, s)
    return best[1]


def one_run(path: str) -> dict:
    run = RunDir.open(path)
    seed = run.manifest["config"]["run"]["seed"]
    t, tf = load_tables(run), load_transfer(run)
    out = {}
    for fs in TRANSFER_SETS:
        X = {s: feature_matrix(t[s], fs)[0] for s in t}
        y = {s: t[s]["pred"] for s in t}
        Xc = feature_matrix(tf, fs)[0]
        for data, (Xf, yf) in {"train": (X["train"], y["train"]),
                               "train + copies": (np.concatenate([X["train"], Xc]), np.concatenate([y["train"], tf["pred"]]))}.items():
            s = best_tree(Xf, yf, X["val"], y["val"], seed)
            r = {"depth": s.complexity()["depth"], "rows": len(yf)}
            for sp in ("train", "val", "test"):
                p = s.predict(X[sp])
                r[sp] = (float((p == y[sp]).mean()), kappa(y[sp], p))
            out[(fs, data)] = r
            print(path, fs, data, r, flush=True)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", nargs="+", required=True)
    ap.add_argument("--out", default="bench/results_transfer_tree.md")
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    res = {p: one_run(p) for p in a.runs}
    lines = ["# The depth-≤ 6 tree on the train images alone or with the transfer copies", "",
             f"`python bench/transfer_tree.py --runs {' '.join(a.runs)}` ({time.perf_counter() - t0:.0f} s).", "",
             "Depth chosen on val fidelity (1–6), as the surrogates stage chooses it; fidelity / κ with the CNN. "
             "*train* is agreement on the 7,007 train images (part of what the tree was fitted to in both rows). "
             "Targets (issue 3, concepts): tree depth ≤ 6 fidelity ≥ 0.85 and κ ≥ 0.60.", "",
             "| run | features | fitted on | depth | train fid | val fid / κ | test fid / κ |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    keys = list(next(iter(res.values())))
    for p in a.runs:
        for k in keys:
            r = res[p][k]
            lines.append(f"| {Path(p).name} | {k[0]} | {k[1]} ({r['rows']:,}) | {r['depth']} | {r['train'][0]:.3f} | "
                         f"{r['val'][0]:.3f} / {r['val'][1]:.3f} | {r['test'][0]:.3f} / {r['test'][1]:.3f} |")
    lines += ["", "Mean over the runs:", "", "| features | fitted on | val fid / κ | test fid / κ | runs where val fidelity rose |",
              "| --- | --- | --- | --- | --- |"]
    for k in keys:
        v = np.mean([res[p][k]["val"] for p in a.runs], 0)
        te = np.mean([res[p][k]["test"] for p in a.runs], 0)
        rose = sum(res[p][(k[0], "train + copies")]["val"][0] > res[p][(k[0], "train")]["val"][0] for p in a.runs) \
            if k[1] == "train + copies" else ""
        rose = f"{rose} of {len(a.runs)}" if rose != "" else "–"
        lines.append(f"| {k[0]} | {k[1]} | {v[0]:.3f} / {v[1]:.3f} | {te[0]:.3f} / {te[1]:.3f} | {rose} |")
    Path(a.out).write_text("\n".join(lines) + "\n")
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
