"""SHAP for the distilled surrogates, the tree's rule path for one image, and the comparison of
pixel attributions with concept SHAP region by region.

Explanations are `shap.Explanation` objects with values (N, F, K) over the CNN's full class space
(a class the surrogate never saw gets zeros), so shap's own plots work on `expl[i, :, k]`.
Units: log-odds (margin) for XGBoost and logistic surrogates, probability for the decision tree.
"""
from __future__ import annotations

import numpy as np

from .concepts import REGIONS, REGISTRY
from .faithfulness import mass_share


def _full_classes(values: np.ndarray, base: np.ndarray, present: np.ndarray, n_classes: int, n: int, f: int):
    values = np.asarray(values)
    if values.ndim == 2:  # binary model: one output for the second class
        values = np.stack([-values, values], axis=-1)
        base = np.array([-np.ravel(base)[0], np.ravel(base)[0]])
    full = np.zeros((n, f, n_classes), np.float64)
    full[:, :, present] = values
    fb = np.zeros(n_classes)
    fb[present] = np.ravel(base)[: len(present)]
    return full, fb


def surrogate_explanation(surrogate, X: np.ndarray, feature_names, background: np.ndarray | None = None,
                          max_background: int = 200, seed: int = 0):
    """shap.Explanation (N, F, K) of a fitted `Surrogate` on X (N, F).

    Trees and XGBoost: shap.TreeExplainer (exact, path-dependent). Logistic: shap.LinearExplainer
    on the standardised features with `background` (train rows; required) as the masker.
    """
    import shap

    X = surrogate._check(X).astype(np.float64)
    n, f = X.shape
    k = surrogate.n_classes
    if surrogate.model_ is None:
        vals, base = np.zeros((n, f, k)), np.zeros(k)
        base[surrogate.constant_] = 1.0
        return shap.Explanation(vals, np.tile(base, (n, 1)), data=X, feature_names=list(feature_names))
    if surrogate.kind in ("tree", "xgboost"):
        ex = shap.TreeExplainer(surrogate.model_)
        raw = ex.shap_values(X)
        base = ex.expected_value
    elif surrogate.kind == "logistic":
        if background is None:
            raise ValueError("the logistic surrogate's SHAP needs background rows (e.g. the train split)")
        scaler, lr = surrogate.model_[0], surrogate.model_[-1]
        rng = np.random.default_rng(seed)
        bg = np.asarray(background, np.float64)
        bg = bg[rng.choice(len(bg), min(max_background, len(bg)), replace=False)]
        ex = shap.LinearExplainer(lr, shap.maskers.Independent(scaler.transform(bg), max_samples=len(bg)))
        raw = ex.shap_values(scaler.transform(X))
        base = ex.expected_value
    else:
        raise ValueError(f"no SHAP explainer for surrogate kind '{surrogate.kind}'")
    vals, fb = _full_classes(raw, base, surrogate.present_, k, n, f)
    return shap.Explanation(vals, np.tile(fb, (n, 1)), data=X, feature_names=list(feature_names))


def shap_unit(kind: str) -> str:
    """What `surrogate_explanation`'s values add up to: TreeExplainer explains XGBoost's raw margin and
    LinearExplainer the logistic model's logit (both log-odds); a decision tree (or the constant), probability."""
    return "log-odds" if kind in ("xgboost", "logistic") else "probability"


def concept_units(feature_names) -> list[str]:
    """Each feature's unit from the concept registry; a CNN concept (cnn_<name>) has its concept's
    unit, an embedding dimension none ('')."""
    return [REGISTRY[f.removeprefix("cnn_")].unit if f.removeprefix("cnn_") in REGISTRY else "" for f in feature_names]


def value_labels(feature_names, x: np.ndarray, units) -> list[str]:
    """'name = value unit' for one sample x (F,) — the image's own concept values beside their SHAP
    bars, as shap's waterfall plot labels them."""
    from .rules import _num

    return [f"{n} = {_num(float(v))}" + (f" {u}" if u else "") for n, v, u in zip(feature_names, x, units)]


