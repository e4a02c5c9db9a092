"""Features → surrogates → fidelity → rules through the CLI on a tiny real run."""
import json

import numpy as np
import pytest

from hybrid.cli import main
from hybrid.concepts import CONCEPT_NAMES
from hybrid.external import default_external
from hybrid.shift import SHIFT_ALPHA

from .conftest import PROJECT, tampered_copy, tiny_cli_args, train_tiny_run

ARGS = tiny_cli_args(epochs=1, n_bootstrap=20)


@pytest.fixture(scope="module")
def run(tmp_path_factory, data_root):
    run = train_tiny_run(tmp_path_factory, data_root, ARGS)
    assert main(["rules", str(run)]) == 2  # before the stages exist: a clear refusal
    assert main(["features", str(run), "--data-root", str(data_root)]) == 0
    assert main(["surrogates", str(run), "--n-bootstrap", "50"]) == 0
    return run


def test_feature_tables_are_complete(run):
    with np.load(run / "features/test.npz") as z:
        assert {"embeddings", "proba", "pred", "concepts", "cnn_concepts", "masks", "labels", "index"} <= set(z.files)
        assert z["concepts"].shape == z["cnn_concepts"].shape == (600, len(CONCEPT_NAMES))
        assert np.array_equal(z["pred"], z["proba"].argmax(1))
    r2 = json.loads((run / "features/probe_r2.json").read_text())
    assert set(r2) >= {"asymmetry", "skin_ita", "hair"}
    assert (run / "features/test_metadata.csv").read_text().startswith("index,split")


def test_fidelity_table_and_sweep(run, capsys):
    rows = json.loads((run / "surrogates/fidelity.json").read_text())
    names = {r["name"] for r in rows}
    for fs in ("embeddings", "concepts", "cnn_concepts"):
        for fam in ("logistic", "tree", "xgboost"):
            assert f"{fs}__{fam}" in names
    assert "majority" in names
    maj = next(r for r in rows if r["name"] == "majority")
    assert maj["kappa"] == 0.0
    with np.load(run / "features/train.npz") as z:  # the constant surrogate agrees with the CNN's own share
        assert maj["train_fidelity"] == pytest.approx(np.bincount(z["pred"]).max() / len(z["pred"]))
    for r in rows:
        assert 0 <= r["fidelity"] <= 1 and r["fidelity_ci95"][0] <= r["fidelity"] <= r["fidelity_ci95"][1]
    assert (run / "surrogates/depth_sweep.png").read_bytes()[:4] == b"\x89PNG"
    assert "train_fidelity" in (run / "surrogates/depth_sweep.csv").read_text().splitlines()[0]
    assert main(["fidelity", str(run)]) == 0
    assert "| majority | any |" in capsys.readouterr().out


def test_transfer_set_is_the_cnns_answers_on_copies_of_train_and_feeds_xgboost_and_the_tree(run, data_root):
    from hybrid.artifacts import RunDir
    from hybrid.concepts import measure_concepts
    from hybrid.data import load_dataset
    from hybrid.stages import load_backbone
    from hybrid.train import embed_and_proba
    from hybrid.transfer import COPIES, augmented_copies

    train = load_dataset("dermamnist", 28, data_root, subset=600).splits["train"].images
    copies = augmented_copies(train, seed=0)
    assert copies.shape == (COPIES * 600, 28, 28, 3) and not np.array_equal(copies[:600], copies[600:1200])
    with np.load(run / "features/transfer.npz") as z:
        assert np.array_equal(z["source"], np.tile(np.arange(600), COPIES))
        assert np.allclose(z["concepts"], measure_concepts(copies), atol=1e-5)
        model = load_backbone(RunDir.open(run))[0].fused()
        emb, proba = embed_and_proba(model, copies)
        assert np.array_equal(z["pred"], proba.argmax(1)) and np.allclose(z["embeddings"], emb, atol=1e-5)
    fit_rows = {r["name"]: r["fit_rows"] for r in json.loads((run / "surrogates/fidelity.json").read_text())}
    assert fit_rows["concepts__xgboost"] == fit_rows["cnn_concepts__xgboost"] == fit_rows["embeddings__xgboost"] == (COPIES + 1) * 600
    assert fit_rows["concepts__tree"] == fit_rows["cnn_concepts__tree"] == (COPIES + 1) * 600
    assert fit_rows["concepts__logistic"] == fit_rows["embeddings__logistic"] == fit_rows["embeddings__tree"] == 600


