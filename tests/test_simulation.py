"""Simulated datasets and the `cryoposes simulate` command."""

import subprocess
import sys

import mrcfile
import numpy as np
import pytest

from conftest import fails_with_usage_error, require_protein_file
from cryoposes import cli, ctf, data, imaging, particles, projection, simulation, volumes
from cryoposes.errors import InputError
from cryoposes.rotations import in_coverage


@pytest.fixture(scope="module")
def noisy():
    return simulation.simulate("5j0n", 40, 32, coverage="half", snr_db=-6.0, shift=3.0, ctf=True, seed=5,
                               progress=False)


def test_same_seed_same_dataset(noisy):
    again = simulation.simulate("5j0n", 40, 32, coverage="half", snr_db=-6.0, shift=3.0, ctf=True, seed=5,
                                progress=False)
    np.testing.assert_array_equal(again.images, noisy.images)
    np.testing.assert_array_equal(again.quaternions, noisy.quaternions)
    other = simulation.simulate("5j0n", 40, 32, coverage="half", snr_db=-6.0, shift=3.0, ctf=True, seed=6,
                                progress=False)
    assert not np.allclose(other.quaternions, noisy.quaternions)


def test_the_images_are_the_forward_model_of_the_stored_parameters(noisy):
    clean = simulation.simulate("5j0n", 40, 32, coverage="half", shift=3.0, ctf=True, seed=5, progress=False)
    # Only the noise stage differs: poses, shifts and CTFs are drawn from their own generators.
    np.testing.assert_array_equal(clean.quaternions, noisy.quaternions)
    np.testing.assert_array_equal(clean.shifts, noisy.shifts)
    np.testing.assert_array_equal(clean.ctf.defocus_u, noisy.ctf.defocus_u)
    volume = volumes.load_protein("5j0n", box=32)
    expected = projection.project(volume, clean.quaternions, method="fourier")
    expected = ctf.apply_ctf(imaging.shift_images(expected, clean.shifts), clean.ctf, volume.voxel_size)
    expected = (expected - expected.mean()) / expected.std()
    np.testing.assert_allclose(clean.images, expected, atol=1e-4)
    assert clean.images.mean() == pytest.approx(0.0, abs=1e-5)
    assert clean.images.var() == pytest.approx(1.0, rel=1e-4)
    assert clean.pixel_size == pytest.approx(volume.voxel_size)
    # The noise has the requested SNR (clean variance / noise variance = 1 / noise variance).
    noise = noisy.images - clean.images
    assert imaging.snr_to_db(1.0 / noise.var()) == pytest.approx(-6.0, abs=0.1)
    assert noisy.metadata["noise_variance"] == pytest.approx(10 ** 0.6, rel=1e-6)


def test_draws_follow_their_ranges(noisy):
    assert np.all(in_coverage(noisy.quaternions, "half"))
    assert np.all(np.hypot(*noisy.shifts.T) <= 3.0)
    low, high = simulation.CTF_RANGES["defocus_u"]
    assert np.all((noisy.ctf.defocus_u >= low) & (noisy.ctf.defocus_u <= high))
    assert np.all(noisy.ctf.defocus_v <= noisy.ctf.defocus_u)
    assert noisy.metadata == {"protein": "5j0n", "symmetry": "C1", "n": 40, "size": 32, "coverage": "half",
                              "snr_db": -6.0, "shift": 3.0, "ctf": True, "seed": 5, "zoom": 1.0,
                              "noise_variance": pytest.approx(10 ** 0.6)}


def test_random_shifts_fill_the_disk_uniformly():
    shifts = simulation.random_shifts(20000, 4.0, rng=0)
    radius = np.hypot(*shifts.T)
    assert radius.max() <= 4.0
    # Uniform in the disk: P(r < R/2) = 1/4.
    assert np.mean(radius < 2.0) == pytest.approx(0.25, abs=0.015)


