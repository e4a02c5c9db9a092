"""Full-training checks (minutes on 2 cores): `make test-slow`. Not in the default test command."""
import json

import pytest

from hybrid.cli import main

from .conftest import PROJECT

pytestmark = pytest.mark.slow


def test_default_preset_end_to_end(tmp_path, data_root):
    """The default preset trains, distils and beats the published 28-px anchors (ResNet-18: 0.735 / 0.917)."""
    assert main(["train", "--config", str(PROJECT / "configs/default.toml"), "--data-root", str(data_root),
                 "--runs-dir", str(tmp_path), "--quiet"]) == 0
    run = tmp_path / "default"
    m = json.loads((run / "metrics.json").read_text())
    assert m["test_tta"]["acc"] > 0.77 and m["test_tta"]["auc"] > 0.93
    assert main(["features", str(run), "--data-root", str(data_root)]) == 0
    assert main(["surrogates", str(run), "--n-bootstrap", "100"]) == 0
    rows = {r["name"]: r for r in json.loads((run / "surrogates/fidelity.json").read_text())}
    assert rows["embeddings__logistic"]["fidelity"] > 0.97
    assert rows["concepts__xgboost"]["kappa"] > rows["majority"]["kappa"] + 0.5
