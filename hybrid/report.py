"""The run report: one self-contained HTML file (images embedded) and summary.md → report/*.

Every number in summary.md is read from a JSON file of the run and listed, with its source, in
report/summary.json, so a test can check each one against its source. The HTML collects the
markdown tables and figures the stages wrote, plus the concept tree's melanoma rules and the
manifest (versions, data checksums, stage timings).
"""
from __future__ import annotations

import base64
import html
import json
import statistics
from pathlib import Path

import markdown

from .artifacts import RunDir
from .errors import HybridError
from .model_card import caveats_section, model_card

# (section title, markdown files, figures) in report order; a missing file is named, not hidden
SECTIONS = [
    ("Backbone", ["metrics.md"], []),
    ("Surrogates and fidelity", ["surrogates/fidelity.md", "features/probe_r2.md"], ["surrogates/depth_sweep.png"]),
    ("Explanations side by side", [], ["explain/gallery.png"]),
    ("Faithfulness of the explanations", ["explain/faithfulness.md", "explain/regions.md"],
     ["explain/deletion_curves.png", "explain/insertion_curves.png", "explain/region_disagreements.png"]),
    ("Safety audit", ["audit/audit.md"], ["audit/off_lesion.png", "audit/skin_shift.png"]),
]
REQUIRED = ["metrics.json", "surrogates/fidelity.json"]
# written only when there is something to show; the markdown beside it says so when it is not
OPTIONAL = {"explain/region_disagreements.png"}


def _get(obj, path):
    for k in path:
        obj = obj[k]
    return obj


def _fmt(v) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return str(v)
    return f"{v:.3f}"


def summary_items(run: RunDir) -> list[dict]:
    """The headline numbers: label, the JSON file and key path they come from, their text, and the
    group (the CNN, its surrogates, the audit, another clinic) the summary lists them under."""
    items = []
    group = "The CNN"

    def add(label: str, rel: str, *path):
        if rel in run.manifest["files"]:
            try:
                v = _get(run.read_json(rel), path)
            except (KeyError, IndexError, TypeError):
                return
            if v is not None:
                items.append({"label": label, "file": rel, "path": list(path), "text": _fmt(v), "value": v,
                              "group": group})

    m = run.read_json("metrics.json")
    head = m.get("headline", "test")
    for split in dict.fromkeys(["test", head]):
        view = " with test-time augmentation" if split.endswith("_tta") else ""
        add(f"CNN test accuracy{view}", "metrics.json", split, "acc")
        add(f"CNN test AUC{view}", "metrics.json", split, "auc")
    group = "Surrogates distilled from the CNN"
    fid = run.read_json("surrogates/fidelity.json")
    for family in ("logistic", "tree", "xgboost"):
        rows = [(i, r) for i, r in enumerate(fid) if r["surrogate"] == family]
        if rows:
            i, best = max(rows, key=lambda ir: ir[1]["fidelity"])
            add(f"best {family} surrogate ({best['name']}): fidelity to the CNN", "surrogates/fidelity.json", i, "fidelity")
            add(f"best {family} surrogate ({best['name']}): Cohen's kappa", "surrogates/fidelity.json", i, "kappa")
    for i, r in enumerate(fid):
        if r["name"] == "concepts__xgboost":
            add("XGBoost on measured concepts (concepts__xgboost): Cohen's kappa", "surrogates/fidelity.json", i, "kappa")
        if r["name"] == "concepts__tree":
            add("readable concept tree (concepts__tree): fidelity", "surrogates/fidelity.json", i, "fidelity")
            add("readable concept tree (concepts__tree): Cohen's kappa", "surrogates/fidelity.json", i, "kappa")
        if r["name"] == "majority":
            add("trivial surrogate (always the majority class): fidelity", "surrogates/fidelity.json", i, "fidelity")
    a = "audit/audit.json"
    group = "Safety audit"
    add("planted-stamp probe: flagged for a shortcut", a, "shortcut", "flagged")
    add("planted-stamp probe: enrichment on the stamp under the rule's method(s)", a, "shortcut", "median_enrichment")
    add("planted-stamp probe: the rule flags at enrichment ≥", a, "rule", "flag_enrichment")
    add("planted-stamp probe: share of predictions changed by the stamp", a, "shortcut", "flip_rate")
    add("test images sharing a lesion with train", a, "leakage", "n_leaked")
    add("skin counterfactual: melanoma-vs-nevus AUC with each class's typical skin colour", a, "skin_swap", "auc", "control")
    add("skin counterfactual: the same AUC with the two skin colours swapped, the lesions kept", a, "skin_swap", "auc", "swap")
    add("CNN accuracy, full test set", a, "leakage", "rows", 0, "acc")
    add("CNN accuracy, leak-free test subset", a, "leakage", "rows", 1, "acc")
    ext = "external"
    name = run.read_json(a).get(ext, {}).get("name") if a in run.manifest["files"] else None
    if name:
        group = "Another clinic: melanoma against nevus"
        add("DermaMNIST test: melanoma-vs-nevus AUC", a, ext, "sets", "DermaMNIST test", "binary", "auc")
        add("DermaMNIST test without the follow-up nevi (photographed apart): melanoma-vs-nevus AUC",
            a, ext, "sets", "DermaMNIST test, no follow-up nevi", "binary", "auc")
        add(f"{name}: melanoma-vs-nevus AUC", a, ext, "sets", name, "binary", "auc")
        add(f"{name}: melanoma sensitivity at the validation operating point", a, ext, "sets", name, "binary", "sensitivity")
        add(f"{name}: specificity at the validation operating point", a, ext, "sets", name, "binary", "specificity")
        add(f"{name}: melanoma sensitivity at argmax", a, ext, "sets", name, "binary", "sensitivity_argmax")
        add(f"{name}: share of images beyond validation's 99% embedding distance (about 0.01 if unshifted)",
            a, ext, "sets", name, "shift", "outside_fraction")
        add(f"{name}: embedding-distance AUC against validation (0.5 if unshifted; warned when Mann–Whitney p < 0.001)",
            a, ext, "sets", name, "shift", "distance_auc")
    return items


