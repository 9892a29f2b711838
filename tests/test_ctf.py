"""The contrast transfer function: wavelength, the CTF formula, per-particle parameters, filtering."""

import math

import numpy as np
import pytest

from cryoposes import ctf
from test_imaging import smooth_images


def test_electron_wavelength():
    # Standard values: 300 kV → 0.01969 Å, 200 kV → 0.02508 Å, 100 kV → 0.03701 Å.
    assert ctf.electron_wavelength(300) == pytest.approx(0.019687, abs=2e-6)
    assert ctf.electron_wavelength(200) == pytest.approx(0.025079, abs=2e-6)
    assert ctf.electron_wavelength(100) == pytest.approx(0.037014, abs=2e-6)
    with pytest.raises(ValueError, match="voltage"):
        ctf.electron_wavelength(-300)


@pytest.mark.parametrize("defocus, cs, w", [(10000.0, 0.0, 0.0), (15000.0, 2.7, 0.1), (25000.0, 2.0, 0.07)])
def test_first_ctf_zero_is_where_the_phase_reaches_pi(defocus, cs, w):
    # χ(k) = π λ Δf k² − π/2 C_s λ³ k⁴ + arctan(w/√(1−w²)) = π, a quadratic in u = k².
    wavelength = ctf.electron_wavelength(300)
    a, b = 0.5 * math.pi * cs * 1e7 * wavelength**3, math.pi * wavelength * defocus
    c = math.pi - math.atan(w / math.sqrt(1 - w * w))
    u = c / b if a == 0 else (b - math.sqrt(b * b - 4 * a * c)) / (2 * a)
    expected = math.sqrt(u)
    k = np.linspace(1e-4, 1.5 * expected, 200001)
    values = ctf.ctf(k, 0.0, defocus, defocus, 0.0, 300.0, cs, w)
    # The CTF starts at the amplitude contrast.
    assert ctf.ctf(0.0, 0.0, defocus, defocus, 0.0, 300.0, cs, w) == pytest.approx(w, abs=1e-12)
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
        along_u = ctf.ctf(k * np.cos(a), k * np.sin(a), 20000.0, 12000.0, angle)
        along_v = ctf.ctf(-k * np.sin(a), k * np.cos(a), 20000.0, 12000.0, angle)
        assert along_u == pytest.approx(ctf.ctf(k, 0.0, 20000.0, 20000.0))
        assert along_v == pytest.approx(ctf.ctf(k, 0.0, 12000.0, 12000.0))


def test_ctf_images_and_apply_ctf():
    parameters = ctf.CTFParameters(defocus_u=[15000.0, 9000.0], defocus_v=[14000.0, 9000.0],
                                       defocus_angle=[20.0, 0.0])
    full = ctf.ctf_images(32, 4.0, parameters)
    assert full.shape == (2, 32, 32) and full.dtype == np.float32
    assert full[0, 16, 16] == pytest.approx(0.1, abs=1e-6)
    # The CTF is even: point-symmetric about the zero frequency.
    np.testing.assert_allclose(full[:, 1:, 1:], full[:, 1:, 1:][:, ::-1, ::-1], atol=1e-6)
    images = smooth_images(2)
    filtered = ctf.apply_ctf(images, parameters, pixel_size=4.0)
    half = ctf.ctf_images(32, 4.0, parameters, half=True)
    expected = np.fft.irfft2(np.fft.rfft2(images) * half, s=(32, 32))
    np.testing.assert_allclose(filtered, expected, atol=1e-5)
    # Applying the CTF twice is multiplying by its square.
    twice = ctf.apply_ctf(filtered, parameters, pixel_size=4.0)
    np.testing.assert_allclose(twice, np.fft.irfft2(np.fft.rfft2(images) * half**2, s=(32, 32)), atol=1e-5)


def test_stacks_larger_than_a_block_are_filtered_image_by_image():
    # 2,050 images cross the 2,048-image block of the filter: every image must get its own CTF.
    rng = np.random.default_rng(0)
    count = 2050
    images = rng.standard_normal((count, 8, 8)).astype(np.float32)
    parameters = ctf.CTFParameters(rng.uniform(5000, 25000, count), rng.uniform(5000, 25000, count),
                                   rng.uniform(0, 180, count))
    flipped, filtered = ctf.phase_flip(images, parameters, 2.0), ctf.apply_ctf(images, parameters, 2.0)
    for row in (0, 2047, 2048, 2049):
        alone = parameters.take([row], count)
        np.testing.assert_allclose(flipped[row], ctf.phase_flip(images[[row]], alone, 2.0)[0], atol=1e-5)
        np.testing.assert_allclose(filtered[row], ctf.apply_ctf(images[[row]], alone, 2.0)[0], atol=1e-5)


def test_take_picks_per_particle_values_and_repeats_shared_ones():
    parameters = ctf.CTFParameters(defocus_u=[1e4, 2e4, 3e4], defocus_v=1.5e4, voltage=200.0)
    chosen = parameters.take(np.array([True, False, True]), 3)
    assert chosen.defocus_u.tolist() == [1e4, 3e4] and chosen.defocus_v.tolist() == [1.5e4, 1.5e4]
    assert len(chosen) == 2 and chosen.voltage.tolist() == [200.0, 200.0]
    with pytest.raises(ValueError, match="3 values for 4 images"):
        parameters.take([0], 4)


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
        ctf.CTFParameters(**kwargs)


def test_bad_pixel_size_is_refused():
    parameters = ctf.CTFParameters(15000.0, 15000.0)
    for pixel_size in (-1.0, 0.0, float("nan")):
        with pytest.raises(ValueError, match="pixel size"):
            ctf.apply_ctf(np.zeros((1, 8, 8)), parameters, pixel_size)
    with pytest.raises(ValueError, match="values for"):
        ctf.apply_ctf(np.zeros((3, 8, 8)), ctf.CTFParameters([1e4, 2e4], [1e4, 2e4]), 1.0)
