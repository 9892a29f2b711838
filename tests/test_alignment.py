"""Alignment of estimated poses to the truth: physical (left rotation, handedness) and O(4)."""

import numpy as np
import pytest
from scipy import ndimage
from scipy.spatial.transform import Rotation

from cryoposes import alignment, rotations, symmetry


@pytest.fixture(scope="module")
def poses():
    return rotations.random_quaternions(300, np.random.default_rng(3))


@pytest.fixture(scope="module")
def transform():
    rng = np.random.default_rng(4)
    return rotations.random_quaternions(2, rng)


def _same_rotations(a, b):
    return np.max(np.abs(rotations.canonical(a) - rotations.canonical(b)))


def test_nearest_rotation_matches_scipy_and_fixes_rotations():
    rng = np.random.default_rng(0)
    exact = rotations.quaternion_to_matrix(rotations.random_quaternions(20, rng))
    assert np.allclose(rotations.nearest_rotation(exact), exact, atol=1e-12)
    perturbed = exact + 0.05 * rng.standard_normal(exact.shape)
    nearest = rotations.nearest_rotation(perturbed)
    assert np.allclose(nearest @ np.swapaxes(nearest, -1, -2), np.eye(3), atol=1e-12)
    assert np.allclose(np.linalg.det(nearest), 1.0)
    # scipy's from_matrix returns the rotation nearest in Frobenius norm (Markley's method).
    assert np.allclose(nearest, Rotation.from_matrix(perturbed).as_matrix(), atol=1e-9)
    # A reflection is mapped to a proper rotation, not to itself.
    assert np.linalg.det(rotations.nearest_rotation(np.diag([1.0, 1.0, -1.0]))) > 0


@pytest.mark.parametrize("mirrored", [False, True])
def test_physical_alignment_recovers_a_global_rotation(poses, transform, mirrored):
    g = transform[0]
    estimated = rotations.quaternion_multiply(g, poses)
    if mirrored:
        estimated = rotations.mirror(estimated)
    result = alignment.align_physical(poses, estimated)
    assert result.flipped is mirrored
    assert _same_rotations(result.aligned, poses) < 1e-6
    assert _same_rotations(result.apply(estimated), poses) < 1e-6
    # The found rotation undoes g: (left ⊗ g) is the identity, and nothing acts on the right.
    assert _same_rotations(rotations.quaternion_multiply(result.left, g)[None], [[1, 0, 0, 0]]) < 1e-6
    assert _same_rotations(result.right[None], [[1, 0, 0, 0]]) < 1e-12
    assert result.median < 1e-3 and result.kind == "physical"


@pytest.mark.parametrize("conjugated", [False, True])
def test_o4_alignment_recovers_both_sides(poses, transform, conjugated):
    a, b = transform
    inner = rotations.quaternion_conjugate(poses) if conjugated else poses
    estimated = rotations.quaternion_multiply(rotations.quaternion_multiply(a, inner), b)
    result = alignment.align_o4(poses, estimated)
    assert result.flipped is conjugated
    assert _same_rotations(result.aligned, poses) < 1e-6
    assert _same_rotations(result.apply(estimated), poses) < 1e-6
    assert result.mean < 1e-3
    # Distances cannot tell these estimates from the truth, but the images can: the physical
    # alignment, which only rotates the molecule, is left with large errors.
    assert np.allclose(rotations.pairwise_geodesic_distances(estimated),
                       rotations.pairwise_geodesic_distances(poses), atol=1e-6)
    assert alignment.align_physical(poses, estimated).median > 10.0


def test_noisy_estimates_score_at_the_noise_level(poses, transform):
    rng = np.random.default_rng(5)
    angle = np.radians(2.0)
    noise = rotations.axis_angle_to_quaternion(rng.standard_normal((len(poses), 3)), np.full(len(poses), angle))
    noisy = rotations.quaternion_multiply(poses, noise)
    estimated = rotations.quaternion_multiply(transform[0], noisy)
    for align in (alignment.align_physical, alignment.align_o4):
        result = align(poses, estimated)
        # Errors are 2° per pose; the best alignment can only absorb a little of random noise.
        assert 1.7 < result.median < 2.05
        assert result.errors.dtype == np.float64


