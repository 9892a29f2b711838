"""In-plane rotation, shift and noise."""

import numpy as np
import pytest

from cryoposes import imaging, rotations


def smooth_images(count=4, size=32, seed=0):
    rng = np.random.default_rng(seed)
    axis = np.arange(size) - size // 2
    y, x = np.meshgrid(axis, axis, indexing="ij")
    centres = rng.uniform(-5, 5, size=(count, 2))
    return np.exp(-((x - centres[:, 0, None, None]) ** 2 + (y - centres[:, 1, None, None]) ** 2) / 8.0)


@pytest.mark.parametrize("size", [32, 33])
def test_integer_shift_is_roll(size):
    images = np.random.default_rng(1).standard_normal((3, size, size)).astype(np.float32)
    shifts = np.array([[3, -2], [0, 5], [-7, 1]])
    moved = imaging.shift_images(images, shifts)
    for image, out, (tx, ty) in zip(images, moved, shifts):
        np.testing.assert_allclose(out, np.roll(image, (ty, tx), axis=(0, 1)), atol=1e-5)


def test_subpixel_shift_moves_the_centre_of_mass():
    images = smooth_images()
    shifts = np.array([[0.5, -0.25], [1.3, 2.7], [-2.2, 0.0], [0.0, 0.0]])
    moved = imaging.shift_images(images, shifts)
    axis = np.arange(32) - 16
    y, x = np.meshgrid(axis, axis, indexing="ij")

    def centre(stack):
        mass = stack.sum(axis=(1, 2))
        return np.stack([(stack * x).sum(axis=(1, 2)) / mass, (stack * y).sum(axis=(1, 2)) / mass], axis=1)

    np.testing.assert_allclose(centre(moved) - centre(images), shifts, atol=1e-3)
    back = imaging.shift_images(moved, -shifts)
    np.testing.assert_allclose(back, images, atol=1e-4)


def test_stacks_larger_than_a_block_are_shifted_image_by_image():
    # 2,050 images cross the 2,048-image block: every image must move by its own shift.
    rng = np.random.default_rng(0)
    images = rng.standard_normal((2050, 8, 8)).astype(np.float32)
    shifts = rng.uniform(-3, 3, (2050, 2))
    moved = imaging.shift_images(images, shifts)
    for row in (0, 2047, 2048, 2049):
        np.testing.assert_allclose(moved[row], imaging.shift_images(images[[row]], shifts[[row]])[0], atol=1e-5)


