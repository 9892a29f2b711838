"""`cryoposes reconstruct` and `cryoposes fsc`: maps from a dataset and poses, their resolution,
RELION's STAR layout, and bad input."""

import json

import mrcfile
import numpy as np
import pandas as pd
import pytest
import starfile

from conftest import fails_with_usage_error
from cryoposes.cli import main


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, volume_5j0n_32):
    from cryoposes import simulation
    from cryoposes.particles import write_dataset

    directory = tmp_path_factory.mktemp("data") / "particles"
    write_dataset(simulation.simulate("5j0n", 300, 32, shift=2.0, ctf=True, seed=2, progress=False), directory)
    return directory


def test_reconstruct_writes_a_map_and_half_maps_readable_as_mrc(dataset, tmp_path, capsys):
    output = tmp_path / "map.mrc"
    assert main(["reconstruct", str(dataset), "--poses", str(dataset / "particles.star"), "-o", str(output),
                 "--half-maps"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["map.mrc", "map_half1.mrc", "map_half2.mrc"]
    pixel_size = float(starfile.read(dataset / "particles.star", always_dict=True)["optics"]["rlnImagePixelSize"][0])
    with mrcfile.open(output) as mrc:
        assert mrc.data.shape == (32, 32, 32) and mrc.data.dtype == np.float32
        assert float(mrc.voxel_size.x) == pytest.approx(pixel_size, rel=1e-5)
        assert (int(mrc.header.mapc), int(mrc.header.mapr), int(mrc.header.maps)) == (1, 2, 3)
    assert "FSC 0.143 resolution" in capsys.readouterr().out
    # The half maps agree far out: the fsc verb reads them back.
    assert main(["fsc", str(tmp_path / "map_half1.mrc"), str(tmp_path / "map_half2.mrc"), "--json",
                 "--plot", str(tmp_path / "fsc.html")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["resolution_angstrom"]["0.143"] < 3 * pixel_size
    assert (tmp_path / "fsc.html").stat().st_size > 1000


def test_the_same_poses_in_relion_layout_give_the_same_map(dataset, tmp_path):
    """RELION writes an optics block, origins in Å, its own column order and more columns."""
    ours = tmp_path / "ours.mrc"
    assert main(["reconstruct", str(dataset), "--poses", str(dataset / "particles.star"), "-o", str(ours)]) == 0
    blocks = starfile.read(dataset / "particles.star", always_dict=True)
    particles = blocks["particles"].iloc[::-1].reset_index(drop=True)  # another row order
    particles["rlnClassNumber"] = 1
    particles["rlnLogLikeliContribution"] = 0.0
    columns = ["rlnAnglePsi", "rlnClassNumber", "rlnImageName", "rlnOriginYAngst", "rlnAngleTilt",
               "rlnOriginXAngst", "rlnAngleRot", "rlnLogLikeliContribution"]
    relion = tmp_path / "run_data.star"
    starfile.write({"optics": blocks["optics"], "particles": particles[columns]}, relion)
    theirs = tmp_path / "theirs.mrc"
    assert main(["reconstruct", str(dataset), "--poses", str(relion), "-o", str(theirs)]) == 0
    with mrcfile.open(ours) as first, mrcfile.open(theirs) as second:
        np.testing.assert_allclose(first.data, second.data, atol=1e-4 * np.abs(first.data).max())


def test_bad_input_exits_2_and_writes_nothing(dataset, tmp_path, capsys):
    output = tmp_path / "map.mrc"
    stranger = tmp_path / "stranger.star"
    starfile.write({"particles": pd.DataFrame({"rlnImageName": ["000001@particles.mrcs", "000999@particles.mrcs"],
                                               "rlnAngleRot": [0.0, 1.0], "rlnAngleTilt": [0.0, 1.0],
                                               "rlnAnglePsi": [0.0, 1.0]})}, stranger)
    fails_with_usage_error(capsys, ["reconstruct", dataset, "--poses", stranger, "-o", output], "not in the stack")
    broken = tmp_path / "nan.star"
    starfile.write({"particles": pd.DataFrame({"rlnImageName": ["000001@particles.mrcs"], "rlnAngleRot": [np.nan],
                                               "rlnAngleTilt": [0.0], "rlnAnglePsi": [0.0]})}, broken)
    fails_with_usage_error(capsys, ["reconstruct", dataset, "--poses", broken, "-o", output], "NaN")
    fails_with_usage_error(capsys, ["reconstruct", dataset, "--poses", dataset / "particles.star", "-o", tmp_path / "map.txt"],
           "must be a .mrc")
    fails_with_usage_error(capsys, ["reconstruct", dataset, "--poses", dataset / "particles.star", "-o", output, "--symmetry", "Q2"],
           "unknown symmetry")
    assert not list(tmp_path.glob("*.mrc"))


def test_fsc_refuses_maps_of_different_boxes(tmp_path, capsys):
    from cryoposes.volumes import Volume, save_map

    rng = np.random.default_rng(0)
    save_map(Volume(rng.standard_normal((8, 8, 8)).astype(np.float32), 2.0), tmp_path / "a.mrc")
    save_map(Volume(rng.standard_normal((10, 10, 10)).astype(np.float32), 2.0), tmp_path / "b.mrc")
    fails_with_usage_error(capsys, ["fsc", tmp_path / "a.mrc", tmp_path / "b.mrc"], "different boxes")
    fails_with_usage_error(capsys, ["fsc", tmp_path / "a.mrc", tmp_path / "missing.mrc"], "no map file")