def test_symmetric_molecule_scored_with_symmetry_aware_distance(poses, transform):
    rng = np.random.default_rng(6)
    group = symmetry.symmetry_group("D2")
    copies = group[rng.integers(0, len(group), len(poses))]
    # Each estimate is some symmetry copy of its true pose, seen in a rotated frame.
    estimated = rotations.quaternion_multiply(transform[0], rotations.quaternion_multiply(copies, poses))
    plain = alignment.align_physical(poses, estimated)
    assert plain.median > 30.0
    for align in (alignment.align_physical, alignment.align_o4):
        result = align(poses, estimated, symmetry="D2")
        assert result.median < 1e-3 and result.symmetry == "D2"
        expected = np.degrees(symmetry.symmetric_geodesic_distance(poses, result.aligned, "D2"))
        assert np.allclose(result.errors, expected)


def test_seed_losses(poses, transform):
    a, b = transform
    estimated = rotations.quaternion_multiply(rotations.quaternion_multiply(a, poses), b)
    targets = rotations.pairwise_geodesic_distances(poses)
    losses = alignment.seed_losses(poses, estimated, targets)
    assert losses["eq6"] < 1e-10 and losses["eq7"] < 1e-10
    assert losses["eq8"] > 0.1  # a two-sided transform is not one global rotation
    physical = rotations.quaternion_multiply(a, poses)
    assert alignment.seed_losses(poses, physical)["eq8"] < 1e-5
    shuffled = poses[np.random.default_rng(0).permutation(len(poses))]
    assert alignment.seed_losses(poses, shuffled, targets)["eq7"] > 0.1


@pytest.mark.parametrize(
    "estimated, message",
    [
        (np.ones((10, 4)) / 2.0, "same N"),
        (np.full((300, 4), np.nan), "NaN"),
        (np.ones((300, 4)), "unit norm"),
        (np.ones((300, 3)), "length 4"),
    ],
)
def test_bad_input_is_refused(poses, estimated, message):
    with pytest.raises(ValueError, match=message):
        alignment.align_o4(poses, estimated)


def _rotated_volume(data, matrix):
    """``V'(p) = V(M·p)`` on the same grid (``[z, y, x]``, centre ``L // 2``), trilinear."""
    size = data.shape[0]
    centre = size // 2
    axis = np.arange(size) - centre
    z, y, x = np.meshgrid(axis, axis, axis, indexing="ij")
    points = np.stack([x, y, z], axis=-1) @ matrix.T  # M·p for every voxel p = (x, y, z)
    coordinates = [points[..., 2] + centre, points[..., 1] + centre, points[..., 0] + centre]
    return ndimage.map_coordinates(data, coordinates, order=1, mode="constant")


def _correlations(a, b):
    a = a.reshape(len(a), -1) - a.reshape(len(a), -1).mean(axis=1, keepdims=True)
    b = b.reshape(len(b), -1) - b.reshape(len(b), -1).mean(axis=1, keepdims=True)
    return np.sum(a * b, axis=1) / np.sqrt(np.sum(a * a, axis=1) * np.sum(b * b, axis=1))


@pytest.mark.parametrize("mirrored", [False, True])
def test_physical_alignment_is_what_a_reconstruction_cannot_see(volume_5j0n_32, mirrored):
    """Estimates off by a physical gauge explain the images with the molecule moved by the found
    transform; estimates off by a two-sided O(4) transform (same distances) explain nothing."""
    from cryoposes.projection import project

    data = np.asarray(volume_5j0n_32.data, dtype=float)
    rng = np.random.default_rng(7)
    truth = rotations.random_quaternions(12, rng)
    images = project(volume_5j0n_32, truth)
    h, b = rotations.random_quaternions(2, rng)
    estimated = rotations.quaternion_multiply(h, truth)
    if mirrored:
        estimated = rotations.mirror(estimated)
    result = alignment.align_physical(truth, estimated)
    assert result.flipped is mirrored
    # left ⊗ f(q̂) = q, so the volume a reconstruction from (images, q̂) gives is
    # V'(p) = V(L·p), or V(L·J·p) after the handedness flip (J = diag(1, 1, −1)).
    moved = rotations.quaternion_to_matrix(result.left)
    if mirrored:
        moved = moved @ np.diag([1.0, 1.0, -1.0])
    reconstruction = _rotated_volume(data, moved).astype(np.float32)
    reprojected = project(reconstruction, estimated)
    assert np.min(_correlations(images, reprojected)) > 0.97

    two_sided = rotations.quaternion_multiply(estimated, b)
    assert np.allclose(rotations.pairwise_geodesic_distances(two_sided),
                       rotations.pairwise_geodesic_distances(estimated), atol=1e-6)
    assert np.median(_correlations(images, project(reconstruction, two_sided))) < 0.9
