"""Local refinement by projection matching: it brings nudged poses and shifts back to the
truth, leaves right ones alone, keeps the halves apart; `cryoposes refine` and its bad input."""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from conftest import fails_with_usage_error
from cryoposes import reconstruction, refinement, rotations, simulation, star
from cryoposes.cli import main
from cryoposes.errors import InputError


@pytest.fixture(scope="module")
def particles():
    """300 images of 5j0n at 64 px with CTF and shifts of up to 1.5 px."""
    return simulation.simulate("5j0n", 300, 64, shift=1.5, ctf=True, seed=3, progress=False)


def nudged(dataset, degrees=3.0, pixels=0.7, seed=1):
    """The dataset's poses turned by about ``degrees`` and shifts moved by about ``pixels``."""
    rng = np.random.default_rng(seed)
    turn = Rotation.from_rotvec(np.radians(degrees) * rng.standard_normal((len(dataset), 3)) / np.sqrt(3))
    poses = rotations.quaternion_multiply(dataset.quaternions, turn.as_quat(scalar_first=True))
    return poses, dataset.shifts + rng.normal(0, pixels / np.sqrt(2), (len(dataset), 2))


def errors(dataset, quaternions, shifts):
    return (np.median(rotations.geodesic_distance_degrees(dataset.quaternions, quaternions)),
            np.median(np.linalg.norm(shifts - dataset.shifts, axis=1)))


def test_nudged_poses_and_shifts_come_back(particles):
    poses, shifts = nudged(particles)
    angle_before, shift_before = errors(particles, poses, shifts)
    result = refinement.refine(particles.images, poses, shifts, particles.ctf, particles.pixel_size, iterations=3)
    angle_after, shift_after = errors(particles, result.quaternions, result.shifts)
    assert angle_before > 2.5 and shift_before > 0.5
    # 150 images per half map at 64 px leave gaps in Fourier space: ~0.6° here, ~0.3° from 1,000.
    assert angle_after < angle_before / 3 and shift_after < shift_before / 3
    # The half maps sharpen as the poses improve, and the score's frequency limit follows them.
    assert len(result.history) == 4
    assert result.history[-1]["resolution_half"] < result.history[0]["resolution_half"]
    assert result.history[0]["median_change_deg"] > 1.0


def test_right_poses_stay_right_and_halves_are_those_of_the_half_maps(particles):
    result = refinement.refine(particles.images, particles.quaternions, particles.shifts, particles.ctf,
                               particles.pixel_size, iterations=1, angle_step=0.5, levels=2)
    angle, shift = errors(particles, result.quaternions, result.shifts)
    assert angle < 0.5 and shift < 0.1
    *_, halves = reconstruction.half_maps(particles.images, particles.quaternions, particles.shifts, particles.ctf,
                                          particles.pixel_size)
    for ours, theirs in zip(result.halves, halves):
        np.testing.assert_array_equal(ours, theirs)


def test_shift_step_zero_keeps_the_shifts(particles):
    poses, shifts = nudged(particles)
    result = refinement.refine(particles.images, poses, shifts, particles.ctf, particles.pixel_size, iterations=1,
                               shift_step=0.0, levels=1)
    np.testing.assert_array_equal(result.shifts, shifts)


@pytest.mark.parametrize("options", [dict(iterations=0), dict(levels=0), dict(angle_step=-1.0),
                                     dict(shift_step=np.nan)])
def test_bad_settings_are_refused(particles, options):
    with pytest.raises(InputError):
        refinement.refine(particles.images[:4], particles.quaternions[:4], **options)


@pytest.fixture(scope="module")
def folder(tmp_path_factory, particles):
    from cryoposes.particles import write_dataset

    directory = tmp_path_factory.mktemp("refine") / "particles"
    write_dataset(particles, directory)
    return directory


def test_refine_command_writes_refined_poses_and_origins(folder, particles, tmp_path, capsys):
    poses, shifts = nudged(particles)
    names = [f"{i + 1:06d}@particles.mrcs" for i in range(len(particles))]
    order = np.random.default_rng(0).permutation(len(particles))  # any row order pairs by name
    start = star.write_poses(tmp_path / "start.star", poses[order], [names[i] for i in order],
                             metadata={"gauge": "physical"}, shifts=shifts[order] * particles.pixel_size)
    output = tmp_path / "refined.star"
    assert main(["refine", str(folder), "--poses", str(start), "-o", str(output), "--iterations", "2",
                 "--quiet"]) == 0
    assert "half maps" in capsys.readouterr().out
    table = star.read_pose_table(output)
    assert table.names == [names[i] for i in order]
    assert table.metadata["gauge"] == "physical" and table.metadata["refinement_iterations"] == 2
    angle_before, _ = errors(particles.subset(order), poses[order], shifts[order])
    angle_after, shift_after = errors(particles.subset(order), table.quaternions, table.shifts / particles.pixel_size)
    assert angle_after < angle_before / 2 and shift_after < 0.25


def test_refine_command_bad_input_exits_2_and_writes_nothing(folder, particles, tmp_path, capsys):
    output = tmp_path / "refined.star"
    names = [f"{i + 1:06d}@particles.mrcs" for i in range(len(particles))]
    distances_only = star.write_poses(tmp_path / "distances.star", particles.quaternions, names,
                                      metadata={"gauge": "distances"})
    fails_with_usage_error(capsys, ["refine", folder, "--poses", distances_only, "-o", output], "gauge")
    stranger = star.write_poses(tmp_path / "stranger.star", particles.quaternions[:2],
                                ["000001@particles.mrcs", "000999@particles.mrcs"])
    fails_with_usage_error(capsys, ["refine", folder, "--poses", stranger, "-o", output], "not in the stack")
    right = folder / "particles.star"
    fails_with_usage_error(capsys, ["refine", folder, "--poses", right, "-o", tmp_path / "out.txt"], ".star")
    fails_with_usage_error(capsys, ["refine", folder, "--poses", right, "-o", output, "--iterations", "0"], "positive")
    assert not output.exists()
