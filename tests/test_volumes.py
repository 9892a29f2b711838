"""Density maps: reading, validation, boxing, resampling, maps from atomic models."""

import mrcfile
import numpy as np
import pytest

from conftest import require_protein_file
from cryoposes import volumes
from cryoposes.errors import InputError
from cryoposes.volumes import Volume


def test_load_5j0n_map(request):
    volume = volumes.load_map(volumes.data.protein_path("5j0n"))
    assert volume.shape == (69, 57, 75)  # [z, y, x] of a 75×57×69 (x, y, z) map
    assert volume.voxel_size == pytest.approx(3.6667, abs=1e-3)
    assert volume.data.dtype == np.float32


def test_axis_order_follows_the_header(tmp_path):
    array = np.random.default_rng(0).random((4, 5, 6)).astype(np.float32)
    path = tmp_path / "swapped.mrc"
    with mrcfile.new(path) as mrc:
        mrc.set_data(array)
        mrc.voxel_size = 2.0
        mrc.header.mapc, mrc.header.mapr, mrc.header.maps = 3, 2, 1  # columns are z, sections are x
    loaded = volumes.load_map(path)
    np.testing.assert_array_equal(loaded.data, np.transpose(array, (2, 1, 0)))


@pytest.mark.parametrize(
    "array, message",
    [
        (np.zeros((4, 4)), "must be 3-D"),
        (np.ones((4, 4, 4)), "constant"),
        (np.where(np.eye(4)[None] > 0, np.nan, 1.0) * np.ones((4, 4, 4)), "NaN"),
    ],
)
def test_validation_errors(array, message):
    with pytest.raises(ValueError, match=message):
        volumes.validate(array)


def test_corrupt_and_missing_files(tmp_path):
    bad = tmp_path / "bad.mrc"
    bad.write_bytes(b"not a map at all" * 10)
    with pytest.raises(ValueError, match="cannot read .*bad.mrc"):
        volumes.load_map(bad)
    with pytest.raises(FileNotFoundError, match="no map file"):
        volumes.load_map(tmp_path / "none.mrc")


def test_nan_map_file_is_rejected(tmp_path):
    array = np.ones((8, 8, 8), np.float32)
    array[1, 2, 3] = np.nan
    path = tmp_path / "nan.mrc"
    with mrcfile.new(path) as mrc:
        mrc.set_data(array)
        mrc.voxel_size = 1.0
    with pytest.raises(ValueError, match="1 NaN"):
        volumes.load_map(path)


def test_pad_to_cube_keeps_content_centred():
    volume = Volume(np.random.default_rng(1).random((69, 57, 75)).astype(np.float32), 3.6)
    cube = volumes.pad_to_cube(volume)
    assert cube.shape == (75, 75, 75)
    assert cube.data.sum() == pytest.approx(volume.data.sum(), rel=1e-5)
    np.testing.assert_array_equal(cube.data[3:72, 9:66, :], volume.data)
    assert volumes.pad_to_cube(volume, 117).shape == (117,) * 3
    with pytest.raises(ValueError, match="smaller cube"):
        volumes.pad_to_cube(volume, 50)


def test_resample_tracks_voxel_size_and_preserves_a_smooth_volume():
    z, y, x = np.mgrid[-32:32, -32:32, -32:32]
    blob = np.exp(-(x**2 + (y - 3) ** 2 + (z + 2) ** 2) / (2 * 6.0**2)).astype(np.float32)
    volume = Volume(blob, 2.0)
    small = volumes.resample(volume, 32)
    assert small.voxel_size == pytest.approx(4.0)
    z2, y2, x2 = np.mgrid[-16:16, -16:16, -16:16] * 2.0
    expected = np.exp(-(x2**2 + (y2 - 3) ** 2 + (z2 + 2) ** 2) / (2 * 6.0**2))
    np.testing.assert_allclose(small.data, expected, atol=2e-3)
    back = volumes.resample(small, 64)
    np.testing.assert_allclose(back.data, blob, atol=5e-3)
    with pytest.raises(ValueError, match="not cubic"):
        volumes.resample(Volume(blob[:, :, :10], 1.0), 8)


def test_load_protein_5j0n_is_a_rotation_safe_box():
    volume = volumes.load_protein("5j0n", box=64)
    assert volume.shape == (64, 64, 64)
    assert volume.data.max() == pytest.approx(1.0)
    # 117 voxels of 3.667 Å (the padded diagonal) resampled to 64.
    assert volume.voxel_size == pytest.approx(117 * 3.66667 / 64, rel=1e-4)
    # Everything outside the inscribed sphere is (nearly) empty: no density leaves under rotation.
    z, y, x = np.indices(volume.shape) - 32
    outside = np.sqrt(x**2 + y**2 + z**2) > 31
    assert np.abs(volume.data[outside]).max() < 0.02


