"""Embedding distance (hybrid.shift): known answers on Gaussians, and the reference check against SciPy."""
import numpy as np
import pytest
from scipy.spatial.distance import mahalanobis

from hybrid.shift import SHIFT_ALPHA, EmbeddingDistance, shift_warning


def _gauss(n, seed, shift=0.0, d=20, scale=1.0):
    rng = np.random.default_rng(seed)
    cov = np.diag(np.linspace(0.5, 4, d)) * scale
    return rng.multivariate_normal(np.full(d, shift), cov, size=n)


def test_same_distribution_gives_the_quantile_share_and_a_shifted_one_far_more():
    est = EmbeddingDistance(quantile=0.99).fit(_gauss(5000, 0), _gauss(5000, 1))
    same = est.summary(_gauss(5000, 2))
    assert 0.005 < same["outside_fraction"] < 0.02
    moved = est.summary(_gauss(2000, 3, shift=3.0))
    assert moved["outside_fraction"] > 0.9 and moved["median_distance"] > 1.5 * same["median_distance"]
    assert same["p_value"] > SHIFT_ALPHA and moved["p_value"] < 1e-10
    assert same["tail_p_value"] > SHIFT_ALPHA and moved["tail_p_value"] < 1e-10
    assert 0.48 < same["distance_auc"] < 0.52 and moved["distance_auc"] > 0.99
    assert shift_warning("same", {"n": 5000, "shift": same}) is None
    warn = shift_warning("moved", {"n": 2000, "shift": moved})
    assert warn.startswith("**Warning — moved is shifted:** its images lie farther from the training data")
    assert "2000 of 2000 images (100.0%)" in warn and "about 1% would" in warn
    est95 = EmbeddingDistance(quantile=0.95).fit(_gauss(5000, 0), _gauss(5000, 1))
    assert 0.035 < est95.summary(_gauss(5000, 2))["outside_fraction"] < 0.065


def test_rank_test_warns_on_a_small_mildly_wider_set_that_the_tail_count_passes():
    """200 images whose spread is 10% wider than the training data's: too few land beyond the 99%
    line for the count to be significant (4 of 200 where 2 are expected), but their distances as a
    whole are larger than validation's, and the Mann–Whitney test on them warns."""
    est = EmbeddingDistance().fit(_gauss(5000, 0), _gauss(1000, 1))
    wider = est.summary(_gauss(200, 5, scale=1.1))
    assert wider["tail_p_value"] > 0.1 and wider["p_value"] < 1e-4 and wider["distance_auc"] > 0.55
    assert shift_warning("wider", {"n": 200, "shift": wider}) is not None


def test_distance_is_scipys_mahalanobis_with_the_fitted_covariance():
    train = _gauss(3000, 0, d=5)
    est = EmbeddingDistance().fit(train, _gauss(500, 1, d=5))
    x = _gauss(10, 2, d=5)
    vi = np.linalg.inv(est.covariance_.covariance_)
    ref = [mahalanobis(row, est.covariance_.location_, vi) for row in x]
    np.testing.assert_allclose(est.distance(x), ref, rtol=1e-8)
    np.testing.assert_array_equal(est.outside(x), np.array(ref) > est.threshold_)
    with pytest.raises(ValueError, match="quantile"):
        EmbeddingDistance(quantile=1.0).fit(train, train)
