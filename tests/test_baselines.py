"""Common lines (ASPIRE) as cryoposes calls it: conventions, CTF, bad input."""

import importlib.util

import numpy as np
import pytest

from cryoposes import alignment, projection, rotations
from cryoposes.baselines import common_lines
from cryoposes.ctf import apply_ctf
from cryoposes.simulation import random_ctf

# Not importorskip: importing ASPIRE before cryoposes configures it would write its log folder here.
pytestmark = pytest.mark.skipif(importlib.util.find_spec("aspire") is None, reason="needs the bench extra (ASPIRE)")


@pytest.fixture(scope="module")
def blob():
    x, y, z = np.meshgrid(*[np.arange(32) - 16] * 3, indexing="ij")
    return (np.exp(-((x - 4) ** 2 + y ** 2 + 3 * (z + 3) ** 2) / 10.0)
            + np.exp(-(x ** 2 + (y - 5) ** 2 + z ** 2) / 6.0)
            + 0.5 * np.exp(-((x + 5) ** 2 + (y + 2) ** 2 + (z - 4) ** 2) / 4.0))


def test_common_lines_poses_are_physical_in_cryoposes_convention(blob):
    truth = rotations.random_quaternions(60, 0)
    poses = common_lines(projection.project(blob, truth, method="fourier"))
    assert poses.shape == (60, 4)
    # Physical alignment allows only one global rotation (and the hand): a convention
    # mismatch (transposed matrices, swapped image axes) would leave tens of degrees.
    assert alignment.align_physical(truth, poses).median < 2.0


def test_common_lines_same_seed_same_poses(blob):
    images = projection.project(blob, rotations.random_quaternions(20, 1), method="fourier")
    # Equal to round-off: ARPACK's eigensolver inside ASPIRE is not bit-reproducible.
    np.testing.assert_allclose(common_lines(images, seed=3), common_lines(images, seed=3), atol=1e-9)


def test_common_lines_on_5j0n_with_ctf(volume_5j0n_64):
    truth = rotations.random_quaternions(60, 2)
    clean = projection.project(volume_5j0n_64.data, truth, method="fourier")
    ctf = random_ctf(60, np.random.default_rng(0))
    images = apply_ctf(clean, ctf, volume_5j0n_64.voxel_size)
    poses = common_lines(images, pixel_size=volume_5j0n_64.voxel_size, ctf=ctf)
    assert alignment.align_physical(truth, poses).median < 1.0


def test_common_lines_need_three_images(blob):
    with pytest.raises(ValueError, match="at least 3 images"):
        common_lines(np.zeros((2, 32, 32)))