def summary_markdown(items: list[dict]) -> str:
    lines, group = ["# Summary"], None
    for it in items:
        if it["group"] != group:
            group = it["group"]
            lines += ["", f"## {group}", ""]
        lines.append(f"- {it['label']}: **{it['text']}** (`{it['file']}`)")
    return "\n".join(lines) + "\n"


def _img(run: RunDir, rel: str) -> str:
    data = base64.b64encode(run.verify(rel).read_bytes()).decode()
    return f'<figure><img alt="{html.escape(rel)}" src="data:image/png;base64,{data}"><figcaption>{html.escape(rel)}</figcaption></figure>'


def _md(text: str) -> str:
    """Markdown → HTML, every heading one level down: the report's sections are the <h1>s."""
    fenced, out = False, []
    for line in text.splitlines():
        fenced ^= line.startswith("```")
        out.append("#" + line if line.startswith("#") and not fenced else line)
    return markdown.markdown("\n".join(out), extensions=["tables", "fenced_code"])


def _missing(rel: str) -> str:
    return f'<p class="missing">{html.escape(rel)} is not in this run yet; run the stage that writes it (see README).</p>'


def _rules_html(run: RunDir) -> str:
    from .concepts import REGISTRY
    from .features import feature_matrix
    from .rules import extract_rules, format_rules
    from .surrogate_stage import load_joblib, load_tables

    rel = "surrogates/concepts__tree.joblib"
    if rel not in run.manifest["files"]:
        return _missing(rel)
    tree = load_joblib(run, rel)
    test = load_tables(run)["test"]
    X, feat = feature_matrix(test, "concepts")
    rules = extract_rules(tree, X, test["pred"], feat, [REGISTRY[f].unit for f in feat])
    names = list(run.read_json("metrics.json")["test"]["per_class"])
    mel = names.index("melanoma") if "melanoma" in names else None
    top = sorted(rules, key=lambda r: -r.support)[:8]
    mel_text = format_rules(rules, names, mel) if mel is not None else "(no melanoma class)"
    return (f"<p>Rules of the readable concept tree (concepts__tree), with support and CNN agreement on the test "
            f"split; all {len(rules)} leaves: <code>hybrid rules RUN</code>.</p><h3>The CNN's melanoma calls</h3>"
            f"<pre>{html.escape(mel_text)}</pre><h3>The most-supported rules, any class</h3>"
            f"<pre>{html.escape(format_rules(top, names))}</pre>")