def test_a_transfer_table_without_a_feature_sets_columns_adds_no_copies():
    """A run featurised before the copies' embeddings were kept: its embedding surrogates fit the train images alone."""
    from hybrid.surrogate_stage import transfer_rows

    tf = {"pred": np.zeros(4, int), "concepts": np.ones((4, 41)), "cnn_concepts": np.ones((4, 41))}
    assert transfer_rows(tf, "embeddings") is None and transfer_rows(None, "concepts") is None
    X, y = transfer_rows(tf, "concepts")
    assert X.shape == (4, 41) and len(y) == 4
    tf["embeddings"] = np.ones((4, 8))
    assert transfer_rows(tf, "embeddings")[0].shape == (4, 8)


def test_rules_cli_filters_by_class(run, capsys):
    assert main(["rules", str(run)]) == 0
    first = capsys.readouterr().out.split("THEN ")[1].split("   [")[0]  # the most supported rule's class
    assert main(["rules", str(run), "--class", first, "--min-support", "1"]) == 0
    out = capsys.readouterr().out
    assert f"THEN {first}" in out and "support" in out
    assert all(line == f"THEN {first}" for line in (ln.split("   [")[0] for ln in out.splitlines() if ln.startswith("THEN")))
    from hybrid.data import HAM_CODES

    assert main(["rules", str(run), "--class", HAM_CODES[first]]) == 0  # the class by its HAM10000 code, e.g. nv
    out = capsys.readouterr().out
    assert f"THEN {first}" in out
    assert all(ln.startswith(f"THEN {first}") for ln in out.splitlines() if ln.startswith("THEN"))
    assert main(["rules", str(run), "--class", "zebra"]) == 2
    assert "matches no single class" in capsys.readouterr().err
    assert main(["rules", str(run), "--surrogate", "concepts__xgboost"]) == 2
    assert "rules come from tree surrogates" in capsys.readouterr().err


def test_tampered_surrogate_is_not_unpickled(run, tmp_path, capsys):
    copy = tampered_copy(run, tmp_path / "copy", "surrogates/concepts__tree.joblib")
    assert main(["rules", str(copy)]) == 2
    assert "does not match its sha256" in capsys.readouterr().err


def test_feature_tables_of_another_concept_set_are_refused(run, tmp_path, capsys):
    import shutil

    from hybrid.artifacts import RunDir
    from hybrid.concepts import N_MASK_CONCEPTS
    from hybrid.surrogate_stage import _npz_bytes

    shutil.copytree(run, tmp_path / "old")
    old = RunDir.open(tmp_path / "old")
    with np.load(old.path / "features/train.npz") as z:  # as an earlier version wrote it: mask concepts only
        table = {k: z[k] for k in z.files}
    table["concepts"] = table["concepts"][:, :N_MASK_CONCEPTS]
    old.write_bytes("features/train.npz", _npz_bytes(table))
    assert main(["surrogates", str(old.path)]) == 2
    err = capsys.readouterr().err
    assert f"holds {N_MASK_CONCEPTS} concepts per image; this version of hybrid measures {len(CONCEPT_NAMES)}" in err
    assert "hybrid features" in err