def global_importance(expl) -> np.ndarray:
    """Mean |SHAP| per feature per class (F, K)."""
    return np.abs(expl.values).mean(0)


def rule_path(surrogate, x: np.ndarray, feature_names, units=None) -> list[str]:
    """The decision tree's tests on the path of one sample x (F,), e.g. 'diameter ≤ 0.41 (0.37)'."""
    from .rules import _num, _tree

    if getattr(surrogate, "model_", 0) is None:  # fitted to a CNN that gave one class only
        return ["(no test: one class only)", f"→ class {int(surrogate.constant_)}"]
    tree = _tree(surrogate)
    t = tree.tree_
    x = np.asarray(x, np.float32).reshape(1, -1)
    nodes = tree.decision_path(x).indices
    out = []
    for node in nodes:
        if t.children_left[node] == -1:
            k = int(surrogate.present_[int(np.argmax(t.value[node][0]))])
            out.append(f"→ class {k}")
            continue
        fi, thr = int(t.feature[node]), float(t.threshold[node])
        name = feature_names[fi]
        op = "≤" if x[0, fi] <= thr else ">"
        u = f" {units[fi]}" if units and units[fi] else ""
        out.append(f"{name} {op} {_num(thr)}{u}  (here {_num(float(x[0, fi]))})")
    return out


def _concept_regions(feature_names) -> np.ndarray:
    """The registry's region of each feature; a CNN probe 'cnn_x' takes the region of concept x."""
    return np.array([REGISTRY[n.removeprefix("cnn_")].region for n in feature_names])


def concept_region_scores(shap_values: np.ndarray, feature_names) -> np.ndarray:
    """|SHAP| (N, F) of one class summed over the concepts of each region → shares (N, R) in REGIONS order.
    Features not in the concept registry (e.g. CNN probes 'cnn_x') count for the region of concept x;
    layout concepts (fixed central disc and outer zone, no mask region) are left out of the shares."""
    regions = _concept_regions(feature_names)
    a = np.abs(np.asarray(shap_values))
    out = np.stack([a[:, regions == r].sum(1) for r in REGIONS], 1)
    tot = out.sum(1, keepdims=True)
    return np.divide(out, tot, out=np.full_like(out, 1 / len(REGIONS)), where=tot > 0)


def layout_shap_share(shap_values: np.ndarray, feature_names) -> float:
    """Share of |SHAP| (N, F) carried by concepts outside REGIONS (the layout concepts): what
    concept_region_scores leaves out."""
    out = ~np.isin(_concept_regions(feature_names), REGIONS)
    a = np.abs(np.asarray(shap_values))
    return float(a[:, out].sum() / max(a.sum(), 1e-12))


def pixel_region_scores(maps: np.ndarray, regions: dict[str, np.ndarray]) -> np.ndarray:
    """Share of positive attribution in each region (N, R) in REGIONS order (regions partition the image)."""
    return np.stack([mass_share(maps, regions[r]) for r in REGIONS], 1)


def region_agreement(pixel: np.ndarray, concept: np.ndarray, area: np.ndarray | None = None) -> dict:
    """Per image: do the pixel map and the concept SHAP put most weight on the same region?

    pixel, concept: (N, R) shares. With `area` (N, R) region area shares, regions are compared by
    enrichment (share / area) so large regions do not win by size alone.
    Returns the top-region agreement rate, the mean Spearman correlation over regions and per-image arrays.
    """
    from .faithfulness import rank_corr

    p = pixel / np.clip(area, 1e-9, None) if area is not None else pixel
    top_p, top_c = p.argmax(1), concept.argmax(1)
    corr = rank_corr(p, concept)
    return {"agree_rate": float((top_p == top_c).mean()), "rank_corr": float(np.mean(corr)),
            "top_pixel": top_p, "top_concept": top_c, "corr": corr}
