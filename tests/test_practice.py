"""Every method on the same particles (cryoposes.practice) and the sweep table."""

import importlib.util
import math

import numpy as np
import pytest

from conftest import require_protein_file, small_config
from cryoposes import practice, simulation, volumes
from cryoposes.recovery import RecoveryConfig


@pytest.fixture(scope="module")
def particles():
    x, y, z = np.meshgrid(*[np.arange(32) - 16] * 3, indexing="ij")
    blob = (np.exp(-((x - 4) ** 2 + y ** 2 + 3 * (z + 3) ** 2) / 10.0)
            + np.exp(-(x ** 2 + (y - 5) ** 2 + z ** 2) / 6.0)
            + 0.5 * np.exp(-((x + 5) ** 2 + (y + 2) ** 2 + (z - 4) ** 2) / 4.0))
    return simulation.simulate(volumes.Volume(blob, 4.0), 60, 32, seed=1, progress=False)


def test_euclidean_poses_are_scored_both_ways_without_truth_before_scoring(particles):
    result = practice.compare_methods(particles, particles.quaternions, methods=("euclidean",),
                                      recovery=RecoveryConfig(steps=300))["euclidean"]
    assert set(result["stages"]) == {"distances", "recovery", "gauge"}
    assert result["saw_true_poses"] is False
    # Physical alignment allows less than O(4): its error can only be larger or equal.
    assert result["physical"].median >= result["o4"].median - 1e-6
    assert result["quaternions"].shape == (60, 4) and result["seconds"] >= sum(result["stages"].values()) - 1e-9


@pytest.mark.skipif(importlib.util.find_spec("aspire") is None, reason="needs the bench extra (ASPIRE)")
def test_common_lines_on_clean_particles_are_near_exact(particles):
    result = practice.compare_methods(particles, particles.quaternions, methods=("common lines",))["common lines"]
    # Chance is ~128°; a few degrees at 32 px on a three-blob molecule.
    assert result["physical"].median < 6.0 and set(result["stages"]) == {"common lines"}


def test_compare_methods_refuses_bad_requests(particles):
    with pytest.raises(ValueError, match="unknown method"):
        practice.compare_methods(particles, particles.quaternions, methods=("relion",))
    with pytest.raises(ValueError, match="needs a distance model"):
        practice.compare_methods(particles, particles.quaternions, methods=("learned",))
    with pytest.raises(ValueError, match="59 true poses for 60 particles"):
        practice.compare_methods(particles, particles.quaternions[:59], methods=("euclidean",))


def test_sweep_table_orders_levels_and_keeps_the_paper_apart():
    numbers = {"o4_median_deg": 3.0, "physical_median_deg": 3.5, "seconds": 1.0, "saw_true_poses": True}
    records = [{"name": f"s {label}", "snr_db": snr, "test_images": 100, "common_lines_images": 50,
                "all_test_images": {"learned": numbers}, "side_by_side": {"common lines": {**numbers,
                                                                                          "saw_true_poses": False}}}
               for label, snr in (("-12dB", -12.0), ("clean", None))]
    table = practice.sweep_table(records)
    ours = table[table["record"] != "the paper"]
    assert ours["snr_db"].tolist() == [math.inf, math.inf, -12.0, -12.0]
    assert set(ours["method"]) == {"learned (all 100)", "common lines (first 50)"}
    paper = table[table["record"] == "the paper"]
    assert len(paper) == len(practice.PAPER_NOISE_SWEEP) and paper["physical median °"].isna().all()
    assert math.isclose(practice.sigma2_to_db(16), -12.04, abs_tol=0.01)


def test_condition_table_shows_each_method_once_per_condition_in_the_given_order():
    learned = {"o4_median_deg": 8.0, "physical_median_deg": 9.0, "seconds": 1.0, "saw_true_poses": True}
    lines = {"o4_median_deg": 80.0, "physical_median_deg": 81.0, "seconds": 5.0, "saw_true_poses": False}
    noise = {"name": "noise", "test_images": 100, "common_lines_images": 50, "all_test_images": {"learned": learned},
             "side_by_side": {"learned": {**learned, "o4_median_deg": 7.0}, "common lines": lines}}
    ctf = {"name": "ctf", "test_images": 100, "common_lines_images": 0, "all_test_images": {"learned": learned},
           "side_by_side": {}}
    table = practice.condition_table([noise, ctf], {"ctf": "CTF", "missing": "never run", "noise": "noise only"})
    assert table["condition"].tolist() == ["CTF", "noise only", "noise only"]
    assert table["method"].tolist() == ["learned", "learned", "common lines"]
    # All test particles win over the side-by-side subset for the same method.
    assert table["particles"].tolist() == ["all 100", "all 100", "first 50"]
    assert table["O(4) median °"].tolist() == [8.0, 8.0, 80.0]


def test_held_out_protein_is_never_trained_on():
    with pytest.raises(ValueError, match="held out and cannot be trained on"):
        practice.held_out_protein("5j0n", ["5j0n", "6x18"], 50, 32)
    with pytest.raises(ValueError, match="at least one protein"):
        practice.held_out_protein("5j0n", [], 50, 32)


def test_held_out_protein_trains_on_others_and_scores_the_unseen_one():
    for name in ("5j0n", "6x18"):
        require_protein_file(name)
    result = practice.held_out_protein("5j0n", ["6x18"], 60, 32, small_config(), test_images=30,
                                       recovery=RecoveryConfig(steps=50), turns=1)
    assert result["model"].metadata["proteins"] == ["6x18"] and result["model"].metadata["held_out"] == "5j0n"
    assert set(result["methods"]) == {"unseen"} and result["distance_errors"]["unseen"]["pairs"] == 30 * 29 // 2
    assert result["methods"]["unseen"]["quaternions"].shape == (30, 4)


def test_poses_turned_about_the_common_line_keep_it_and_change_the_distance():
    from cryoposes import gauge, rotations

    first, second = rotations.random_quaternions(200, 1), rotations.random_quaternions(200, 2)
    dihedrals = np.linspace(0.0, 2 * np.pi, 37)
    distances = practice.distances_sharing_a_common_line(first, second, dihedrals)
    assert distances.shape == (200, 37)
    np.testing.assert_allclose(distances[:, 0], rotations.geodesic_distance(first, second), atol=1e-9)
    # Every turned pose puts the common line at the same angle in both images (lines: modulo π)...
    axis = np.cross(rotations.quaternion_to_matrix(first)[:, :, 2], rotations.quaternion_to_matrix(second)[:, :, 2])
    matrices = rotations.quaternion_to_matrix(first)
    before = gauge._line_angles(matrices, rotations.quaternion_to_matrix(second))
    for angle in dihedrals[[5, 17, 30]]:
        turned = rotations.quaternion_multiply(rotations.axis_angle_to_quaternion(axis, np.full(200, angle)), second)
        after = gauge._line_angles(matrices, rotations.quaternion_to_matrix(turned))
        for old, new in zip(before, after):
            assert np.abs(np.angle(np.exp(2j * (old - new)))).max() < 1e-9
    # ... while the distance sweeps a wide range: tens of degrees for almost every pair.
    spread = np.degrees(distances.max(axis=1) - distances.min(axis=1))
    assert np.median(spread) > 45 and np.mean(spread > 10) > 0.8
