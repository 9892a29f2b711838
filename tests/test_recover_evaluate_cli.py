"""`cryoposes recover` and `cryoposes evaluate`: end to end on a small dataset, and bad input."""

import json
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
import starfile

from conftest import fails_with_usage_error
from cryoposes import rotations, symmetry
from cryoposes.cli import main
from cryoposes.star import ANGLE_COLUMNS


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, volume_5j0n_32):
    from cryoposes.particles import ParticleDataset, write_dataset
    from cryoposes.projection import project

    quaternions = rotations.random_quaternions(60, np.random.default_rng(12))
    directory = tmp_path_factory.mktemp("data") / "particles"
    write_dataset(ParticleDataset(project(volume_5j0n_32, quaternions), quaternions, pixel_size=4.0,
                                  metadata={"protein": "5j0n"}), directory)
    return directory


def _evaluate(capsys, *arguments):
    capsys.readouterr()
    assert main(["evaluate", *map(str, arguments), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_recover_true_distances_then_evaluate(dataset, tmp_path, capsys):
    output = tmp_path / "poses.star"
    arguments = ["recover", str(dataset), "--distance", "true", "--init", "spectral", "--steps", "60",
                 "--seed", "3", "--quiet", "-o", str(output)]
    assert main(arguments) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["poses.star"]  # nothing else left behind
    report = _evaluate(capsys, dataset / "particles.star", output)
    assert report["particles"] == 60
    assert report["o4"]["median_deg"] < 0.1
    assert report["seed_losses"]["eq7"] < 1e-6
    # The gauge was found from the images: the poses are physical, and the file says so.
    assert report["physical"]["median_deg"] < 0.5
    assert starfile.read(output, always_dict=True)["cryoposes"]["cryoposes_gauge"] == "physical"
    # The same seed writes the same poses.
    first, again = tmp_path / "first.star", tmp_path / "again.star"
    for path in (first, again):
        assert main(arguments[:-2] + ["--no-gauge", "-o", str(path)]) == 0
    from cryoposes.star import read_poses

    assert np.array_equal(read_poses(first), read_poses(again))
    # Plain text names both alignments.
    assert main(["evaluate", str(dataset / "particles.star"), str(output)]) == 0
    text = capsys.readouterr().out
    assert "physical" in text and "O(4)" in text


def test_recover_euclidean_distances_runs(dataset, tmp_path, capsys):
    output = tmp_path / "euclidean.star"
    assert main(["recover", str(dataset), "--distance", "euclidean", "--sampling", "mixed", "--steps", "40",
                 "--seed", "0", "--quiet", "--no-gauge", "-o", str(output)]) == 0
    assert starfile.read(output, always_dict=True)["cryoposes"]["cryoposes_gauge"] == "distances"
    report = _evaluate(capsys, dataset / "particles.star", output)
    assert report["particles"] == 60 and np.isfinite(report["o4"]["median_deg"])


def test_evaluate_matches_particles_by_name_and_knows_symmetry(dataset, tmp_path, capsys):
    from cryoposes.star import read_poses, write_poses

    truth = read_poses(dataset / "particles.star")
    subset = np.array([5, 2, 40, 17, 33, 8, 50, 1])
    g = symmetry.symmetry_group("D2")
    copies = g[np.arange(len(subset)) % 4]
    rotated = rotations.quaternion_multiply(copies, truth[subset])
    path = tmp_path / "subset.star"
    write_poses(path, rotated, image_names=[f"{i + 1:06d}@particles.mrcs" for i in subset])
    assert _evaluate(capsys, dataset / "particles.star", path)["physical"]["median_deg"] > 1.0
    report = _evaluate(capsys, dataset / "particles.star", path, "--symmetry", "D2")
    assert report["particles"] == len(subset) and report["physical"]["median_deg"] < 1e-3


def test_a_reordered_subset_star_file_keeps_its_pairing_through_recover_and_evaluate(dataset, tmp_path, capsys):
    """A STAR file listing some particles of the stack in another order (as RELION's Select
    writes them): recover must name each pose by its own image, so evaluate pairs it right."""
    table = starfile.read(dataset / "particles.star", always_dict=True)
    rows = np.random.default_rng(4).permutation(60)[:40]
    table["particles"] = table["particles"].iloc[rows].reset_index(drop=True)
    subset = tmp_path / "subset"
    subset.mkdir()
    (subset / "particles.mrcs").symlink_to(dataset / "particles.mrcs")
    starfile.write(table, subset / "particles.star")
    output = tmp_path / "poses.star"
    assert main(["recover", str(subset), "--distance", "true", "--steps", "60", "--seed", "3", "--quiet",
                 "--no-gauge", "-o", str(output)]) == 0
    assert list(starfile.read(output, always_dict=True)["particles"]["rlnImageName"]) == [f"{i + 1:06d}@particles.mrcs" for i in rows]
    # Scored against the full, unordered truth: matched by name, the poses are exact.
    report = _evaluate(capsys, dataset / "particles.star", output)
    assert report["particles"] == 40 and report["o4"]["median_deg"] < 0.1
    # Paired by row instead (what row-index names did), the same poses are far off.
    from cryoposes import alignment
    from cryoposes.star import read_poses

    by_row = alignment.align_o4(read_poses(dataset / "particles.star")[:40], read_poses(output))
    assert by_row.median > 10


def test_off_centre_particles_are_centred_before_the_gauge_and_their_shifts_written(volume_5j0n_32, tmp_path, capsys):
    from cryoposes import imaging
    from cryoposes.particles import ParticleDataset, write_dataset
    from cryoposes.projection import project
    from cryoposes.simulation import random_shifts

    truth = rotations.random_quaternions(150, np.random.default_rng(5))
    shifts = random_shifts(150, 3.2, rng=6)
    # Particles fresh from picking: off-centre, and the STAR file has no origins.
    images = imaging.shift_images(project(volume_5j0n_32, truth), shifts)
    directory = tmp_path / "picked"
    write_dataset(ParticleDataset(images, truth, pixel_size=4.0, metadata={"protein": "5j0n"}), directory)
    output = tmp_path / "poses.star"
    assert main(["recover", str(directory), "--distance", "true", "--steps", "60", "--seed", "0", "--quiet",
                 "--max-shift", "3.2", "-o", str(output)]) == 0
    written = starfile.read(output, always_dict=True)
    assert written["cryoposes"]["cryoposes_shifts"].startswith("estimated")
    origins = written["particles"][["rlnOriginXAngst", "rlnOriginYAngst"]].to_numpy()
    assert np.abs(origins).max() <= (3.2 + 0.5) * 4.0
    report = _evaluate(capsys, directory / "particles.star", output)
    assert report["physical"]["median_deg"] < 3.0
    fails_with_usage_error(capsys, ["recover", directory, "--distance", "true", "--seed", "0", "--quiet",
                                    "--max-shift", "-1", "-o", tmp_path / "bad.star"], "--max-shift")
    assert not (tmp_path / "bad.star").exists()


def test_recover_bad_input_exits_2(dataset, tmp_path, capsys):
    output = tmp_path / "out.star"
    base = ["recover", dataset, "--seed", "0", "-o", output, "--quiet"]
    fails_with_usage_error(capsys, ["recover", tmp_path / "missing", "--distance", "true", "--seed", "0", "-o", output],
           "no dataset folder")
    fails_with_usage_error(capsys, base + ["--distance", "cosine"], "--distance must be")
    fails_with_usage_error(capsys, base + ["--distance", tmp_path / "none.keras"], "no distance model")
    fails_with_usage_error(capsys, base + ["--distance", "true", "--init", "magic"], "invalid choice")
    fails_with_usage_error(capsys, base + ["--distance", "true", "--steps", "0"], "--steps must be positive")
    fails_with_usage_error(capsys, ["recover", dataset, "--distance", "true", "--seed", "0", "-o", tmp_path / "out.txt"],
           "must be a .star file")
    empty = tmp_path / "empty"
    empty.mkdir()
    fails_with_usage_error(capsys, ["recover", empty, "--distance", "true", "--seed", "0", "-o", output], "particles")
    assert not output.exists()


def test_evaluate_bad_input_exits_2(dataset, tmp_path, capsys):
    from cryoposes.star import write_poses

    truth_path = dataset / "particles.star"
    short = tmp_path / "short.star"
    write_poses(short, rotations.random_quaternions(10, np.random.default_rng(0)))
    fails_with_usage_error(capsys, ["evaluate", truth_path, short], "mismatched particle counts")
    fails_with_usage_error(capsys, ["evaluate", truth_path, tmp_path / "missing.star"], "no STAR file")
    fails_with_usage_error(capsys, ["evaluate", truth_path, truth_path, "--symmetry", "X9"], "unknown symmetry")
    broken = tmp_path / "nan.star"
    angles = np.zeros((10, 3))
    angles[4, 1] = np.nan
    starfile.write({"particles": pd.DataFrame(angles, columns=["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"])},
                   broken)
    fails_with_usage_error(capsys, ["evaluate", short, broken], "NaN")
    stranger = tmp_path / "stranger.star"
    write_poses(stranger, rotations.random_quaternions(2, np.random.default_rng(0)),
                image_names=["000001@particles.mrcs", "999999@particles.mrcs"])
    fails_with_usage_error(capsys, ["evaluate", truth_path, stranger], "not in")


@pytest.fixture(scope="module")
def relion_project(tmp_path_factory, volume_5j0n_32):
    """120 projections of 5j0n as a RELION project holds them after extraction (3 stacks, 2
    optics groups, shuffled rows, RELION's columns, no poses). Returns the STAR path, the true
    poses by image name, the map."""
    from cryoposes.particles import ParticleDataset, write_relion_project
    from cryoposes.projection import project

    truth = rotations.random_quaternions(120, np.random.default_rng(4))
    images = project(volume_5j0n_32, truth)
    star_path, names = write_relion_project(ParticleDataset(images, None, pixel_size=4.0),
                                            tmp_path_factory.mktemp("relion") / "project", stacks=3, optics_groups=2)
    return star_path, dict(zip(names, truth)), volume_5j0n_32


def test_a_relion_star_without_poses_round_trips_through_recover(relion_project, tmp_path, capsys):
    """Every input row and column comes back, poses added, each pose with its own image."""
    from cryoposes import alignment, projection

    star_path, truth, volume = relion_project
    output = tmp_path / "recovered.star"
    # Euclidean distances on images without poses: the command for particles fresh from picking.
    assert main(["recover", str(star_path), "--distance", "euclidean", "--steps", "30", "--seed", "0", "--quiet",
                 "--no-gauge", "-o", str(output)]) == 0
    given = starfile.read(star_path, always_dict=True)
    written = starfile.read(output, always_dict=True)
    pd.testing.assert_frame_equal(written["optics"], given["optics"], check_dtype=False)  # 4.0 is written "4"
    assert list(written["particles"].columns) == list(given["particles"].columns) + list(ANGLE_COLUMNS)
    pd.testing.assert_frame_equal(written["particles"][given["particles"].columns], given["particles"], check_dtype=False)
    # With the true distances (a RELION file with poses), the pairing is checked by re-projecting:
    # each row's pose, aligned to the truth, projects to that row's own image.
    posed = given["particles"].copy()
    angles = np.degrees(rotations.quaternion_to_euler(np.array([truth[n] for n in posed["rlnImageName"]])))
    for column, values in zip(ANGLE_COLUMNS, angles):
        posed[column] = values
    posed_path = star_path.with_name("posed.star")
    starfile.write({"optics": given["optics"], "particles": posed}, posed_path)
    assert main(["recover", str(posed_path), "--distance", "true", "--steps", "60", "--seed", "0", "--quiet",
                 "-o", str(output)]) == 0
    from cryoposes.particles import read_dataset
    from cryoposes.star import read_pose_table

    table = read_pose_table(output)
    assert table.names == list(posed["rlnImageName"])
    true_poses = np.array([truth[n] for n in table.names])
    aligned = alignment.align_physical(true_poses, table.quaternions)
    assert aligned.median < 1.0
    reprojected = projection.project(volume, aligned.apply(table.quaternions))
    images = read_dataset(posed_path).images
    correlation = [np.corrcoef(a.ravel(), b.ravel())[0, 1] for a, b in zip(reprojected, images)]
    assert min(correlation) > 0.95


@pytest.mark.skipif(shutil.which("relion_reconstruct") is None, reason="needs RELION's relion_reconstruct")
def test_relion_reconstructs_from_recovers_output_the_map_cryoposes_makes(tmp_path):
    """RELION continues from the written STAR file: with shifts, CTFs, three stacks, two optics
    groups and shuffled rows, `relion_reconstruct` builds the same map as `cryoposes reconstruct`
    from the same file; flipping the origins' sign makes the test fail, so it can."""
    import mrcfile

    from cryoposes import fsc, simulation
    from cryoposes.particles import write_relion_project

    data = simulation.simulate("5j0n", 600, 32, shift=2.0, ctf=True, seed=7, progress=False)
    star_path, names = write_relion_project(data, tmp_path / "project", stacks=3, optics_groups=2)
    blocks = starfile.read(star_path, always_dict=True)
    truth = dict(zip(names, data.quaternions))
    angles = np.degrees(rotations.quaternion_to_euler(np.array([truth[n] for n in blocks["particles"]["rlnImageName"]])))
    blocks["particles"] = blocks["particles"].assign(**dict(zip(ANGLE_COLUMNS, angles)))
    posed = star_path.with_name("posed.star")
    starfile.write(blocks, posed)
    output = tmp_path / "project" / "recovered.star"
    assert main(["recover", str(posed), "--distance", "true", "--init", "true", "--steps", "10", "--seed", "0",
                 "--quiet", "-o", str(output)]) == 0
    assert main(["reconstruct", str(output), "--poses", str(output), "-o", str(tmp_path / "ours.mrc")]) == 0
    ours = mrcfile.read(tmp_path / "ours.mrc")

    def relion_map(star):
        # RELION reads image paths relative to the project folder, where it is run.
        run = subprocess.run(["relion_reconstruct", "--i", star.name, "--o", "relion.mrc", "--ctf"],
                             cwd=star.parent, capture_output=True, text=True)
        assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
        return mrcfile.read(star.parent / "relion.mrc")

    assert fsc.fsc(relion_map(output), ours).correlation.min() > 0.9
    written = starfile.read(output, always_dict=True)
    written["particles"][["rlnOriginXAngst", "rlnOriginYAngst"]] *= -1
    flipped = output.with_name("flipped.star")
    starfile.write(written, flipped)
    assert fsc.fsc(relion_map(flipped), ours).correlation.min() < 0.5
