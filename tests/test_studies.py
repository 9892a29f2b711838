"""Whole-method studies: the pipeline runs on the simulator's own images and scores what it recovers."""

import numpy as np
import pytest

from conftest import require_protein_file, small_config
from cryoposes import alignment, rotations, simulation, studies
from cryoposes.recovery import RecoveryConfig


def test_distance_errors_of_exact_and_perturbed_distances():
    truth = rotations.random_quaternions(30, np.random.default_rng(0))
    exact = rotations.pairwise_geodesic_distances(truth)
    errors = studies.distance_errors(exact, truth)
    assert errors["pairs"] == 435 and errors["median_deg"] < 1e-6 and errors["correlation"] > 0.999999
    off = studies.distance_errors(exact + np.radians(2.0), truth)
    assert off["mean_deg"] == pytest.approx(2.0) and off["rms_deg"] == pytest.approx(2.0)


def test_experiment_trains_and_recovers_on_the_images_simulate_makes():
    require_protein_file("5j0n")
    result = studies.experiment("5j0n", n=80, size=32, snr_db=-6.0, config=small_config(), inits=("spectral", "true"),
                                recovery=RecoveryConfig(steps=40), seed=1, zoom=1.25, turns=2)
    clean = simulation.simulate("5j0n", 80, 32, seed=1, zoom=1.25, progress=False)
    noisy = simulation.with_noise(clean, -6.0)
    np.testing.assert_array_equal(result["dataset"].images, clean.images)  # the same images as the CLI's
    test = result["split"]["test"]
    np.testing.assert_array_equal(result["test_images"], noisy.images[test])
    assert result["distances"].shape == (len(test), len(test))
    assert set(result["recoveries"]) == {"spectral", "true"}
    for recovery in result["recoveries"].values():
        assert recovery["quaternions"].shape == (len(test), 4)
        assert np.isfinite(recovery["o4"].median) and np.isfinite(recovery["physical"].median)
    # The true start is the test images' own poses: no error before recovery.
    assert result["recoveries"]["true"]["losses_before"]["eq8"] < 1e-4  # the float64 acos floor
    assert result["recoveries"]["spectral"]["losses_before"]["eq8"] > 0.1
    assert result["model"].metadata["config"]["augmentation"]["snr_db"] == -6.0
    # A model of an earlier run is used as it is: the same split, so the same distances.
    again = studies.experiment("5j0n", n=80, size=32, snr_db=-6.0, inits=("true",), recovery=RecoveryConfig(steps=5),
                               seed=1, zoom=1.25, turns=2, trained=result["model"])
    np.testing.assert_allclose(again["distances"], result["distances"], atol=1e-6)
    assert again["model"] is result["model"]


def test_map_from_poses_scores_a_global_rotation_and_mirror_of_the_truth_like_the_truth():
    require_protein_file("5j0n")
    dataset = simulation.simulate("5j0n", 300, 32, seed=2, progress=False)
    reference = studies.true_map("5j0n", 32)
    exact = studies.map_from_poses(dataset, dataset.quaternions, dataset.quaternions, reference)
    # The same poses seen from another frame, mirrored: the physical gauge, which no image sees.
    g = rotations.random_quaternions(1, 3)[0]
    moved = rotations.quaternion_multiply(g, rotations.mirror(dataset.quaternions))
    seen = studies.map_from_poses(dataset, moved, dataset.quaternions, reference)
    assert seen["physical"].flipped and seen["physical"].median < 1e-3
    assert exact["resolution_truth"] < 2.5 * dataset.pixel_size
    assert seen["resolution_truth"] == pytest.approx(exact["resolution_truth"], rel=0.02)
    assert seen["resolution_half"] == pytest.approx(exact["resolution_half"], rel=0.02)


def test_comparison_table_shows_the_chosen_profiles_and_the_page_beside_the_paper():
    def record(name, profile, snr_db, median):
        return {"name": name, "profile": profile, "settings": {"protein": "5j0n", "coverage": "full", "snr_db": snr_db},
                "recovery": {"spectral": {"o4_median_deg": median, "o4_mean_deg": median + 1, "physical_median_deg": 50.0}}}

    q = rotations.random_quaternions(50, rng=0)
    moved = rotations.quaternion_multiply(q, np.repeat(rotations.random_quaternions(1, rng=1), 50, axis=0))
    page = {"protein": "5a1a", "coverage": "quarter", "snr_db": None, "profile": "ci",
            "o4": alignment.align_o4(q, moved), "physical": alignment.align_physical(q, moved)}
    table = studies.comparison_table([record("a", "paper", -12.0, 6.9), record("explore", "measurement", None, 80.0)], page)
    assert list(table["record"]) == ["a", "—"]  # exploratory runs stay out
    assert list(table["paper O(4) median °"]) == [14.6, 7.2]
    assert table.loc[1, "O(4) median °"] < 0.01 and table.loc[1, "physical median °"] > 1.0
