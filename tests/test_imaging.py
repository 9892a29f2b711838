"""In-plane rotation, shift, CTF and noise."""

import math

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


def test_shift_rejects_bad_input():
    with pytest.raises(ValueError, match="shaped"):
        imaging.shift_images(np.zeros((2, 8, 8)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="NaN"):
        imaging.shift_images(np.zeros((1, 8, 8)), [[np.nan, 0.0]])
    with pytest.raises(ValueError, match="square"):
        imaging.shift_images(np.zeros((1, 8, 9)), [[0.0, 0.0]])


def test_electron_wavelength():
    # Standard values: 300 kV → 0.01969 Å, 200 kV → 0.02508 Å, 100 kV → 0.03701 Å.
    assert imaging.electron_wavelength(300) == pytest.approx(0.019687, abs=2e-6)
    assert imaging.electron_wavelength(200) == pytest.approx(0.025079, abs=2e-6)
    assert imaging.electron_wavelength(100) == pytest.approx(0.037014, abs=2e-6)
    with pytest.raises(ValueError, match="voltage"):
        imaging.electron_wavelength(-300)


@pytest.mark.parametrize("defocus, cs, w", [(10000.0, 0.0, 0.0), (15000.0, 2.7, 0.1), (25000.0, 2.0, 0.07)])
def test_first_ctf_zero_is_where_the_phase_reaches_pi(defocus, cs, w):
    # χ(k) = π λ Δf k² − π/2 C_s λ³ k⁴ + arctan(w/√(1−w²)) = π, a quadratic in u = k².
    wavelength = imaging.electron_wavelength(300)
    a, b = 0.5 * math.pi * cs * 1e7 * wavelength**3, math.pi * wavelength * defocus
    c = math.pi - math.atan(w / math.sqrt(1 - w * w))
    u = c / b if a == 0 else (b - math.sqrt(b * b - 4 * a * c)) / (2 * a)
    expected = math.sqrt(u)
    k = np.linspace(1e-4, 1.5 * expected, 200001)
    values = imaging.ctf(k, 0.0, defocus, defocus, 0.0, 300.0, cs, w)
    # The CTF starts at the amplitude contrast.
    assert imaging.ctf(0.0, 0.0, defocus, defocus, 0.0, 300.0, cs, w) == pytest.approx(w, abs=1e-12)
    first_zero = k[np.argmax(values < 0)]
    assert first_zero == pytest.approx(expected, rel=1e-4)
    # Without amplitude contrast or Cs the textbook value 1/√(λΔf).
    if cs == 0 and w == 0:
        assert first_zero == pytest.approx(1 / math.sqrt(wavelength * defocus), rel=1e-4)


def test_astigmatism_follows_the_angle():
    # Along the u axis the defocus is defocus_u, along v it is defocus_v.
    k = 0.05
    for angle in (0.0, 30.0, 110.0):
        a = np.radians(angle)
        along_u = imaging.ctf(k * np.cos(a), k * np.sin(a), 20000.0, 12000.0, angle)
        along_v = imaging.ctf(-k * np.sin(a), k * np.cos(a), 20000.0, 12000.0, angle)
        assert along_u == pytest.approx(imaging.ctf(k, 0.0, 20000.0, 20000.0))
        assert along_v == pytest.approx(imaging.ctf(k, 0.0, 12000.0, 12000.0))


def test_ctf_images_and_apply_ctf():
    parameters = imaging.CTFParameters(defocus_u=[15000.0, 9000.0], defocus_v=[14000.0, 9000.0],
                                       defocus_angle=[20.0, 0.0])
    full = imaging.ctf_images(32, 4.0, parameters)
    assert full.shape == (2, 32, 32) and full.dtype == np.float32
    assert full[0, 16, 16] == pytest.approx(0.1, abs=1e-6)
    # The CTF is even: point-symmetric about the zero frequency.
    np.testing.assert_allclose(full[:, 1:, 1:], full[:, 1:, 1:][:, ::-1, ::-1], atol=1e-6)
    images = smooth_images(2)
    filtered = imaging.apply_ctf(images, parameters, pixel_size=4.0)
    half = imaging.ctf_images(32, 4.0, parameters, half=True)
    expected = np.fft.irfft2(np.fft.rfft2(images) * half, s=(32, 32))
    np.testing.assert_allclose(filtered, expected, atol=1e-5)
    # Applying the CTF twice is multiplying by its square.
    twice = imaging.apply_ctf(filtered, parameters, pixel_size=4.0)
    np.testing.assert_allclose(twice, np.fft.irfft2(np.fft.rfft2(images) * half**2, s=(32, 32)), atol=1e-5)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"defocus_u": -1.0, "defocus_v": 1.0}, "positive"),
        ({"defocus_u": np.nan, "defocus_v": 1.0}, "NaN"),
        ({"defocus_u": 1.0, "defocus_v": 1.0, "amplitude_contrast": 1.0}, "amplitude_contrast"),
        ({"defocus_u": [1.0, 2.0], "defocus_v": [1.0, 2.0, 3.0]}, "different lengths"),
        ({"defocus_u": 1.0, "defocus_v": 1.0, "voltage": 0.0}, "voltage"),
    ],
)
def test_ctf_parameters_are_validated(kwargs, message):
    with pytest.raises(ValueError, match=message):
        imaging.CTFParameters(**kwargs)


def test_bad_pixel_size_is_refused():
    parameters = imaging.CTFParameters(15000.0, 15000.0)
    for pixel_size in (-1.0, 0.0, float("nan")):
        with pytest.raises(ValueError, match="pixel size"):
            imaging.apply_ctf(np.zeros((1, 8, 8)), parameters, pixel_size)
    with pytest.raises(ValueError, match="values for"):
        imaging.apply_ctf(np.zeros((3, 8, 8)), imaging.CTFParameters([1e4, 2e4], [1e4, 2e4]), 1.0)


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