def test_shift_rejects_bad_input():
    with pytest.raises(ValueError, match="shaped"):
        imaging.shift_images(np.zeros((2, 8, 8)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="NaN"):
        imaging.shift_images(np.zeros((1, 8, 8)), [[np.nan, 0.0]])
    with pytest.raises(ValueError, match="square"):
        imaging.shift_images(np.zeros((1, 8, 9)), [[0.0, 0.0]])


def test_decibels():
    assert imaging.snr_to_db(1 / 16) == pytest.approx(-12.0412, abs=1e-4)
    assert imaging.db_to_snr(-12.0412) == pytest.approx(1 / 16, rel=1e-4)
    assert imaging.db_to_snr(imaging.snr_to_db(0.3)) == pytest.approx(0.3)
    with pytest.raises(ValueError):
        imaging.snr_to_db(0.0)
    with pytest.raises(ValueError):
        imaging.db_to_snr(float("nan"))


@pytest.mark.parametrize("snr_db", [-12.0, 0.0, 6.0])
def test_noise_has_the_target_snr(snr_db):
    images = smooth_images(count=50, size=32, seed=2).astype(np.float32)
    images = (images - images.mean()) / images.std()
    noisy = imaging.add_noise(images, snr_db, rng=3)
    noise = noisy - images
    measured = imaging.snr_to_db(images.var() / noise.var())
    assert measured == pytest.approx(snr_db, abs=0.05)
    assert abs(noise.mean()) < 0.02 * noise.std()
    # White: neighbouring pixels are uncorrelated.
    assert abs(np.mean(noise[:, :, 1:] * noise[:, :, :-1])) < 0.02 * noise.var()


def test_noise_is_seeded():
    images = smooth_images().astype(np.float32)
    a = imaging.add_noise(images, -10.0, rng=7)
    np.testing.assert_array_equal(a, imaging.add_noise(images, -10.0, rng=np.random.default_rng(7)))
    assert not np.array_equal(a, imaging.add_noise(images, -10.0, rng=8))


def test_standardize_in_blocks_equals_the_whole_stack_arithmetic():
    rng = np.random.default_rng(0)
    images = (3.0 + 2.0 * rng.standard_normal((2050, 8, 8))).astype(np.float32)
    whole = ((images - np.mean(images, dtype=np.float64)) / np.std(images, dtype=np.float64)).astype(np.float32)
    np.testing.assert_allclose(imaging.standardize(images), whole, atol=1e-6)
    mean, variance = imaging.stack_moments(images, chunk=100)
    assert mean == pytest.approx(np.mean(images, dtype=np.float64), rel=1e-12)
    assert variance == pytest.approx(np.var(images, dtype=np.float64), rel=1e-12)
    with pytest.raises(ValueError, match="constant"):
        imaging.standardize(np.ones((3, 8, 8)))


def test_noise_rejects_bad_input():
    with pytest.raises(ValueError, match="finite"):
        imaging.add_noise(smooth_images(), float("nan"))
    with pytest.raises(ValueError, match="constant"):
        imaging.add_noise(np.ones((2, 8, 8)), 0.0)
    with pytest.raises(ValueError, match="NaN"):
        imaging.add_noise(np.full((2, 8, 8), np.nan), 0.0)


def test_in_plane_rotation_updates_the_pose_exactly(volume_5j0n_32):
    from cryoposes.projection import project

    rng = np.random.default_rng(7)
    quaternions = rotations.random_quaternions(4, rng)
    angles = np.radians([40.0, 50.0, 60.0, 290.0])  # ±α differ by 80°–140°: the wrong sign shows
    rotated, moved = imaging.rotate_in_plane(project(volume_5j0n_32, quaternions), quaternions, angles)
    expected = project(volume_5j0n_32, moved)
    turns = rotations.axis_angle_to_quaternion(np.tile([0.0, 0.0, 1.0], (4, 1)), -angles)
    wrong_sign = project(volume_5j0n_32, rotations.quaternion_multiply(quaternions, turns))

    def ncc(a, b):
        a = a - a.mean(axis=(1, 2), keepdims=True)
        b = b - b.mean(axis=(1, 2), keepdims=True)
        return (a * b).sum(axis=(1, 2)) / np.sqrt((a * a).sum(axis=(1, 2)) * (b * b).sum(axis=(1, 2)))

    assert np.all(ncc(rotated, expected) > 0.99)
    assert np.all(ncc(rotated, wrong_sign) < 0.95)
    np.testing.assert_allclose(rotations.geodesic_distance(quaternions, moved),
                               np.abs(np.angle(np.exp(1j * angles))), atol=1e-9)


@pytest.mark.parametrize("size", [7, 8])
def test_quarter_turns_are_exact_and_agree_with_the_spline(size):
    # Zeros near the border: there the spline, read a hair off the grid, falls outside the image.
    images = np.zeros((3, size, size), np.float32)
    images[:, 2:-2, 2:-2] = np.random.default_rng(0).standard_normal((3, size - 4, size - 4))
    for quarters in (-1, 1, 2, 3, 4):
        exact = imaging.rotate_images(images, np.full(3, quarters * np.pi / 2))
        spline = imaging.rotate_images(images, np.full(3, quarters * np.pi / 2 + 1e-7))
        np.testing.assert_allclose(exact, spline, atol=1e-4)
        assert set(np.round(exact.ravel(), 6)) <= set(np.round(images.ravel(), 6))  # pixels moved, not mixed
    turned = imaging.rotate_images(images, np.full(3, np.pi / 2))
    back = imaging.rotate_images(turned, np.full(3, -np.pi / 2))
    assert np.array_equal(back, images)


def test_scale_by_one_and_blur_by_zero_change_nothing_and_bad_factors_are_refused():
    from cryoposes.imaging import blur_images, scale_images

    images = np.random.default_rng(0).normal(size=(3, 17, 17)).astype(np.float32)
    np.testing.assert_allclose(scale_images(images, np.ones(3)), images, atol=1e-5)
    np.testing.assert_allclose(blur_images(images, np.zeros(3)), images, atol=1e-5)
    # Magnifying then shrinking a smooth image returns it (away from the border).
    smooth = blur_images(images, np.full(3, 2.0))
    back = scale_images(scale_images(smooth, np.full(3, 1.25)), np.full(3, 0.8))
    np.testing.assert_allclose(back[:, 5:12, 5:12], smooth[:, 5:12, 5:12], atol=2e-2)
    with pytest.raises(ValueError, match="positive"):
        scale_images(images, [1.0, 0.0, 1.0])
    with pytest.raises(ValueError, match="non-negative"):
        blur_images(images, [1.0, -1.0, 1.0])


def test_estimate_shifts_centres_real_particles_up_to_one_common_offset(volume_5j0n_64):
    from cryoposes import ctf, simulation

    data = simulation.simulate("5j0n", 300, 64, shift=6.4, ctf=True, snr_db=-12.0, seed=4, progress=False)
    found = imaging.estimate_shifts(ctf.phase_flip(data.images, data.ctf, data.pixel_size), max_shift=6.4)
    assert np.all(np.linalg.norm(found, axis=1) <= 6.4 + 0.5)
    # The template centres each particle on its projected centre of mass: the true shifts plus
    # the projection of one 3-D offset c (5j0n's centre of mass is not its box centre).
    matrices = rotations.quaternion_to_matrix(data.quaternions)
    in_plane = np.transpose(matrices, (0, 2, 1))[:, :2, :].reshape(-1, 3)
    offset = np.linalg.lstsq(in_plane, (found - data.shifts).ravel(), rcond=None)[0]
    left = np.linalg.norm((found - data.shifts).ravel() - in_plane @ offset, axis=None) / np.sqrt(len(found))
    assert left < 2.5  # px, root mean square; ignoring the shifts leaves their own ~4.5 px
    assert np.sqrt(np.mean(np.sum(data.shifts**2, axis=1))) > 4.0


def test_estimate_shifts_rejects_bad_input():
    with pytest.raises(ValueError, match="max_shift"):
        imaging.estimate_shifts(np.zeros((2, 8, 8)), max_shift=-1.0)
    with pytest.raises(ValueError, match="iterations"):
        imaging.estimate_shifts(np.zeros((2, 8, 8)), max_shift=2.0, iterations=0)
    with pytest.raises(ValueError, match="NaN"):
        imaging.estimate_shifts(np.full((2, 8, 8), np.nan), max_shift=2.0)
