"""STAR tables: pose files, names, origins, the cryoposes block, RELION's layout, bad files."""

import numpy as np
import pandas as pd
import pytest
import starfile

from cryoposes import star
from cryoposes.rotations import canonical, random_quaternions


def test_poses_names_and_metadata_round_trip(tmp_path):
    q = random_quaternions(4, rng=1)
    names = [f"{i:06d}@stack.mrcs" for i in (3, 1, 4, 2)]
    path = star.write_poses(tmp_path / "poses.star", q, image_names=names, metadata={"gauge": "physical", "score": 0.5})
    table = star.read_pose_table(path)
    np.testing.assert_allclose(canonical(table.quaternions), canonical(q), atol=1e-8)
    assert table.names == names and table.shifts is None
    assert starfile.read(path, always_dict=True)["cryoposes"] == {"cryoposes_gauge": "physical", "cryoposes_score": 0.5}


def test_a_relion_particles_block_is_read_whatever_its_layout(tmp_path):
    """RELION 3.1+: an optics block, columns in its own order, extra columns, origins in Å."""
    particles = pd.DataFrame({
        "rlnCoordinateX": [10.0, 20.0], "rlnAnglePsi": [30.0, 0.0], "rlnImageName": ["000002@a.mrcs", "000001@b.mrcs"],
        "rlnOriginYAngst": [1.5, -2.0], "rlnAngleTilt": [90.0, 45.0], "rlnOriginXAngst": [0.5, 3.0],
        "rlnAngleRot": [10.0, 200.0], "rlnOpticsGroup": [1, 2],
    })
    optics = pd.DataFrame({"rlnOpticsGroup": [1, 2], "rlnImagePixelSize": [1.2, 1.3]})
    path = tmp_path / "run_data.star"
    starfile.write({"optics": optics, "particles": particles}, path)
    table = star.read_pose_table(path)
    assert table.names == ["000002@a.mrcs", "000001@b.mrcs"]
    np.testing.assert_allclose(table.shifts, [[-0.5, -1.5], [-3.0, 2.0]])  # shifts are −origins
    from cryoposes.rotations import euler_to_quaternion

    expected = euler_to_quaternion(*np.radians([[10.0, 200.0], [90.0, 45.0], [30.0, 0.0]]))
    np.testing.assert_allclose(canonical(table.quaternions), canonical(expected), atol=1e-9)


def test_read_poses_errors(tmp_path):
    path = tmp_path / "poses.star"
    starfile.write({"particles": pd.DataFrame({"rlnAngleRot": [1.0], "rlnAngleTilt": [2.0]})}, path)
    with pytest.raises(ValueError, match="missing column.*rlnAnglePsi"):
        star.read_poses(path)
    starfile.write({"particles": pd.DataFrame({"rlnAngleRot": [1.0, np.nan], "rlnAngleTilt": [2.0, 3.0],
                                               "rlnAnglePsi": [0.0, 0.0]})}, path)
    with pytest.raises(ValueError, match="NaN"):
        star.read_poses(path)
    with pytest.raises(FileNotFoundError, match="no STAR file"):
        star.read_poses(tmp_path / "absent.star")
    with pytest.raises(ValueError, match="NaN"):
        star.write_poses(path, [[np.nan, 0, 0, 1]])