def test_map_from_5a1a_model_is_centred_and_d2_symmetric():
    volume = volumes.load_protein("5a1a", box=48)
    assert volume.shape == (48, 48, 48)
    data = np.clip(volume.data, 0, None)
    z, y, x = np.indices(data.shape)
    centre = [np.sum(axis * data) / data.sum() for axis in (z, y, x)]
    np.testing.assert_allclose(centre, [24, 24, 24], atol=0.1)
    # The D2 axes of the deposited model are x, y, z: a two-fold about z maps (x, y) -> (-x, -y)
    # about the centre voxel 24.
    rotated = np.roll(data[:, ::-1, ::-1], (1, 1), axis=(1, 2))
    assert np.abs(rotated - data).max() < 0.05
    # A margin of empty voxels around the molecule: the grid is periodic.
    assert np.abs(volume.data[:, :, 0]).max() < 1e-3


def test_map_from_model_errors(tmp_path):
    bad = tmp_path / "bad.cif"
    bad.write_text("this is not mmCIF\n")
    with pytest.raises(ValueError, match="cannot read .*bad.cif|contains no"):
        volumes.map_from_model(bad, 32)
    with pytest.raises(ValueError, match="does not fit"):
        volumes.map_from_model(volumes.data.protein_path("5a1a"), 32, voxel_size=0.5)
    with pytest.raises(ValueError, match="at least 8"):
        volumes.load_protein("5a1a", box=-4)


def test_save_and_load_round_trip(tmp_path):
    volume = volumes.load_protein("5j0n", box=32)
    volumes.save_map(volume, tmp_path / "v.mrc")
    again = volumes.load_map(tmp_path / "v.mrc")
    np.testing.assert_array_equal(again.data, volume.data)
    assert again.voxel_size == pytest.approx(volume.voxel_size, rel=1e-6)


def _pdb(path, positions):
    """A hand-made PDB file of carbon atoms at ``positions`` (Å)."""
    lines = [f"ATOM  {i + 1:5d}  CA  GLY A{i + 1:4d}    {x:8.3f}{y:8.3f}{z:8.3f}  1.00  0.00           C"
             for i, (x, y, z) in enumerate(positions)]
    path.write_text("\n".join(lines + ["END", ""]))
    return path


def test_load_protein_takes_a_map_file_through_the_registered_path(tmp_path):
    path = require_protein_file("5j0n")
    registered = volumes.load_protein("5j0n", box=32)
    for given in (path, str(path)):
        from_file = volumes.load_protein(given, box=32)
        np.testing.assert_array_equal(from_file.data, registered.data)
        assert from_file.voxel_size == registered.voxel_size
    # A map of the user's: not cubic, padded like 5j0n; the voxel size comes from its header.
    z, y, x = np.mgrid[-6:6, -8:8, -10:10]
    blob = Volume(np.exp(-(x**2 + y**2 + z**2) / 8.0).astype(np.float32), 2.5)
    volumes.save_map(blob, tmp_path / "blob.map")
    volume = volumes.load_protein(tmp_path / "blob.map", box=16)
    assert volume.shape == (16,) * 3 and volume.data.max() == pytest.approx(1.0)
    assert volume.voxel_size == pytest.approx(volumes.rotation_safe_size(blob) * 2.5 / 16)


def test_load_protein_takes_a_model_file(tmp_path):
    corners = np.array([[0, 0, 0], [12, 0, 0], [0, 9, 0], [0, 0, 15], [6, 6, 6]], dtype=float)
    path = _pdb(tmp_path / "tiny.pdb", corners)
    volume = volumes.load_protein(path, box=16)
    direct = volumes.normalize(volumes.map_from_model(path, 16))  # the sampling registered models get
    np.testing.assert_array_equal(volume.data, direct.data)
    assert volume.voxel_size == direct.voxel_size and volume.shape == (16,) * 3
    with pytest.raises(InputError, match="tiny_one.pdb has all its 1 atom"):
        volumes.load_protein(_pdb(tmp_path / "tiny_one.pdb", corners[:1]), box=16)
    (tmp_path / "junk.pdb").write_text("not a model\n")
    with pytest.raises(InputError, match="junk.pdb contains no atoms"):
        volumes.load_protein(tmp_path / "junk.pdb", box=16)