def _manifest_html(run: RunDir) -> str:
    man = run.manifest
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{v.get('wall_s', '')}</td><td>{v.get('peak_rss_mb', '')}</td></tr>"
                   for k, v in man.get("stages", {}).items())
    vers = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(str(v))}</td></tr>" for k, v in man.get("versions", {}).items())
    data = html.escape(str(man.get("data", {}).get("md5", man.get("data", {}))))
    return (f"<p>hybrid {html.escape(str(man.get('hybrid_version')))}, seed {man.get('seed')}, git commit <code>{html.escape(str(man.get('git_commit')))}</code>, "
            f"created {html.escape(str(man.get('created')))}. Every file's sha256: manifest.json "
            f"(<code>hybrid verify RUN</code>).</p><h3>Stage timings</h3><table><thead><tr><th>stage</th><th>wall s</th>"
            f"<th>peak RSS MiB</th></tr></thead><tbody>{rows}</tbody></table><h3>Versions</h3><table><tbody>{vers}</tbody>"
            f"</table><h3>Data checksums</h3><pre>{data}</pre>")


CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px}
th{background:#f3f3f3}img{max-width:100%}figure{margin:1em 0}figcaption{font-size:12px;color:#666}
pre{background:#f7f7f7;padding:8px;overflow-x:auto;font-size:12px}.missing{color:#a00}
section{border-top:2px solid #ddd;margin-top:2em}
.caveats{background:#fff8e1;border-left:4px solid #f0a800;padding:2px 12px;margin:1em 0}"""
# Counts images that failed to load, for the headless-browser test (tests/test_report.py).
SCRIPT = """window.addEventListener('load',()=>{const b=[...document.images].filter(i=>!i.complete||i.naturalWidth===0);
const e=[...document.querySelectorAll('section')].filter(s=>s.children.length<2||!s.textContent.trim());
document.body.dataset.brokenImages=String(b.length);document.body.dataset.images=String(document.images.length);
document.body.dataset.emptySections=String(e.length);document.body.dataset.sections=String(document.querySelectorAll('section').length);
document.body.dataset.missing=String(document.querySelectorAll('.missing').length);});"""


def card_markdown(run: RunDir) -> str:
    """The run's model card (hybrid.model_card) from its checksum-verified JSON files."""
    def read(rel):
        return run.read_json(rel) if rel in run.manifest["files"] else None

    return model_card(run.manifest, run.read_json("metrics.json"), run.read_json("surrogates/fidelity.json"),
                      read("audit/audit.json"), read("explain/faithfulness.json"))


def _require(run: RunDir) -> None:
    for rel in REQUIRED:
        if rel not in run.manifest["files"]:
            raise HybridError(f"Run folder {run.path} has no {rel}; run `hybrid train` and `hybrid surrogates` first.")


def compare_markdown(columns: dict[str, list[dict]], spread: bool = False) -> str:
    """Runs side by side: one row per summary label (in the order they first appear), one column per
    run (its summary items); '–' where a run lacks the number. With `spread`, a last column gives the
    mean ± sample sd over the runs of each number every run has (e.g. the seeds of one preset)."""
    labels = list(dict.fromkeys(it["label"] for items in columns.values() for it in items))
    text = {name: {it["label"]: it["text"] for it in items} for name, items in columns.items()}
    value = {name: {it["label"]: it.get("value") for it in items} for name, items in columns.items()}
    head = list(columns) + (["mean ± sd"] if spread else [])
    lines = ["| | " + " | ".join(head) + " |", "| --- |" + " --- |" * len(head)]
    for label in labels:
        cells = [text[n].get(label, "–") for n in columns]
        if spread:
            vals = [value[n].get(label) for n in columns]
            ok = len(vals) > 1 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals)
            cells.append(f"{statistics.mean(vals):.3f} ± {statistics.stdev(vals):.3f}" if ok else "")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def run_items(run: RunDir) -> list[dict]:
    """What `hybrid compare` lists for a run: its recipe (preset, seed, model, commit), then its summary."""
    _require(run)
    man, m = run.manifest, run.manifest["config"]["model"]
    recipe = {"preset": man["config"]["run"]["name"], "seed": str(man.get("seed")),
              "model": f"{m['arch']}, width {m['width']}, {man['config']['data']['size']} px",
              "epochs": str(man["config"]["train"]["epochs"]), "git commit": str(man.get("git_commit"))[:10]}
    return [{"label": k, "text": v} for k, v in recipe.items()] + summary_items(run)


def closing_text(run_path: Path) -> str:
    """What `hybrid report` and `make run` print last: the summary, the model card's caveats and where
    the card and the report are (read from disk, as a skipped report stage leaves them)."""
    report = Path(run_path) / "report"
    out = ""
    if (report / "summary.md").is_file():
        out += (report / "summary.md").read_text() + "\n"
    if (report / "model_card.md").is_file():
        out += f"{caveats_section((report / 'model_card.md').read_text())}\nThe model card: {report / 'model_card.md'}\n"
    return out + f"report: {report / 'report.html'}\n"


def build_report(run: RunDir) -> dict:
    """Write report/report.html, report/summary.md, report/summary.json and report/model_card.md;
    returns the summary items."""
    _require(run)
    items = summary_items(run)
    summary = summary_markdown(items)
    card = card_markdown(run)
    body, warn = card.split("\n", 2)[2], caveats_section(card)
    card_html = _md(body.removesuffix(warn)) + f'<div class="caveats">{_md(warn)}</div>'
    sections = [("Summary", _md(summary.split("\n", 2)[2])), ("Model card", card_html)]
    for title, mds, figs in SECTIONS:
        body = []
        for rel in mds:
            body.append(_md(run.verify(rel).read_text()) if rel in run.manifest["files"] else _missing(rel))
        for rel in figs:
            if rel in run.manifest["files"]:
                body.append(_img(run, rel))
            elif rel not in OPTIONAL:
                body.append(_missing(rel))
        if title == "Surrogates and fidelity":
            body.append("<h2>Rules</h2>" + _rules_html(run))
        sections.append((title, "\n".join(body)))
    ext = sorted(k for k in run.manifest["files"] if k.startswith("evaluate/") and k.endswith(".md"))
    sections.append(("External evaluation", "\n".join(_md(run.verify(k).read_text()) for k in ext) if ext
                     else "<p>No external set evaluated yet: <code>hybrid evaluate RUN --external PATH.npz</code>.</p>"))
    sections.append(("Manifest", _manifest_html(run)))
    toc = "".join(f'<li><a href="#s{i}">{html.escape(t)}</a></li>' for i, (t, _) in enumerate(sections))
    body = "".join(f'<section id="s{i}"><h1>{html.escape(t)}</h1>{b}</section>' for i, (t, b) in enumerate(sections))
    page = (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>hybrid report: {html.escape(run.path.name)}"
            f"</title><style>{CSS}</style><script>{SCRIPT}</script></head><body><p>hybrid run <code>{html.escape(str(run.path))}"
            f"</code> — research use, not a medical device.</p><ul>{toc}</ul>{body}</body></html>")
    run.write_text("report/summary.json", json.dumps(items, indent=1) + "\n")
    run.write_text("report/summary.md", summary)
    run.write_text("report/model_card.md", card)
    run.write_text("report/report.html", page)
    return {"items": items, "html": Path(run.path) / "report" / "report.html"}