def test_a_volume_can_be_given():
    axis = np.arange(24) - 12
    z, y, x = np.meshgrid(axis, axis, axis, indexing="ij")
    blob = volumes.Volume(np.exp(-((x - 3) ** 2 + y**2 + (z + 2) ** 2) / 8.0).astype(np.float32), 2.0)
    dataset = simulation.simulate(blob, 5, 16, seed=0, progress=False)
    assert dataset.images.shape == (5, 16, 16)
    assert dataset.pixel_size == pytest.approx(3.0)  # resampled from 24 to 16 voxels
    assert dataset.metadata["protein"] == "custom"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"n": 0}, "positive"),
        ({"size": 4}, "at least 8"),
        ({"coverage": "north"}, "coverage"),
        ({"snr_db": float("nan")}, "finite"),
        ({"shift": -1.0}, "shift"),
        ({"shift": 20.0}, "shift"),
        ({"seed": -3}, "seed"),
        ({"protein": "6abc"}, "unknown protein"),
    ],
)
def test_bad_arguments(kwargs, message):
    arguments = {"protein": "5j0n", "n": 4, "size": 16, "progress": False} | kwargs
    with pytest.raises(ValueError, match=message):
        simulation.simulate(**arguments)


def test_noise_added_to_the_clean_dataset_is_the_noise_of_the_same_seed(noisy):
    clean = simulation.simulate("5j0n", 40, 32, coverage="half", shift=3.0, ctf=True, seed=5, progress=False)
    again = simulation.with_noise(clean, -6.0)
    np.testing.assert_array_equal(again.images, noisy.images)
    assert again.metadata == noisy.metadata
    with pytest.raises(ValueError, match="already has noise"):
        simulation.with_noise(noisy, -6.0)


def test_zoom_keeps_the_centre_of_a_larger_projection():
    zoomed = simulation.simulate("5j0n", 6, 24, zoom=1.5, seed=2, progress=False)
    volume = volumes.load_protein("5j0n", box=36)
    full = projection.project(volume, zoomed.quaternions)
    centre = full[:, 6:30, 6:30]  # 36 // 2 − 24 // 2 = 6: the centre pixel stays at size // 2
    expected = (centre - centre.mean()) / centre.std()
    np.testing.assert_allclose(zoomed.images, expected, atol=1e-4)
    assert zoomed.pixel_size == pytest.approx(volume.voxel_size) and zoomed.metadata["zoom"] == 1.5
    with pytest.raises(ValueError, match="zoom must be"):
        simulation.simulate("5j0n", 6, 24, zoom=0.5, progress=False)


def test_command_writes_a_dataset(tmp_path, capsys):
    folder = tmp_path / "data"
    code = cli.main(["simulate", "5j0n", "-n", "12", "--size", "16", "--coverage", "quarter", "--snr-db", "-12",
                     "--shift", "2", "--ctf", "--zoom", "1.25", "--seed", "4", "-o", str(folder), "--quiet"])
    assert code == 0
    assert "wrote 12 particles" in capsys.readouterr().out
    dataset = particles.read_dataset(folder)
    expected = simulation.simulate("5j0n", 12, 16, coverage="quarter", snr_db=-12.0, shift=2.0, ctf=True, seed=4,
                                   zoom=1.25, progress=False)
    np.testing.assert_array_equal(dataset.images, expected.images)
    np.testing.assert_allclose(dataset.shifts, expected.shifts, atol=1e-8)
    assert dataset.metadata["snr_db"] == -12.0 and dataset.metadata["coverage"] == "quarter"


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["-n", "0", "--size", "16"], "-n must be a positive"),
        (["-n", "5", "--size", "0"], "--size must be at least"),
        (["-n", "5", "--size", "16", "--shift", "-1"], "--shift"),
        (["-n", "five", "--size", "16"], "invalid int value"),
        (["-n", "5", "--size", "16", "--coverage", "north"], "invalid choice"),
        (["-n", "5", "--size", "16", "--zoom", "0.5"], "--zoom must be at least 1"),
    ],
)
def test_command_refuses_bad_arguments(tmp_path, capsys, arguments, message):
    folder = tmp_path / "data"
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["simulate", "5j0n", *arguments, "--seed", "0", "-o", str(folder), "--quiet"])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_command_refuses_an_unknown_protein(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["simulate", "6abc", "-n", "5", "--size", "16", "--seed", "0", "-o", str(tmp_path / "d")])
    assert exit_info.value.code == 2
    assert "unknown protein '6abc'; known proteins: 5a1a, 5j0n" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_command_keeps_an_existing_folder_unless_forced(tmp_path, capsys):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    arguments = ["simulate", "5j0n", "-n", "4", "--size", "16", "--seed", "0", "-o", str(folder), "--quiet"]
    with pytest.raises(SystemExit) as exit_info:
        cli.main(arguments)
    assert exit_info.value.code == 2
    assert "--force" in capsys.readouterr().err
    assert [p.name for p in folder.iterdir()] == ["notes.txt"]
    assert cli.main([*arguments, "--force"]) == 0
    assert sorted(p.name for p in folder.iterdir()) == ["particles.mrcs", "particles.star"]
    assert [p.name for p in tmp_path.iterdir()] == ["data"]


