"""Readable IF–THEN rules from a decision-tree surrogate, each with support and agreement with the CNN.

A rule is a leaf of the tree: the conjunction of its path's conditions (merged per feature into
one interval), the class it predicts, how many images reach it, and how often the CNN agrees.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Rule:
    leaf: int
    bounds: dict[int, tuple[float, float]]  # feature index → (low, high]: low < x ≤ high
    klass: int
    support: int  # images of the evaluation set that reach the leaf
    agreement: float  # share of them the CNN labels `klass`
    train_support: int = 0
    conditions: list[str] = field(default_factory=list)

    def matches(self, X: np.ndarray) -> np.ndarray:
        m = np.ones(len(X), bool)
        for f, (lo, hi) in self.bounds.items():
            m &= (X[:, f] > lo) & (X[:, f] <= hi)
        return m


def _tree(surrogate):
    from sklearn.tree import DecisionTreeClassifier

    model = getattr(surrogate, "model_", None)
    if not isinstance(model, DecisionTreeClassifier):
        raise ValueError("rules need a fitted decision-tree surrogate (kind='tree')")
    return model


def extract_rules(surrogate, X: np.ndarray, cnn_pred: np.ndarray, feature_names, units=None) -> list[Rule]:
    """One Rule per leaf; support and agreement measured on (X, cnn_pred), the CNN's labels.
    A tree fitted to a CNN that gave one class only is a single unconditional rule."""
    if getattr(surrogate, "kind", None) == "tree" and getattr(surrogate, "model_", 0) is None:
        k = int(surrogate.constant_)
        return [Rule(0, {}, k, len(X), float((np.asarray(cnn_pred) == k).mean()) if len(X) else float("nan"),
                     int(surrogate.n_samples_fit_))]
    tree = _tree(surrogate)
    t = tree.tree_
    leaves_of = tree.apply(np.asarray(X, dtype=np.float32))
    rules = []

    def walk(node, bounds):
        if t.children_left[node] == -1:
            k = int(surrogate.present_[int(np.argmax(t.value[node][0]))])
            at = leaves_of == node
            sup = int(at.sum())
            agr = float((cnn_pred[at] == k).mean()) if sup else float("nan")
            r = Rule(node, dict(bounds), k, sup, agr, int(t.n_node_samples[node]))
            r.conditions = format_conditions(r.bounds, feature_names, units)
            rules.append(r)
            return
        f, thr = int(t.feature[node]), float(t.threshold[node])
        lo, hi = bounds.get(f, (-np.inf, np.inf))
        walk(t.children_left[node], {**bounds, f: (lo, min(hi, thr))})
        walk(t.children_right[node], {**bounds, f: (max(lo, thr), hi)})

    walk(0, {})
    return rules


def _num(v: float) -> str:
    return f"{v:.3g}"


def format_conditions(bounds, feature_names, units=None) -> list[str]:
    out = []
    for f, (lo, hi) in sorted(bounds.items()):
        name = feature_names[f]
        unit = f" {units[f]}" if units and units[f] else ""
        if np.isfinite(lo) and np.isfinite(hi):
            out.append(f"{_num(lo)} < {name} ≤ {_num(hi)}{unit}")
        elif np.isfinite(hi):
            out.append(f"{name} ≤ {_num(hi)}{unit}")
        else:
            out.append(f"{name} > {_num(lo)}{unit}")
    return out


def apply_rules(rules: list[Rule], X: np.ndarray) -> np.ndarray:
    """Predicted class per row from the rules alone (each row matches exactly one rule)."""
    X = np.asarray(X, dtype=np.float32)
    out = np.full(len(X), -1)
    for r in rules:
        out[r.matches(X)] = r.klass
    return out


def format_rules(rules: list[Rule], class_names, klass: int | None = None, min_support: int = 0,
                 sort: str = "support") -> str:
    """Rules as text, one per block, filtered by class and minimum support, sorted by support or agreement."""
    chosen = [r for r in rules if (klass is None or r.klass == klass) and r.support >= min_support]
    key = (lambda r: (-r.support, -np.nan_to_num(r.agreement))) if sort == "support" else \
        (lambda r: (-np.nan_to_num(r.agreement), -r.support))
    lines = []
    for r in sorted(chosen, key=key):
        cond = "\n    AND ".join(r.conditions) if r.conditions else "(always)"
        agr = "n/a" if np.isnan(r.agreement) else f"{r.agreement:.2f}"
        lines.append(f"IF  {cond}\nTHEN {class_names[r.klass]}   [support {r.support}, CNN agreement {agr}]")
    return "\n\n".join(lines) if lines else "(no rule matches the filter)"