def test_explain_and_faithfulness_cli(run, capsys, data_root):
    assert main(["explain", str(run), "--index", "3", "--index", "11", "--quiet"]) == 0
    for i in (3, 11):
        assert (run / f"explain/image_{i}.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["faithfulness", str(run), "--n", "24", "--quiet", "--methods", "gradient", "gradcam", "random"]) == 0
    out = capsys.readouterr().out
    assert "deletion AUC ↓" in out and "insertion AUC ↑" in out and "Random (floor)" in out
    res = json.loads((run / "explain/faithfulness.json").read_text())
    assert len(res["sample"]) == 24 and [r["method"] for r in res["rows"]] == ["gradient", "gradcam", "random"]
    rand = res["rows"][-1]
    assert rand["randomisation_corr"] == pytest.approx(1.0)  # a map that ignores the model fails the check
    assert abs(rand["lesion_mass"] - res["lesion_area_share"]) < 0.05  # uniform noise lands by area
    regions = (run / "explain/regions.md").read_text()
    assert "top-region agreement" in regions
    # no Integrated Gradients in this sample: no example figure, and the markdown says why
    assert "No example disagreements" in regions and not (run / "explain/region_disagreements.png").exists()
    assert main(["verify", str(run)]) == 0


def test_explain_cli_refuses_bad_input(run, capsys):
    assert main(["explain", str(run), "--index", "100000", "--quiet"]) == 2
    assert "outside the test split" in capsys.readouterr().err
    assert main(["explain", str(run)]) == 2
    assert main(["explain", str(run), "--index", "1", "--surrogate", "nope__tree"]) == 2
    assert "no surrogate 'nope__tree'" in capsys.readouterr().err
    assert main(["explain", str(run), "--index", "1", "--tree", "concepts__xgboost"]) == 2
    assert "'concepts__xgboost' is not a tree (kind: xgboost)" in capsys.readouterr().err
    assert main(["faithfulness", str(run), "--methods", "lime"]) == 2


def test_audit_cli(run, capsys):
    assert main(["audit", str(run), "--quiet", "--stamp", "dot", "--n-bootstrap", "20"]) == 0
    out = capsys.readouterr().out
    for section in ("Where the CNN looks", "Planted-shortcut probe", "Lesion-level leakage", "Skin tone", "Controlled shifts",
                    "Another clinic and device: ph2"):
        assert section in out
    res = json.loads((run / "audit/audit.json").read_text())
    assert res["shortcut"]["kind"] == "dot" and isinstance(res["shortcut"]["flagged"], bool)
    assert res["skin_shift"][0]["delta_ita"] == 0 and res["skin_shift"][0]["pred_changed"] == 0.0
    assert res["leakage"]["n_test"] == 600
    ext = res["external"]
    assert ext["sets"]["ph2"]["n"] == 200 and ext["sets"]["ph2"]["binary"]["n_positive"] == 40
    shares = ext["regions"]["gradient"]["ph2"]
    assert sum(shares[r] for r in ("lesion", "border", "skin", "corners", "artifact")) == pytest.approx(1, abs=1e-6)
    assert main(["audit", str(run), "--stamp", "sticker"]) == 2
    assert "unknown" in capsys.readouterr().err


def test_evaluate_cli_on_ph2_and_bad_input(run, capsys, tmp_path):
    assert main(["evaluate", str(run), "--n-bootstrap", "20"]) == 0  # default: the shared PH2 copy
    out = capsys.readouterr().out
    assert "| images (of which melanoma / melanocytic nevi) |" in out and "200 (40 / 160)" in out
    res = json.loads((run / "evaluate/ph2_28.json").read_text())
    op = res["operating_point"]
    assert op["val_sensitivity"] >= op["target_sensitivity"] and op["temperature"] > 0
    te, ext = res["sets"]["DermaMNIST test"], res["sets"]["ph2_28"]
    assert te["n"] == 600 and ext["n"] == 200 and sum(map(sum, ext["confusion"]["counts"])) == 200
    assert set(ext["fidelity"]) >= {"concepts__tree", "embeddings__logistic"}
    # the same run, the same numbers: the operating point is deterministic
    assert main(["evaluate", str(run), "--n-bootstrap", "20", "--name", "again"]) == 0
    again = json.loads((run / "evaluate/again.json").read_text())
    assert again["operating_point"] == op and again["sets"]["again"]["binary"] == ext["binary"]
    # a tiny set, its numbers computed by hand from the CNN's own probabilities
    from hybrid.artifacts import RunDir
    from hybrid.operating import calibrate
    from hybrid.stages import load_backbone
    from hybrid.train import predict_proba

    with np.load(default_external("ph2", 28)) as z:
        pick = np.r_[0:6, 171:181]  # 6 nevi and 10 melanomas
        imgs, labels = z["test_images"][pick], z["test_labels"][pick]
    tiny = tmp_path / "tiny.npz"
    np.savez(tiny, test_images=imgs, test_labels=labels)
    assert main(["evaluate", str(run), "--external", str(tiny), "--n-bootstrap", "0"]) == 0
    got = json.loads((run / "evaluate/tiny.json").read_text())["sets"]["tiny"]["binary"]
    p = calibrate(predict_proba(load_backbone(RunDir.open(run))[0], imgs), op["temperature"])[:, 4]
    mel = labels[:, 0] == 4
    assert 0 < mel.sum() < len(mel)
    assert got["sensitivity"] == pytest.approx((p[mel] >= op["threshold"]).mean())
    assert got["specificity"] == pytest.approx((p[~mel] < op["threshold"]).mean())
    pairs = [(a > b) + 0.5 * (a == b) for a in p[mel] for b in p[~mel]]
    assert got["auc"] == pytest.approx(np.mean(pairs))
    bad = tmp_path / "bad.npz"
    np.savez(bad, test_images=np.zeros((3, 28, 28, 3), np.uint8), test_labels=np.array([[1], [9], [2]]))
    capsys.readouterr()
    assert main(["evaluate", str(run), "--external", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "bad.npz" in err and "expected labels 0–6" in err and "Traceback" not in err
    assert not (run / "evaluate/bad.json").exists()


def test_evaluate_adapt_bn_adds_a_column_and_keeps_the_validation_operating_point(run, capsys, tmp_path):
    assert main(["evaluate", str(run), "--n-bootstrap", "0", "--name", "plain"]) == 0
    assert main(["evaluate", str(run), "--n-bootstrap", "0", "--name", "bn", "--adapt-bn"]) == 0
    out = capsys.readouterr().out
    assert "| bn, BatchNorm adapted |" in out and "Transductive" in out
    plain = json.loads((run / "evaluate/plain.json").read_text())
    res = json.loads((run / "evaluate/bn.json").read_text())
    assert res["operating_point"] == plain["operating_point"]
    assert res["sets"]["bn"]["binary"] == plain["sets"]["plain"]["binary"]  # the plain column is unchanged
    ad = res["sets"]["bn, BatchNorm adapted"]
    assert ad["n"] == 200 and set(ad["fidelity"]) == set(res["sets"]["bn"]["fidelity"])
    assert ad["ece_raw"] != res["sets"]["bn"]["ece_raw"]  # other statistics, other probabilities
    for s in res["sets"].values():
        assert 0 <= s["shift"]["outside_fraction"] <= 1 and s["shift"]["median_distance"] > 0
    assert "embedding distance (median distance)" in out and "embedding distance AUC against validation" in out
    assert ("Warning — bn is shifted" in out) == (res["sets"]["bn"]["shift"]["p_value"] < SHIFT_ALPHA)
    assert "Warning — DermaMNIST test" not in out  # only the external set is tested for shift
    with np.load(default_external("ph2", 28)) as z:
        np.savez(tmp_path / "few.npz", test_images=z["test_images"][:20], test_labels=z["test_labels"][:20])
    assert main(["evaluate", str(run), "--external", str(tmp_path / "few.npz"), "--adapt-bn"]) == 2
    err = capsys.readouterr().err
    assert "at least 32 target images; got 20" in err and "Traceback" not in err
    assert not (run / "evaluate/few.json").exists()


def test_audit_refuses_metadata_without_lesion_id(run, tmp_path, capsys):
    import shutil

    import pandas as pd

    from hybrid.artifacts import RunDir

    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    r = RunDir.open(copy)
    meta = pd.read_csv(copy / "features/test_metadata.csv").drop(columns="lesion_id")
    r.write_text("features/test_metadata.csv", meta.to_csv(index=False))
    assert main(["audit", str(copy), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "test_metadata.csv" in err and "no column 'lesion_id'" in err and "Traceback" not in err


def _chromium_dom(page) -> str:
    import shutil
    import subprocess

    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip("Chromium not installed (Debian package 'chromium'; .ci/run installs it): browser check skipped")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={page.parent / 'chromium-profile'}", "--virtual-time-budget=10000", "--dump-dom"]
    out = subprocess.run([exe, *flags, page.as_uri()], capture_output=True, text=True, timeout=120)
    return out.stdout


def test_report_renders_in_a_browser_and_its_numbers_match_the_json(run, capsys, data_root):
    import re

    from hybrid.report import _fmt, _get

    for rel, stage in (("explain/faithfulness.md", ["faithfulness", str(run), "--n", "20", "--data-root", str(data_root)]),
                       ("explain/gallery.png", ["explain", str(run), "--gallery", "--data-root", str(data_root)]),
                       ("audit/skin_shift.png", ["audit", str(run), "--quiet", "--n-bootstrap", "20"])):
        if not (run / rel).exists():
            assert main(stage) == 0
    assert main(["report", str(run)]) == 0
    printed = capsys.readouterr().out
    assert "report.html" in printed and "The model card: " in printed
    items = json.loads((run / "report/summary.json").read_text())
    summary = (run / "report/summary.md").read_text()
    assert len(items) >= 12
    rest = summary
    for it in items:  # every number is the value in its JSON file
        v = _get(json.loads((run / it["file"]).read_text()), it["path"])
        assert _fmt(v) == it["text"]
        line = f"- {it['label']}: **{it['text']}** (`{it['file']}`)"
        assert line in rest
        rest = rest.replace(line, "")
    assert not re.search(r"\d", rest), f"a number in summary.md that is not from the JSON: {rest!r}"
    from hybrid.metrics import fmt_ci
    from hybrid.model_card import MIN_GROUP

    card = (run / "report/model_card.md").read_text()  # the model card quotes the same files
    test = json.loads((run / "metrics.json").read_text())["test"]
    assert f"- Accuracy {fmt_ci(test['acc'], test['acc_ci95'])}, one-vs-rest AUC {fmt_ci(test['auc'], test['auc_ci95'])}" in card
    for name, c in test["per_class"].items():
        assert f"| {name} | {c['support']} | {fmt_ci(c['recall'])} | {fmt_ci(c['precision'])} |" in card
    assert f"Groups of {MIN_GROUP} images or more" in card and "## Caveats and recommendations" in card
    assert '<div class="caveats"><h3>Caveats and recommendations</h3>' in (run / "report/report.html").read_text()
    dom = _chromium_dom(run / "report/report.html")
    body = re.search(r"<body([^>]*)>", dom)
    assert body, "Chromium did not render the report"
    attrs = dict(re.findall(r'data-([a-z-]+)="([^"]*)"', body[1]))
    assert int(attrs["images"]) >= 6 and attrs["broken-images"] == "0"
    assert int(attrs["sections"]) >= 8 and attrs["empty-sections"] == "0" and attrs["missing"] == "0"
    assert "The most-supported rules" in dom and "IF " in dom and "THEN " in dom  # the tree's rules made it in


def test_compare_puts_two_runs_side_by_side_and_refuses_the_same_run_twice(run, tmp_path, capsys):
    import shutil

    twin = tmp_path / "twin"
    shutil.copytree(run, twin)
    out = tmp_path / "compare.md"
    assert main(["compare", str(run), str(twin), "--out", str(out)]) == 0
    table = capsys.readouterr().out
    assert out.read_text() == table
    rows = [line.split(" | ") for line in table.splitlines()[2:]]
    fid = json.loads((run / "surrogates/fidelity.json").read_text())
    tree = next(r for r in fid if r["name"] == "concepts__tree")
    assert ["| readable concept tree (concepts__tree): fidelity", f"{tree['fidelity']:.3f}", f"{tree['fidelity']:.3f} |"] in rows
    assert len(rows) >= 15 and all(r[1] == r[2].removesuffix(" |") for r in rows)  # a copy: every number equal
    assert main(["compare", str(run), str(twin), "--spread"]) == 0
    spread = capsys.readouterr().out
    assert f"| {tree['fidelity']:.3f} | {tree['fidelity']:.3f} ± 0.000 |" in spread
    assert main(["compare", str(run), str(run) + "/"]) == 2
    assert "given twice" in capsys.readouterr().err
    assert main(["compare", str(run), str(tmp_path)]) == 2
    assert "has no manifest.json" in capsys.readouterr().err


def test_walkthrough_notebook_executes(run, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("HYBRID_RUN", str(run))
    monkeypatch.setenv("HYBRID_INDEX", "3")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(PROJECT / "notebooks" / "walkthrough.ipynb", as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(PROJECT / "notebooks")}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs)
    assert "leaves; melanoma rules" in text and "CNN:" in text
    assert any("image/png" in o.get("data", {}) for o in outputs)  # the side-by-side figure
    assert any("fidelity" in o.get("data", {}).get("text/markdown", "") for o in outputs)
    if (run / "report/model_card.md").exists():  # the report test above made it: its caveats are shown
        assert any("Caveats and recommendations" in o.get("data", {}).get("text/markdown", "") for o in outputs)


def test_surrogates_show_a_progress_bar_unless_quiet(run, tmp_path, capsys):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    assert main(["surrogates", str(copy), "--n-bootstrap", "0"]) == 0
    assert "surrogates: " in capsys.readouterr().err
    assert main(["surrogates", str(copy), "--n-bootstrap", "0", "--quiet"]) == 0
    assert "surrogates: " not in capsys.readouterr().err
