"""The Euclidean baseline distance between images and its scale."""

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from cryoposes import distances


def test_euclidean_distances_match_scipy_in_float64():
    rng = np.random.default_rng(0)
    images = rng.standard_normal((70, 8, 8)).astype(np.float32)
    images[1] = images[0] + 1e-4  # a tiny distance must survive the expansion
    result = distances.euclidean_distances(images, block=16)
    expected = cdist(images.reshape(70, -1).astype(float), images.reshape(70, -1).astype(float))
    assert result.dtype == np.float64 and result.shape == (70, 70)
    assert np.allclose(result, expected, rtol=1e-9, atol=1e-9)
    assert np.allclose(result[0, 1], 8e-4, rtol=1e-3)  # √64 · 1e-4
    assert np.all(np.diag(result) == 0.0)
    pairs = distances.euclidean_pair_distances(images, [0, 3, 5], [1, 4, 5])
    assert np.allclose(pairs, expected[[0, 3, 5], [1, 4, 5]], rtol=1e-9)


def test_fit_scale_is_least_squares_through_the_origin():
    rng = np.random.default_rng(1)
    d_q = rng.uniform(0, np.pi, 500)
    assert distances.fit_scale(3.0 * d_q, d_q) == pytest.approx(3.0)
    noisy = 3.0 * d_q + rng.normal(0, 0.1, 500)
    c = distances.fit_scale(noisy, d_q)
    assert c == pytest.approx(np.linalg.lstsq(d_q[:, None], noisy, rcond=None)[0][0])
    with pytest.raises(ValueError, match="same size"):
        distances.fit_scale(d_q[:3], d_q)


def test_scale_to_rotations_sets_the_mean_of_uniform_rotations():
    from cryoposes import rotations

    q = rotations.random_quaternions(2000, np.random.default_rng(2))
    d_q = rotations.pairwise_geodesic_distances(q)
    n = len(q)
    assert (d_q.sum() - np.trace(d_q)) / (n * (n - 1)) == pytest.approx(distances.MEAN_UNIFORM_DISTANCE, rel=0.01)
    scaled = distances.scale_to_rotations(7.0 * d_q)
    assert (scaled.sum() - np.trace(scaled)) / (n * (n - 1)) == pytest.approx(distances.MEAN_UNIFORM_DISTANCE)


def test_bad_images_are_refused():
    with pytest.raises(ValueError, match="NaN"):
        distances.euclidean_distances(np.full((3, 4, 4), np.nan))
