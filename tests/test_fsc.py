"""Fourier shell correlation and resolution."""

import numpy as np
import pytest

from cryoposes import fsc
from cryoposes.errors import InputError
from cryoposes.volumes import Volume


def test_identical_maps_correlate_at_every_shell_and_reach_nyquist():
    volume = np.random.default_rng(0).standard_normal((24, 24, 24))
    curve = fsc.fsc(volume, volume, pixel_size=1.5)
    np.testing.assert_allclose(curve.correlation, 1.0, atol=1e-12)
    assert curve.frequency[-1] == pytest.approx(1 / 3.0)  # Nyquist of 1.5 Å voxels
    assert curve.resolution() == pytest.approx(3.0)


def test_independent_maps_do_not_correlate():
    rng = np.random.default_rng(1)
    curve = fsc.fsc(rng.standard_normal((32, 32, 32)), rng.standard_normal((32, 32, 32)))
    # Shell s holds about 4πs² voxels, so chance correlations shrink like 1/s.
    assert np.all(np.abs(curve.correlation[4:]) < 0.15)
    assert np.all(curve.voxels[1:] > curve.voxels[:-1])


def test_a_low_pass_copy_plus_noise_crosses_where_signal_meets_noise():
    rng = np.random.default_rng(2)
    size = 40
    signal = rng.standard_normal((size,) * 3)
    spectrum = np.fft.fftn(signal)
    radius = np.sqrt(sum(k**2 for k in np.meshgrid(*[np.fft.fftfreq(size)] * 3, indexing="ij")))
    # Signal power falls off past 0.2 cycles/voxel; the noise is white at a fixed level: the
    # per-shell SNR is 1 near radius 0.25, so the FSC crosses 0.5 there.
    shaped = np.real(np.fft.ifftn(spectrum / (1 + (radius / 0.25) ** 8)))
    first = shaped + 0.7 * rng.standard_normal(shaped.shape)
    second = shaped + 0.7 * rng.standard_normal(shaped.shape)
    crossing = 1 / fsc.fsc(first, second).resolution(0.5)
    assert 0.2 < crossing < 0.3


def test_volumes_carry_their_voxel_size_and_bad_pairs_are_refused():
    volume = Volume(np.ones((8, 8, 8), dtype=np.float32), 2.0)
    assert fsc.fsc(volume, volume).pixel_size == 2.0
    with pytest.raises(InputError, match="different boxes"):
        fsc.fsc(np.ones((8, 8, 8)), np.ones((10, 10, 10)))
    with pytest.raises(InputError, match="different voxel sizes"):
        fsc.fsc(volume, Volume(volume.data, 3.0))
    with pytest.raises(InputError, match="NaN"):
        fsc.fsc(np.full((8, 8, 8), np.nan), np.ones((8, 8, 8)))
    with pytest.raises(InputError, match="cubic"):
        fsc.fsc(np.ones((8, 8, 9)), np.ones((8, 8, 9)))
