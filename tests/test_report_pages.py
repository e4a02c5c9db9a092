"""Pages built from a run's numbers. The model card's caveats are rules on those numbers: a run inside
every threshold gets none, and pushing one number across its line adds exactly that caveat. The
run comparison lists every number once, with a dash where a run lacks it."""
import copy

from hybrid.model_card import MIN_GAIN, MIN_GROUP, TREE_FIDELITY, caveats, model_card

CLASSES = ["akiec", "bcc", "bkl", "df", "melanoma", "nevus", "vasc"]


def _metrics(ece=0.03, acc=0.9):
    per = {c: {"precision": 0.8, "recall": 0.7, "support": 40 if c == "nevus" else 5} for c in CLASSES}
    test = {"n": 70, "acc": acc, "auc": 0.95, "balanced_acc": 0.7, "ece": ece, "per_class": per,
            "acc_ci95": [0.85, 0.95], "auc_ci95": [0.93, 0.97]}
    return {"train_info": {"best_epoch": 3, "best_val_auc": 0.9, "device": "cpu", "epochs_done": 3},
            "test": test, "headline": "test"}


def _binary(sens, auc=0.9):
    return {"auc": auc, "sensitivity": sens, "specificity": 0.8, "sensitivity_argmax": sens, "specificity_argmax": 0.9}


def _audit():
    """An audit inside every threshold: no caveat applies."""
    tones = [{"group": g, "n": MIN_GROUP, "acc": 0.8, "auc": 0.9} for g in
             ("dark (< −30°)", "brown (−30–10°)", "tan (10–28°)", "very light (> 55°)")]
    return {"skin_swap": {"auc": {"before": 0.9, "control": 0.92, "swap": 0.88}},
            "skin_tone": tones, "subgroups": {},
            "leakage": {"n_leaked": 0, "n_test": 70, "rows": []},
            "shortcut": {"flagged": False},
            "external": {"name": "clinic", "operating_point": {"target_sensitivity": 0.8, "temperature": 1.0, "threshold": 0.3},
                         "sets": {"DermaMNIST test": {"n": 70, "ece_calibrated": 0.02, "binary": _binary(0.85)},
                                  "clinic": {"n": 30, "binary": _binary(0.75), "shift": {"p_value": 0.2, "distance_auc": 0.55}}}}}


def _manifest():
    cfg = {"run": {"name": "t"}, "data": {"size": 28},
           "model": {"arch": "resnet", "width": 8, "head": "grid", "embed_dim": 16}, "train": {"epochs": 3}}
    return {"config": cfg, "hybrid_version": "0", "git_commit": "abc", "seed": 0,
            "data": {"flag": "dermamnist", "md5": "0" * 32, "size": 28, "n": {"train": 7, "val": 1, "test": 2}}}


def test_a_run_inside_every_threshold_gets_no_caveat():
    assert caveats(_metrics(), _audit()) == []
    card = model_card(_manifest(), _metrics(), [], _audit())
    assert "None of the rules applies to this run." in card


def test_each_number_across_its_line_adds_exactly_its_caveat():
    def bump(path, value):
        a = copy.deepcopy(_audit())
        obj = a
        for k in path[:-1]:
            obj = obj[k]
        obj[path[-1]] = value
        return caveats(_metrics(), a)

    cases = {
        "depends on the skin around the lesion": bump(["skin_swap", "auc", "swap"], 0.70),
        "Darker skin is scarce": bump(["skin_tone", 0, "n"], MIN_GROUP - 1),
        "show a lesion also in train": bump(["leakage"], {"n_leaked": 5, "n_test": 70,
                                                          "rows": [{"acc": 0.9}, {"acc": 0.85}]}),
        "planted-stamp probe flagged": bump(["shortcut", "flagged"], True),
        "finds 60.0% of melanomas against the 80.0%": bump(["external", "sets", "clinic", "binary"], _binary(0.6)),
        "shift warning fires on clinic": bump(["external", "sets", "clinic", "shift", "p_value"], 1e-5),
        "calls only 50.0% of test melanomas": bump(["external", "sets", "DermaMNIST test", "binary"], _binary(0.5)),
    }
    for phrase, got in cases.items():
        assert len(got) == 1 and phrase in got[0], (phrase, got)
    assert caveats(_metrics(acc=40 / 70 + MIN_GAIN), _audit()) == []  # always nevus: 40 of 70
    close = caveats(_metrics(acc=0.6), _audit())
    assert len(close) == 1 and "(0.600) is less than 0.05 above always answering *nevus* (0.571)" in close[0]
    calib = caveats(_metrics(ece=0.08), _audit())
    assert len(calib) == 1 and "test ECE 0.080" in calib[0] and "0.020 after it" in calib[0]


