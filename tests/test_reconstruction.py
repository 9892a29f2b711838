"""Reconstruction: maps from images and poses, half maps, symmetry, and the ASTRA path on a GPU."""

import numpy as np
import pytest

from cryoposes import fsc, projection, reconstruction, rotations, simulation, symmetry, volumes


@pytest.fixture(scope="module")
def clean_dataset(volume_5j0n_32):
    return simulation.simulate("5j0n", 500, 32, seed=3, progress=False)


def test_the_map_of_clean_projections_is_the_true_map_up_to_nyquist(clean_dataset, volume_5j0n_32):
    volume = reconstruction.reconstruct(clean_dataset.images, clean_dataset.quaternions,
                                        pixel_size=clean_dataset.pixel_size, method="fourier")
    assert volume.data.shape == (32, 32, 32) and volume.voxel_size == clean_dataset.pixel_size
    curve = fsc.fsc(volume, volumes.Volume(volume_5j0n_32.data, clean_dataset.pixel_size))
    assert curve.correlation[:-1].min() > 0.98
    # The simulated images are standardised: the map has the true map's shape, not its scale.
    assert np.corrcoef(volume.data.ravel(), volume_5j0n_32.data.ravel())[0, 1] > 0.95


def test_shifts_and_ctf_are_undone_by_the_forward_model(volume_5j0n_32):
    dataset = simulation.simulate("5j0n", 500, 32, shift=3.0, ctf=True, seed=4, progress=False)
    truth = volumes.Volume(volume_5j0n_32.data, dataset.pixel_size)
    volume = reconstruction.reconstruct(dataset.images, dataset.quaternions, dataset.shifts, dataset.ctf,
                                        dataset.pixel_size, method="fourier")
    ignoring = reconstruction.reconstruct(dataset.images, dataset.quaternions, pixel_size=dataset.pixel_size,
                                          method="fourier")
    good, bad = fsc.fsc(volume, truth), fsc.fsc(ignoring, truth)
    assert good.resolution(0.5) < 2.6 * dataset.pixel_size  # near Nyquist (2 px) despite CTF zeros
    assert bad.resolution(0.5) > 1.5 * good.resolution(0.5)


def test_symmetry_adds_every_copy_of_each_pose(clean_dataset):
    images, poses = clean_dataset.images[:40], clean_dataset.quaternions[:40]
    group = symmetry.symmetry_group("D2")
    copies = np.concatenate([rotations.quaternion_multiply(g, poses) for g in group])
    with_symmetry = reconstruction.reconstruct(images, poses, symmetry="D2", method="fourier")
    by_hand = reconstruction.reconstruct(np.tile(images, (4, 1, 1)), copies, method="fourier")
    np.testing.assert_allclose(with_symmetry.data, by_hand.data, atol=1e-3 * np.abs(by_hand.data).max())


def test_half_maps_come_from_a_fixed_split_and_agree_on_clean_data(clean_dataset):
    first, second, halves = reconstruction.half_maps(clean_dataset.images, clean_dataset.quaternions,
                                                     pixel_size=clean_dataset.pixel_size, seed=5, method="fourier")
    assert len(np.intersect1d(*halves)) == 0 and sum(map(len, halves)) == 500
    again = reconstruction.half_maps(clean_dataset.images, clean_dataset.quaternions, seed=5, method="fourier")[2]
    assert all(np.array_equal(a, b) for a, b in zip(halves, again))
    assert fsc.fsc(first, second).resolution() == pytest.approx(2 * clean_dataset.pixel_size, rel=0.05)


@pytest.mark.parametrize("arguments, message", [
    (dict(quaternions=rotations.random_quaternions(3, 0)), "one pose per image"),
    (dict(method="magic"), "unknown reconstruction method"),
    (dict(regularization=-1.0), "regularization"),
    (dict(symmetry="X3"), "unknown symmetry"),
])
def test_bad_input_is_refused(arguments, message):
    options = dict(images=np.zeros((4, 16, 16)), quaternions=rotations.random_quaternions(4, 0))
    options.update(arguments)
    with pytest.raises(ValueError, match=message):
        reconstruction.reconstruct(**options)
    with pytest.raises(ValueError, match="NaN"):
        reconstruction.reconstruct(np.full((4, 16, 16), np.nan), rotations.random_quaternions(4, 0))


@pytest.mark.skipif(projection.cuda_available(), reason="checks the message shown without a GPU")
def test_astra_needs_a_gpu():
    with pytest.raises(ValueError, match="CUDA"):
        reconstruction.reconstruct(np.zeros((4, 16, 16)), rotations.random_quaternions(4, 0), method="astra")


@pytest.mark.gpu
@pytest.mark.skipif(not projection.cuda_available(), reason="needs ASTRA with a CUDA GPU")
def test_astra_and_fourier_maps_agree(clean_dataset):
    options = dict(pixel_size=clean_dataset.pixel_size)
    astra_map = reconstruction.reconstruct(clean_dataset.images, clean_dataset.quaternions, method="astra", **options)
    fourier_map = reconstruction.reconstruct(clean_dataset.images, clean_dataset.quaternions, method="fourier", **options)
    assert fsc.fsc(astra_map, fourier_map).correlation[: 32 // 3].min() > 0.95
