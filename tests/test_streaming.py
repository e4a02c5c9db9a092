"""224-px inputs stream: inference and attribution hold a bounded batch, never the whole set."""
import json
import subprocess
import sys

from .conftest import PROJECT

CHILD = r"""
import json, numpy as np, torch
from hybrid import attribution as A
from hybrid.artifacts import peak_rss_mb
from hybrid.backbone import build_backbone
from hybrid.train import embed_and_proba, predict_proba
torch.manual_seed(0)
n, s = 48, 224
model = build_backbone(7, 3, s, width=32, blocks_per_stage=1, head="grid").eval().fused()
imgs = np.random.default_rng(0).integers(0, 256, (n, s, s, 3), dtype=np.uint8)
all_at_once_mb = n * A.activation_bytes(model, (3, s, s)) / 2**20
before = peak_rss_mb()
emb, proba = embed_and_proba(model, imgs)
p_tta = predict_proba(model, imgs[:8], tta=True)
x = A.images_to_tensor(imgs)
mb = A.batch_for_memory(model, (3, s, s), memory_mb=256)
g = A.attribute(model, x, torch.as_tensor(proba.argmax(1)), "gradient", max_batch=mb)
print(json.dumps({"all_at_once_mb": all_at_once_mb, "growth_mb": peak_rss_mb() - before, "max_batch": mb,
                  "emb": list(emb.shape), "proba_rows_sum_to_1": bool(np.allclose(proba.sum(1), 1, atol=1e-5)),
                  "tta": list(p_tta.shape), "grad": list(g.shape), "finite": bool(torch.isfinite(g).all())}))
"""


def test_224px_inference_and_attribution_stream_in_bounded_memory():
    out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, cwd=PROJECT, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["emb"] == [48, 256] and r["proba_rows_sum_to_1"] and r["tta"] == [8, 7]
    assert r["grad"] == [48, 3, 224, 224] and r["finite"]
    assert r["all_at_once_mb"] > 2000  # the whole set's forward activations would need this much
    assert r["growth_mb"] < 900, r  # streamed: a few images per pass
