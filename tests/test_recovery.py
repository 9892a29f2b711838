"""Orientation recovery from pairwise distances (small N: every test runs in seconds)."""

import keras
import numpy as np
import pytest

from cryoposes import alignment, recovery, rotations, spectral


@pytest.fixture(scope="module")
def truth():
    return rotations.random_quaternions(150, np.random.default_rng(10))


@pytest.fixture(scope="module")
def distances(truth):
    return rotations.pairwise_geodesic_distances(truth)


QUICK = dict(steps=400, steps_per_epoch=20, batch_size=8192)


def quick(**changes):
    """A short :class:`recovery.RecoveryConfig` (every test runs in seconds)."""
    return recovery.RecoveryConfig(**{**QUICK, **changes})


def test_model_outputs_geodesic_distances_of_normalised_weights(truth):
    scaled = truth * np.linspace(0.5, 2.0, len(truth))[:, None]  # the norm must not matter
    model = recovery.QuaternionModel(len(truth), initial=scaled)
    pairs = np.array([[0, 1], [5, 7], [3, 3], [149, 0]], dtype="int32")
    expected = rotations.geodesic_distance(truth[pairs[:, 0]], truth[pairs[:, 1]])
    # float32 clips the acos argument at 1 − 1e-6: a floor of 2.8e-3 rad (0.16°) at d = 0.
    assert np.allclose(keras.ops.convert_to_numpy(model(pairs)), expected, atol=3e-3)
    assert np.allclose(model.poses(), rotations.canonical(truth), atol=1e-6)


@pytest.mark.parametrize("coverage", ["full", "half"])
def test_spectral_start_is_exact_on_perfect_distances(coverage):
    truth = rotations.sample_coverage(200, coverage, np.random.default_rng(11))
    start = spectral.spectral_initialization(rotations.pairwise_geodesic_distances(truth), seed=0)
    assert alignment.align_o4(truth, start).median < 1e-3


def test_random_start_recovers_perfect_distances_thanks_to_reseating(truth, distances):
    """From random starts, gradient steps alone end in local minima (some particles stranded);
    with :class:`recovery.Reseat` the same runs reach the global minimum."""
    for seed in (0, 1):
        recovered = recovery.recover(distances, quick(steps=800, init="random", seed=seed), progress=False)
        assert alignment.align_o4(truth, recovered).median < 0.01
        stuck = recovery.recover(distances, quick(steps=800, init="random", seed=seed, reseat=False), progress=False)
        assert alignment.align_o4(truth, stuck).median > 1.0


@pytest.mark.parametrize("sampling", ["knn", "mixed"])
def test_knn_sampling_keeps_the_true_poses(truth, distances, sampling):
    # kNN pairs alone only pin local structure; started at the truth it must stay there.
    recovered = recovery.recover(distances, quick(init="true", sampling=sampling), true_quaternions=truth,
                                 progress=False)
    assert alignment.align_o4(truth, recovered).median < 0.5


def test_full_batch_uses_every_pair(truth, distances):
    lookup, _, n = recovery._check_targets(distances, None)
    sampler = recovery.PairSampler(lookup, n, batch_size=10**9)
    pairs, targets = sampler[0]
    assert len(pairs) == n * (n - 1) // 2 and np.all(pairs[:, 0] < pairs[:, 1])
    assert np.allclose(targets, distances[pairs[:, 0], pairs[:, 1]])


def test_sampler_pairs(distances):
    lookup, _, n = recovery._check_targets(distances, None)
    neighbours = recovery.nearest_neighbours(distances, 5)
    sampler = recovery.PairSampler(lookup, n, 1000, "mixed", neighbours, seed=2)
    pairs, targets = sampler[3]
    assert pairs.shape == (1000, 2) and np.all(pairs[:, 0] != pairs[:, 1])
    assert np.allclose(targets, distances[pairs[:, 0], pairs[:, 1]])
    again, _ = recovery.PairSampler(lookup, n, 1000, "mixed", neighbours, seed=2)[3]
    assert np.array_equal(pairs, again)
    # The first half are nearest-neighbour pairs: each among the 5 smallest distances of its row.
    rank = np.argsort(np.argsort(np.where(np.eye(n, dtype=bool), np.inf, distances), axis=1), axis=1)
    assert np.all(rank[pairs[:500, 0], pairs[:500, 1]] < 5)


def test_nearest_neighbours_match_brute_force(distances):
    pairs = recovery.nearest_neighbours(distances, 4)
    masked = np.where(np.eye(len(distances), dtype=bool), np.inf, distances)
    expected = np.sort(np.argsort(masked, axis=1)[:, :4], axis=1)
    assert np.array_equal(np.sort(pairs[:, 1].reshape(-1, 4), axis=1), expected)
    assert np.array_equal(pairs[:, 0], np.repeat(np.arange(len(distances)), 4))


def test_callable_targets(truth):
    def target(i, j):
        return rotations.geodesic_distance(truth[i], truth[j])

    recovered = recovery.recover(target, quick(init="random", steps=800), n=len(truth), progress=False)
    assert alignment.align_o4(truth, recovered).median < 0.5
    with pytest.raises(ValueError, match="dense matrix"):
        recovery.recover(target, quick(init="random", sampling="knn"), n=len(truth), progress=False)
    with pytest.raises(ValueError, match="dense matrix"):
        recovery.recover(target, quick(), n=len(truth), progress=False)  # the spectral start


def test_same_seed_same_result_and_resume(truth, distances, tmp_path):
    config = quick(steps=100, init="random", seed=4)
    first = recovery.recover(distances, config, progress=False)
    assert np.array_equal(first, recovery.recover(distances, config, progress=False))
    assert not np.array_equal(first, recovery.recover(distances, quick(steps=100, init="random", seed=5),
                                                      progress=False))

    class Interrupt(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 2:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        recovery.recover(distances, config, backup_dir=tmp_path, callbacks=[Interrupt()], progress=False)
    resumed = recovery.recover(distances, config, backup_dir=tmp_path, progress=False)
    assert np.array_equal(first, resumed)


def test_history_and_early_stop(distances):
    result = recovery.fit_poses(distances, quick(init="spectral", stop_below=1e-6), progress=False)
    assert result.history["loss"][-1] < 1e-6
    assert len(result.history["loss"]) < QUICK["steps"] // QUICK["steps_per_epoch"]
    assert result.history["time"] == sorted(result.history["time"])


@pytest.mark.parametrize(
    "targets, options, message",
    [
        (np.zeros((3, 4)), {}, "square"),
        (np.full((3, 3), np.nan), {}, "NaN"),
        (np.zeros((3, 3)), {"init": "magic"}, "unknown init"),
        (np.zeros((3, 3)), {"sampling": "nearest"}, "unknown sampling"),
        (np.zeros((3, 3)), {"init": "true"}, "true quaternions"),
        (np.zeros((3, 3)), {"steps": 0}, "positive"),
        (np.zeros((3, 3)), {"learning_rate": 0.0}, "learning rates must be positive"),
    ],
)
def test_bad_input_is_refused(targets, options, message):
    with pytest.raises(ValueError, match=message):
        recovery.recover(targets, recovery.RecoveryConfig(**options), progress=False)