def _faith(ig_deletion):
    rows = [{"method": "random", "deletion_auc": 0.2, "insertion_auc": 0.5},
            {"method": "integrated_gradients", "deletion_auc": ig_deletion, "insertion_auc": 0.6}]
    return {"rows": rows}


def test_a_rough_tree_and_maps_no_better_than_random_are_caveats():
    tree = {"name": "concepts__tree", "fidelity": TREE_FIDELITY, "kappa": 0.6}
    assert caveats(_metrics(), _audit(), [tree], _faith(0.1)) == []
    rough = caveats(_metrics(), _audit(), [{**tree, "fidelity": TREE_FIDELITY - 0.01}], _faith(0.1))
    assert len(rough) == 1 and "imitates the CNN only roughly: it agrees on 84.0%" in rough[0]
    noisy = caveats(_metrics(), _audit(), [tree], _faith(0.3))  # deletes the target more slowly than random
    assert len(noisy) == 1 and "No saliency method beat a random map" in noisy[0]
    assert "random map on both deletion and insertion: Integrated Gradients" in model_card(
        _manifest(), _metrics(), [tree], _audit(), _faith(0.1))


def test_a_run_without_an_audit_says_so_and_lists_no_subgroups():
    got = caveats(_metrics(), None)
    assert got == ["No audit in this run: shortcuts, subgroups and shift are unmeasured (`hybrid audit RUN`)."]
    assert "## Factors" not in model_card(_manifest(), _metrics(), [], None)


def test_subgroups_under_the_minimum_size_are_left_out_of_the_table():
    a = _audit()
    a["subgroups"] = {"sex": [{"group": "female", "n": MIN_GROUP, "acc": 0.81, "acc_ci95": [0.7, 0.9], "majority_acc": 0.6,
                               "auc": 0.91},
                              {"group": "unknown", "n": MIN_GROUP - 1, "acc": 0.5, "auc": 0.6}]}
    card = model_card(_manifest(), _metrics(), [], a)
    assert f"| sex | female | {MIN_GROUP} | 0.810 [0.700, 0.900] | 0.600 | 0.910 |" in card
    assert "| sex | unknown |" not in card and "| accuracy [95% CI] | always *nevus* | AUC |" in card


def test_compare_lists_every_label_once_in_first_seen_order_with_a_dash_where_missing():
    from hybrid.report import compare_markdown

    a = [{"label": "acc", "text": "0.800"}, {"label": "auc", "text": "0.950"}]
    b = [{"label": "acc", "text": "0.810"}, {"label": "kappa", "text": "0.700"}]
    assert compare_markdown({"a": a, "b": b}).splitlines() == [
        "| | a | b |", "| --- | --- | --- |", "| acc | 0.800 | 0.810 |", "| auc | 0.950 | – |", "| kappa | – | 0.700 |"]


def test_the_caveats_section_is_what_is_printed_last():
    from hybrid.model_card import caveats_section

    card = model_card(_manifest(), _metrics(ece=0.08), [], _audit())
    section = caveats_section(card)
    assert section.startswith("## Caveats and recommendations") and "test ECE 0.080" in section
    assert "## Metrics" not in section and card.endswith(section)


def test_compare_spread_is_the_mean_and_sample_sd_of_numbers_every_run_has():
    from hybrid.report import compare_markdown

    runs = {f"seed{i}": [{"label": "preset", "text": "default"}, {"label": "acc", "text": f"{v:.3f}", "value": v},
                         {"label": "flagged", "text": "no", "value": False}]
            for i, v in enumerate([0.79, 0.80, 0.81])}
    runs["seed2"].append({"label": "ph2 AUC", "text": "0.800", "value": 0.8})
    lines = compare_markdown(runs, spread=True).splitlines()
    assert lines[0] == "| | seed0 | seed1 | seed2 | mean ± sd |"
    assert "| acc | 0.790 | 0.800 | 0.810 | 0.800 ± 0.010 |" in lines
    assert "| preset | default | default | default |  |" in lines and "| flagged | no | no | no |  |" in lines
    assert "| ph2 AUC | – | – | 0.800 |  |" in lines
