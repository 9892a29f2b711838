"""Studies of the whole method on simulated data: simulate, train, measure distances, recover, score.

The book's chapters and the scripts in ``benchmarks/`` call these functions, so a number in the
book and a number in a results record come from the same code. Each study simulates its data
with :func:`cryoposes.simulation.simulate`, like ``cryoposes simulate``, so the same seed gives
the same images through the command line, the library and the book.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from cryoposes import alignment, rotations, simulation, siamese, training
from cryoposes.options import TURNS
from cryoposes.recovery import RecoveryConfig, fit_poses

__all__ = ["distance_errors", "recover_from_distances", "experiment"]


def distance_errors(distances, quaternions) -> dict:
    """How far learned distances are from the true d_q, over the pairs i < j.

    Parameters
    ----------
    distances : array_like
        (N, N) learned distances in radians.
    quaternions : array_like
        (N, 4) true poses.

    Returns
    -------
    dict
        ``pairs``; ``mean_deg``, ``median_deg``, ``rms_deg``: the absolute error in degrees;
        ``correlation``: Pearson's between learned and true distances.

    Examples
    --------
    >>> from cryoposes import rotations
    >>> truth = rotations.random_quaternions(20, 0)
    >>> errors = distance_errors(rotations.pairwise_geodesic_distances(truth), truth)
    >>> errors["pairs"], round(errors["median_deg"], 6)
    (190, 0.0)
    """
    quaternions = np.asarray(quaternions, dtype=float)
    upper = np.triu_indices(len(quaternions), 1)
    predicted = np.asarray(distances, dtype=float)[upper]
    true = rotations.pairwise_geodesic_distances(quaternions)[upper]
    error = np.degrees(np.abs(predicted - true))
    return {
        "pairs": int(len(error)),
        "mean_deg": float(error.mean()),
        "median_deg": float(np.median(error)),
        "rms_deg": float(np.sqrt(np.mean(error ** 2))),
        "correlation": float(np.corrcoef(predicted, true)[0, 1]),
    }


def recover_from_distances(distances, true_quaternions, config: RecoveryConfig | None = None,
                           symmetry: str = "C1", progress: bool = False) -> dict:
    """Recover poses from a distance matrix and score them against the truth.

    Parameters
    ----------
    distances : array_like
        (N, N) target distances in radians.
    true_quaternions : array_like
        (N, 4) true poses: for scoring, and the start when ``config.init == "true"``.
    config : RecoveryConfig, optional
        Recovery settings (:func:`cryoposes.recovery.fit_poses`).
    symmetry : str, optional
        Point group of the molecule, e.g. ``"C1"``, ``"D2"``.
    progress : bool, optional
        Show a progress bar.

    Returns
    -------
    dict
        ``init``; ``quaternions`` (N, 4) recovered; ``o4`` and ``physical``:
        :class:`cryoposes.alignment.Alignment` (median and mean errors in degrees);
        ``losses_before`` and ``losses_after``: the seed report's Table 1 losses at the start
        and after recovery (``eq6`` on the distances, ``eq7`` ground truth, ``eq8`` in
        radians); ``history``; ``seconds`` of optimisation.
    """
    config = config or RecoveryConfig()
    true_quaternions = np.asarray(true_quaternions, dtype=float)
    result = fit_poses(distances, config, true_quaternions=true_quaternions, progress=progress)
    return {
        "init": config.init,
        "quaternions": result.quaternions,
        "o4": alignment.align_o4(true_quaternions, result.quaternions, symmetry=symmetry),
        "physical": alignment.align_physical(true_quaternions, result.quaternions, symmetry=symmetry),
        "losses_before": alignment.seed_losses(true_quaternions, result.initial, distances, seed=config.seed),
        "losses_after": alignment.seed_losses(true_quaternions, result.quaternions, distances, seed=config.seed),
        "history": result.history,
        "seconds": float(result.history["time"][-1]) if result.history.get("time") else 0.0,
    }


def experiment(protein: str = "5j0n", n: int = 5000, size: int = 64, coverage: str = "full",
               snr_db: float | None = None, config: training.TrainingConfig | None = None,
               inits=("spectral",), recovery: RecoveryConfig | None = None, symmetry: str = "C1",
               seed: int = 0, zoom: float = 1.0, progress: bool = False, initial=None,
               turns: int = TURNS) -> dict:
    """The whole Phase 2.2 pipeline on simulated data, from a density map to scored poses.

    1. Simulate ``n`` clean images of ``protein`` (:func:`cryoposes.simulation.simulate`, with
       ``seed`` and ``zoom``) and, if ``snr_db`` is given, their noisy copies
       (:func:`~cryoposes.simulation.with_noise`): the data of ``cryoposes simulate`` with the
       same arguments.
    2. Split them (the paper's proportions, :func:`cryoposes.training.split_indices`) and train
       the distance network on the clean training images, with noise at ``snr_db`` drawn on the
       fly (``config.augmentation.snr_db`` is set from it).
    3. Learned distance matrices of the (noisy) test images, and of as many training and
       validation images for comparison, averaged over ``turns`` in-plane turns.
    4. Recover the test poses from each start in ``inits`` and score them
       (:func:`recover_from_distances`).

    Parameters
    ----------
    protein : str
        A name known to :mod:`cryoposes.data`.
    n, size : int
        Number of images and their side in pixels.
    coverage : str
        One of :data:`cryoposes.rotations.COVERAGES`.
    snr_db : float or None
        Noise of the recovered images, and of training, in dB.
    config : cryoposes.training.TrainingConfig, optional
        Network and training settings.
    inits : sequence of str
        Recovery starts, from :data:`cryoposes.options.INITS`.
    recovery : cryoposes.recovery.RecoveryConfig, optional
        Recovery settings (``init`` and ``seed`` are set here).
    symmetry : str
        Point group used in scoring.
    seed : int
        Seed of the simulation, the split, the training and the recovery.
    zoom : float
        Simulation zoom (the molecule fills more of the image).
    progress : bool
        Show progress bars.
    initial : SiameseDistance or path, optional
        A model to fine-tune (see :func:`cryoposes.training.train`), e.g. the clean run's model
        for a noisy run on the same simulated poses.
    turns : int
        In-plane turns averaged in every distance matrix (:func:`cryoposes.siamese.distance_matrix`).

    Returns
    -------
    dict
        ``model``; ``dataset`` (the clean :class:`~cryoposes.particles.ParticleDataset`),
        ``quaternions`` (n, 4), ``split``; ``test_images`` (T, size, size) as recovered;
        ``distances`` (T, T); ``subsets``: name → (distances, poses) for train, validation
        and test; ``distance_errors`` per subset (:func:`distance_errors`); ``recoveries``:
        init → :func:`recover_from_distances`; ``timings`` in seconds.
    """
    config = config or training.TrainingConfig()
    config = dataclasses.replace(config, augmentation=dataclasses.replace(config.augmentation, snr_db=snr_db))
    recovery = recovery or RecoveryConfig()
    timings = {}
    start = time.perf_counter()
    clean = simulation.simulate(protein, n, size, coverage, seed=seed, zoom=zoom, progress=progress)
    recovered = clean if snr_db is None else simulation.with_noise(clean, snr_db)
    timings["simulate"] = time.perf_counter() - start
    split = training.split_indices(n, seed=seed)
    start = time.perf_counter()
    model = training.train(clean.images, clean.quaternions, split, config, progress=progress, initial=initial,
                           metadata={"protein": protein, "size": size, "zoom": zoom, "coverage": coverage,
                                     "snr_db": snr_db})
    timings["train"] = time.perf_counter() - start
    test = split["test"]
    start = time.perf_counter()
    distances = siamese.distance_matrix(model, recovered.images[test], turns=turns)
    timings["distance_matrix"] = time.perf_counter() - start
    subsets = {}
    for name in ("train", "validation"):
        chosen = split[name][:len(test)]
        subsets[name] = (siamese.distance_matrix(model, recovered.images[chosen], turns=turns),
                         clean.quaternions[chosen])
    subsets["test"] = (distances, clean.quaternions[test])
    recoveries = {}
    for init in inits:
        start = time.perf_counter()
        recoveries[init] = recover_from_distances(
            distances, clean.quaternions[test], dataclasses.replace(recovery, init=init, seed=seed),
            symmetry=symmetry, progress=progress)
        timings[f"recover_{init}"] = time.perf_counter() - start
    return {
        "model": model,
        "dataset": clean,
        "quaternions": clean.quaternions,
        "split": split,
        "test_images": recovered.images[test],
        "distances": distances,
        "subsets": subsets,
        "distance_errors": {name: distance_errors(*pair) for name, pair in subsets.items()},
        "recoveries": recoveries,
        "timings": timings,
    }