def test_command_runs_as_a_program(tmp_path):
    folder = tmp_path / "data"
    # The environment (CRYOPOSES_DATA set by conftest) is inherited.
    result = subprocess.run([sys.executable, "-m", "cryoposes", "simulate", "5j0n", "-n", "6", "--size", "16",
                             "--seed", "1", "-o", str(folder)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "projecting" in result.stderr  # the progress bar
    assert len(particles.read_dataset(folder)) == 6


def test_a_map_file_gives_the_images_of_its_registered_name():
    path = require_protein_file("5j0n")
    settings = dict(n=8, size=24, coverage="half", snr_db=-6.0, shift=2.0, ctf=True, seed=7, progress=False)
    registered = simulation.simulate("5j0n", **settings)
    from_file = simulation.simulate(path, **settings)
    np.testing.assert_array_equal(from_file.images, registered.images)
    np.testing.assert_array_equal(from_file.quaternions, registered.quaternions)
    assert from_file.pixel_size == registered.pixel_size
    # What was simulated: the file's name and hash (no folder), no symmetry claimed.
    assert from_file.metadata["protein"] == f"5j0n.mrc sha256:{data.PROTEINS['5j0n'].sha256}"
    assert from_file.metadata["symmetry"] is None
    assert {k: v for k, v in from_file.metadata.items() if k not in ("protein", "symmetry")} == {
        k: v for k, v in registered.metadata.items() if k not in ("protein", "symmetry")}


def test_a_map_file_of_ones_own_simulates(tmp_path):
    z, y, x = np.mgrid[-8:8, -10:10, -12:12]  # not cubic: padded as a registered map
    blob = volumes.Volume(np.exp(-((x - 3) ** 2 + y**2 + (z + 2) ** 2 / 2) / 8.0).astype(np.float32), 2.5)
    volumes.save_map(blob, tmp_path / "blob.mrc")
    dataset = simulation.simulate(tmp_path / "blob.mrc", 5, 16, seed=0, progress=False)
    assert dataset.images.shape == (5, 16, 16) and np.all(np.isfinite(dataset.images))
    # The voxel size of the header, over the rotation-safe box, resampled to 16 pixels.
    assert dataset.pixel_size == pytest.approx(volumes.rotation_safe_size(blob) * 2.5 / 16)
    assert dataset.metadata["protein"].startswith("blob.mrc sha256:")


def test_a_pdb_file_gives_the_images_of_the_same_model(tmp_path):
    import gemmi

    structure = gemmi.read_structure(str(require_protein_file("5a1a")))
    structure.setup_entities()
    structure.write_pdb(str(tmp_path / "beta-galactosidase.pdb"))
    settings = dict(n=6, size=16, seed=3, progress=False)
    from_pdb = simulation.simulate(tmp_path / "beta-galactosidase.pdb", **settings)
    registered = simulation.simulate("5a1a", **settings)
    np.testing.assert_allclose(from_pdb.images, registered.images, atol=1e-5)
    assert from_pdb.pixel_size == pytest.approx(registered.pixel_size)
    assert from_pdb.metadata["protein"].startswith("beta-galactosidase.pdb sha256:")


def _bad_input(folder, kind):
    """A protein argument that must be refused, and a fragment of the message it must give."""
    if kind == "unknown name":
        return "6abc", "unknown protein '6abc'; known proteins: 5a1a, 5j0n"
    if kind == "missing file":
        return folder / "missing.mrc", ".mmcif): there is no file at"
    if kind == "wrong suffix":
        (folder / "map.tif").write_bytes(b"II*\x00")
        return folder / "map.tif", "map.tif has suffix '.tif'"
    if kind == "NaN map":
        array = np.ones((8, 8, 8), np.float32)
        array[2, 3, 4] = np.nan
        with mrcfile.new(folder / "nan.mrc") as mrc:
            mrc.set_data(array)
            mrc.voxel_size = 1.0
        return folder / "nan.mrc", "nan.mrc contains 1 NaN"
    if kind == "corrupt map":
        (folder / "corrupt.mrc").write_bytes(b"not a map at all" * 100)
        return folder / "corrupt.mrc", "cannot read " + str(folder / "corrupt.mrc")
    if kind == "empty model":
        (folder / "empty.pdb").write_text("")
        return folder / "empty.pdb", "empty.pdb contains no atoms"
    raise AssertionError(kind)


BAD_INPUTS = ["unknown name", "missing file", "wrong suffix", "NaN map", "corrupt map", "empty model"]


@pytest.mark.filterwarnings("ignore:Data array contains NaN")
@pytest.mark.parametrize("kind", BAD_INPUTS)
def test_bad_protein_inputs_are_input_errors(tmp_path, kind):
    protein, message = _bad_input(tmp_path, kind)
    with pytest.raises(InputError) as error:
        simulation.simulate(protein, 4, 16, progress=False)
    assert message in str(error.value)


def test_command_simulates_a_map_file(tmp_path, capsys):
    path = require_protein_file("5j0n")
    arguments = ["-n", "5", "--size", "16", "--shift", "1", "--seed", "2", "--quiet"]
    assert cli.main(["simulate", str(path), *arguments, "-o", str(tmp_path / "a")]) == 0
    assert "wrote 5 particles of 5j0n.mrc sha256:" in capsys.readouterr().out
    written = particles.read_dataset(tmp_path / "a")
    expected = simulation.simulate("5j0n", 5, 16, shift=1.0, seed=2, progress=False)
    np.testing.assert_array_equal(written.images, expected.images)
    label = f"5j0n.mrc sha256:{data.PROTEINS['5j0n'].sha256}"
    assert written.metadata["protein"] == label and "symmetry" not in written.metadata
    # A copy elsewhere is the same protein to `recover`'s same-simulation check (file name and hash).
    copy = tmp_path / "elsewhere" / "5j0n.mrc"
    copy.parent.mkdir()
    copy.write_bytes(path.read_bytes())
    assert cli.main(["simulate", str(copy), *arguments, "-o", str(tmp_path / "b")]) == 0
    assert particles.read_dataset(tmp_path / "b").metadata["protein"] == label


@pytest.mark.filterwarnings("ignore:Data array contains NaN")
@pytest.mark.parametrize("kind", BAD_INPUTS)
def test_command_refuses_a_bad_protein_and_writes_nothing(tmp_path, capsys, kind):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    protein, message = _bad_input(inputs, kind)
    before = sorted(inputs.iterdir())
    fails_with_usage_error(capsys, ["simulate", protein, "-n", "4", "--size", "16", "--seed", "0",
                                    "-o", tmp_path / "out", "--quiet"], message)
    assert sorted(tmp_path.iterdir()) == [inputs] and sorted(inputs.iterdir()) == before
