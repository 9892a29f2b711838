"""The gauge: physical poses from poses known up to what distances cannot see, using the images."""

import numpy as np
import pytest

from cryoposes import alignment, gauge, rotations, simulation


def _hidden(truth, transposed, seed):
    """The truth seen through a random gauge of pairwise distances: a ⊗ f(q) ⊗ b."""
    a, b = rotations.random_quaternions(2, seed)
    start = rotations.quaternion_conjugate(truth) if transposed else truth
    return rotations.quaternion_multiply(a, rotations.quaternion_multiply(start, b))


@pytest.fixture(scope="module")
def dataset(volume_5j0n_32):
    return simulation.simulate("5j0n", 200, 32, seed=6, progress=False)


@pytest.mark.parametrize("transposed", [False, True])
def test_both_branches_are_found_and_the_poses_become_physical(dataset, transposed):
    hidden = _hidden(dataset.quaternions, transposed, seed=7)
    assert alignment.align_physical(dataset.quaternions, hidden).median > 20  # distances alone
    result = gauge.resolve_gauge(dataset.images, hidden, directions=200, seed=0)
    assert result.transposed == transposed
    assert alignment.align_physical(dataset.quaternions, result.quaternions).median < 0.5
    assert result.score > 0.9 and result.score - result.runner_up > 0.1


def test_shifts_ctf_and_noise_are_handled_with_the_forward_model(volume_5j0n_32):
    noisy = simulation.simulate("5j0n", 300, 32, shift=2.0, ctf=True, snr_db=-6.0, seed=8, progress=False)
    hidden = _hidden(noisy.quaternions, True, seed=9)
    result = gauge.resolve_gauge(noisy.images, hidden, noisy.shifts, noisy.ctf, noisy.pixel_size,
                                 directions=200, seed=0)
    assert result.transposed
    # 300 images of 32 px at −6 dB leave the gauge about 1–2° off (the noise of the score).
    assert alignment.align_physical(noisy.quaternions, result.quaternions).median < 3.0


def test_the_score_separates_consistent_from_wrong_poses(dataset):
    right = gauge.common_line_score(dataset.images, dataset.quaternions)
    wrong = gauge.common_line_score(dataset.images, _hidden(dataset.quaternions, False, seed=10))
    # Low frequencies of a compact molecule look alike along any line: "wrong" is not zero.
    assert right > 0.95 and right - wrong > 0.2
    # The mirror image explains the images equally well: the hand is free.
    mirrored = rotations.quaternion_multiply(dataset.quaternions, np.array([0.0, 0.0, 0.0, 1.0]))
    assert gauge.common_line_score(dataset.images, mirrored) == pytest.approx(right, abs=1e-6)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="one pose per image"):
        gauge.resolve_gauge(np.zeros((5, 16, 16)), rotations.random_quaternions(4, 0))
    with pytest.raises(ValueError, match="at least 3 images"):
        gauge.resolve_gauge(np.zeros((2, 16, 16)), rotations.random_quaternions(2, 0))


def test_unknown_shifts_are_found_by_centring_first(volume_5j0n_32):
    shifted = simulation.simulate("5j0n", 300, 32, shift=3.2, ctf=True, snr_db=-6.0, seed=11, progress=False)
    hidden = _hidden(shifted.quaternions, False, seed=12)
    centred = gauge.resolve_gauge(shifted.images, hidden, None, shifted.ctf, shifted.pixel_size, directions=200,
                                  seed=0, max_shift=3.2)
    assert centred.shifts.shape == (300, 2)
    found = alignment.align_physical(shifted.quaternions, centred.quaternions).median
    # Taken as centred, particles up to 10% of the box off-centre defeat the common lines.
    ignored = gauge.resolve_gauge(shifted.images, hidden, None, shifted.ctf, shifted.pixel_size, directions=200,
                                  seed=0)
    assert ignored.shifts is None
    # At 32 px the fine search below 0.15 cycles per pixel has four rings: about 7° (95° ignored).
    assert found < 10.0
    assert alignment.align_physical(shifted.quaternions, ignored.quaternions).median > 4 * found
