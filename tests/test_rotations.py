"""The rotation convention, checked against scipy.spatial.transform.Rotation."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from scipy.spatial.transform import Rotation

from cryoposes import rotations as rt
from cryoposes.symmetry import symmetry_group

N_LARGE = 100_000


@pytest.fixture(scope="module")
def random_euler():
    rng = np.random.default_rng(1)
    angles = rng.uniform(-np.pi, np.pi, size=(N_LARGE, 3))
    angles[:, 1] = np.arccos(rng.uniform(-1, 1, N_LARGE))  # tilt in [0, π]
    return angles


def test_euler_to_quaternion_matches_scipy_zyz(random_euler):
    q = rt.euler_to_quaternion(*random_euler.T)
    reference = Rotation.from_euler("ZYZ", random_euler).as_quat(scalar_first=True)
    np.testing.assert_allclose(np.abs(np.sum(q * reference, axis=1)), 1.0, atol=1e-12)


def test_matrix_matches_scipy(random_euler):
    matrices = rt.euler_to_matrix(*random_euler.T)
    np.testing.assert_allclose(matrices, Rotation.from_euler("ZYZ", random_euler).as_matrix(), atol=1e-12)


def test_quaternion_matrix_round_trip(random_euler):
    q = rt.canonical(rt.euler_to_quaternion(*random_euler.T))
    np.testing.assert_allclose(rt.matrix_to_quaternion(rt.quaternion_to_matrix(q)), q, atol=1e-10)


def test_euler_round_trip_away_from_gimbal_lock(random_euler):
    angles = np.stack(rt.quaternion_to_euler(rt.euler_to_quaternion(*random_euler.T)), axis=1)
    np.testing.assert_allclose(angles, random_euler, atol=1e-7)


@pytest.mark.parametrize("tilt", [0.0, np.pi])
def test_gimbal_lock_gives_the_same_rotation(tilt):
    rng = np.random.default_rng(2)
    rot, psi = rng.uniform(-np.pi, np.pi, (2, 50))
    q = rt.euler_to_quaternion(rot, tilt, psi)
    back_rot, back_tilt, back_psi = rt.quaternion_to_euler(q)
    np.testing.assert_array_equal(back_tilt, tilt)
    np.testing.assert_array_equal(back_psi, 0.0)
    # Only rot + psi (tilt 0) or rot - psi (tilt π) is defined: the rotation must be the same.
    assert np.max(rt.geodesic_distance(rt.euler_to_quaternion(back_rot, back_tilt, back_psi), q)) < 1e-5
    expected = rot + psi if tilt == 0 else rot - psi
    np.testing.assert_allclose(np.exp(1j * back_rot), np.exp(1j * expected), atol=1e-9)


def test_hamilton_product_composes_like_matrices():
    a, b = rt.random_quaternions(1000, 3), rt.random_quaternions(1000, 4)
    np.testing.assert_allclose(
        rt.quaternion_to_matrix(rt.quaternion_multiply(a, b)),
        rt.quaternion_to_matrix(a) @ rt.quaternion_to_matrix(b), atol=1e-12,
    )
    scipy_product = (Rotation.from_quat(a, scalar_first=True) * Rotation.from_quat(b, scalar_first=True))
    np.testing.assert_allclose(
        np.abs(np.sum(rt.quaternion_multiply(a, b) * scipy_product.as_quat(scalar_first=True), axis=1)), 1, atol=1e-12
    )


def test_inverse():
    q = rt.random_quaternions(100, 5) * 2.5
    identity = rt.quaternion_multiply(q, rt.quaternion_inverse(q))
    np.testing.assert_allclose(identity, np.tile([1.0, 0, 0, 0], (100, 1)), atol=1e-12)


def test_geodesic_distance_matches_scipy_magnitude(random_euler):
    q1 = rt.euler_to_quaternion(*random_euler.T)
    q2 = rt.random_quaternions(N_LARGE, 6)
    relative = Rotation.from_quat(q1, scalar_first=True).inv() * Rotation.from_quat(q2, scalar_first=True)
    np.testing.assert_allclose(rt.geodesic_distance(q1, q2), relative.magnitude(), atol=1e-6)
    np.testing.assert_allclose(rt.geodesic_distance_degrees(q1, q2), np.degrees(relative.magnitude()), atol=1e-4)


def test_geodesic_distance_is_finite_with_finite_gradient_at_zero_in_float32():
    import tensorflow as tf
    import keras

    q = tf.Variable(rt.random_quaternions(8, 7).astype("float32"))
    with tf.GradientTape() as tape:
        d = rt.geodesic_distance(q, tf.identity(q), xp=keras.ops)
        loss = tf.reduce_sum(tf.square(d))
    gradient = tape.gradient(loss, q)
    assert np.all(np.isfinite(d.numpy())) and np.all(d.numpy() < 3e-3)
    assert np.all(np.isfinite(gradient.numpy()))


def test_keras_and_numpy_distances_agree():
    import keras

    q1, q2 = rt.random_quaternions(500, 8), rt.random_quaternions(500, 9)
    from_keras = keras.ops.convert_to_numpy(rt.geodesic_distance(keras.ops.convert_to_tensor(q1), keras.ops.convert_to_tensor(q2), xp=keras.ops))
    np.testing.assert_allclose(from_keras, rt.geodesic_distance(q1, q2), atol=1e-6)
    pairwise = rt.pairwise_geodesic_distances(q1[:50])
    np.testing.assert_allclose(pairwise[3, 7], rt.geodesic_distance(q1[3], q1[7]))


unit_quaternions = st.lists(st.floats(-1, 1, allow_nan=False), min_size=4, max_size=4).filter(
    lambda v: np.linalg.norm(v) > 1e-3
).map(lambda v: np.asarray(v) / np.linalg.norm(v))


@settings(max_examples=200, deadline=None)
@given(unit_quaternions, unit_quaternions, unit_quaternions)
def test_metric_axioms(a, b, c):
    d = rt.geodesic_distance
    assert d(a, a) < 1e-5
    assert d(a, -a) < 1e-5  # q and -q are the same rotation
    assert abs(d(a, b) - d(b, a)) < 1e-12
    assert 0 <= d(a, b) <= np.pi
    assert d(a, c) <= d(a, b) + d(b, c) + 1e-5


@settings(max_examples=100, deadline=None)
@given(unit_quaternions, unit_quaternions, unit_quaternions, unit_quaternions)
def test_distance_invariances(q1, q2, a, b):
    """d_q is unchanged by q ↦ a⊗q⊗b and q ↦ a⊗q̄⊗b (all of O(4)), and by the mirror J·R·J."""
    d = rt.geodesic_distance(q1, q2)
    left_right = [rt.quaternion_multiply(rt.quaternion_multiply(a, q), b) for q in (q1, q2)]
    conjugated = [rt.quaternion_multiply(rt.quaternion_multiply(a, rt.quaternion_conjugate(q)), b) for q in (q1, q2)]
    assert abs(rt.geodesic_distance(*left_right) - d) < 1e-5
    assert abs(rt.geodesic_distance(*conjugated) - d) < 1e-5
    assert abs(rt.geodesic_distance(rt.mirror(q1), rt.mirror(q2)) - d) < 1e-5


def test_mirror_is_J_R_J():
    q = rt.random_quaternions(200, 10)
    J = np.diag([1.0, 1.0, -1.0])
    np.testing.assert_allclose(rt.quaternion_to_matrix(rt.mirror(q)), J @ rt.quaternion_to_matrix(q) @ J, atol=1e-12)


def test_uniform_sampling_rotation_angle_density():
    """The rotation angle θ of Haar-uniform rotations has density (1 − cos θ)/π on [0, π]."""
    theta = 2 * np.arccos(np.clip(rt.random_quaternions(20_000, 11)[:, 0], -1, 1))
    cdf = lambda t: (t - np.sin(t)) / np.pi  # noqa: E731
    assert stats.kstest(theta, cdf).pvalue > 0.01
    # A non-uniform sampler (uniform Euler angles) must fail the same test.
    angles = np.random.default_rng(12).uniform(0, [2 * np.pi, np.pi, 2 * np.pi], (20_000, 3))
    biased = 2 * np.arccos(np.clip(np.abs(rt.euler_to_quaternion(*angles.T)[:, 0]), -1, 1))
    assert stats.kstest(biased, cdf).pvalue < 1e-6


def test_random_quaternions_are_seeded_and_unit():
    a, b = rt.random_quaternions(100, 42), rt.random_quaternions(100, 42)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0)


@pytest.mark.parametrize("coverage", ["full", "half", "quarter"])
def test_coverage_sampling(coverage):
    q = rt.sample_coverage(3000, coverage, rng=13)
    assert q.shape == (3000, 4)
    assert np.all(rt.in_coverage(q, coverage))
    rot, tilt, psi = rt.quaternion_to_euler(q)
    view_z = rt.quaternion_to_matrix(q)[:, 2, 2]
    if coverage == "full":
        assert view_z.min() < -0.95 and view_z.max() > 0.95
    else:
        assert tilt.max() <= np.pi / 2 + 1e-12 and view_z.min() >= -1e-12
        # Uniform viewing directions: cos(tilt) is uniform on [0, 1].
        assert stats.kstest(view_z, "uniform").pvalue > 0.001
    if coverage == "quarter":
        assert np.mod(rot, 2 * np.pi).max() <= 0.4 * np.pi + 1e-12
        # The point of the quarter coverage: no D2 symmetry copy of a pose lies inside it.
        group = symmetry_group("D2")
        for g in group[1:]:
            copies = rt.quaternion_multiply(np.broadcast_to(g, q.shape), q)
            assert not np.any(rt.in_coverage(copies, "quarter"))


def test_unknown_coverage_and_negative_counts():
    with pytest.raises(ValueError, match="unknown coverage 'eighth'"):
        rt.sample_coverage(10, "eighth")
    with pytest.raises(ValueError, match="non-negative"):
        rt.random_quaternions(-1)


def test_invalid_quaternions_are_rejected():
    with pytest.raises(ValueError, match="NaN"):
        rt.quaternion_to_matrix([np.nan, 0, 0, 1])
    with pytest.raises(ValueError, match="unit norm"):
        rt.quaternion_to_matrix([2.0, 0, 0, 0])
    with pytest.raises(ValueError, match="length 4"):
        rt.quaternion_to_matrix([1.0, 0, 0])
