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

from cryoposes import (alignment, fsc, gauge, reconstruction, refinement, rotations, simulation, siamese, training,
                       volumes)
from cryoposes.options import TURNS
from cryoposes.recovery import RecoveryConfig, fit_poses

__all__ = ["distance_errors", "recover_from_distances", "experiment", "map_from_poses", "true_map", "poses_to_maps",
           "PAPER_MEDIANS_DEG", "comparison_table"]


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
               turns: int = TURNS, trained=None, shift: float = 0.0, ctf: bool = False) -> dict:
    """The whole Phase 2.2 pipeline on simulated data, from a density map to scored poses.

    1. Simulate ``n`` clean projections of ``protein`` (:func:`cryoposes.simulation.simulate`,
       with ``seed`` and ``zoom``) and the particles as observed: shifted and with a CTF if asked,
       with noise if ``snr_db`` is given (:func:`~cryoposes.simulation.with_noise`): the data of
       ``cryoposes simulate`` with the same arguments (same seed, so the same poses).
    2. Split them (the paper's proportions, :func:`cryoposes.training.split_indices`) and train
       the distance network on the clean training projections, corrupted on the fly by the
       simulator's own operators: shifts, CTF and noise as the observed particles have them
       (``config.augmentation``'s ``shift``, ``ctf``, ``pixel_size`` and ``snr_db`` are set
       from the arguments), fresh draws every epoch.
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
    trained : SiameseDistance or path, optional
        A model trained by an earlier run with the same simulation arguments and seed (so the
        same split): step 2 is skipped and this model used (``timings["train"]`` is 0).
    shift : float, optional
        Largest particle shift in pixels (:func:`cryoposes.simulation.simulate`).
    ctf : bool, optional
        Give every particle a random CTF.

    Returns
    -------
    dict
        ``model``; ``dataset`` (the clean :class:`~cryoposes.particles.ParticleDataset`),
        ``quaternions`` (n, 4), ``split``; ``test_dataset``: the test particles as recovered
        (noisy if ``snr_db``); ``test_images`` (T, size, size), its images;
        ``distances`` (T, T); ``subsets``: name → (distances, poses) for train, validation
        and test; ``distance_errors`` per subset (:func:`distance_errors`); ``recoveries``:
        init → :func:`recover_from_distances`; ``timings`` in seconds.
    """
    config = config or training.TrainingConfig()
    recovery = recovery or RecoveryConfig()
    timings = {}
    start = time.perf_counter()
    clean = simulation.simulate(protein, n, size, coverage, seed=seed, zoom=zoom, progress=progress)
    observed = clean
    if shift > 0 or ctf:
        observed = simulation.simulate(protein, n, size, coverage, shift=shift, ctf=ctf, seed=seed, zoom=zoom,
                                       progress=progress)
    recovered = observed if snr_db is None else simulation.with_noise(observed, snr_db)
    timings["simulate"] = time.perf_counter() - start
    config = dataclasses.replace(config, augmentation=dataclasses.replace(
        config.augmentation, snr_db=snr_db, shift=float(shift), ctf=bool(ctf),
        pixel_size=float(clean.pixel_size) if ctf else config.augmentation.pixel_size))
    split = training.split_indices(n, seed=seed)
    start = time.perf_counter()
    if trained is None:
        model = training.train(clean.images, clean.quaternions, split, config, progress=progress, initial=initial,
                               metadata={"protein": protein, "size": size, "zoom": zoom, "coverage": coverage,
                                         "snr_db": snr_db, "shift": float(shift), "ctf": bool(ctf)})
    else:
        model = siamese.as_model(trained)
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
        "test_dataset": recovered.subset(test),
        "test_images": recovered.images[test],
        "distances": distances,
        "subsets": subsets,
        "distance_errors": {name: distance_errors(*pair) for name, pair in subsets.items()},
        "recoveries": recoveries,
        "timings": timings,
    }


def map_from_poses(dataset, quaternions, true_quaternions, true_map, symmetry: str = "C1", seed: int = 0,
                   **options) -> dict:
    """How good estimated poses are in practice: their errors, and the map they make.

    The gold-standard half maps use the estimated poses as they are (no ground truth). To be
    compared with the true map, the map is made from the estimated poses mapped into the
    truth's frame by the physical alignment (one global rotation, and the hand if the estimate
    is the mirror image): the truth only chooses the frame of the map, not its content.

    Parameters
    ----------
    dataset : cryoposes.particles.ParticleDataset
        The images (with their shifts and CTFs) the poses belong to.
    quaternions : array_like
        (N, 4) estimated poses of ``dataset``'s particles.
    true_quaternions : array_like
        (N, 4) true poses.
    true_map : cryoposes.volumes.Volume or array_like
        The map the images were simulated from, on the images' grid.
    symmetry : str, optional
        Point group, for the alignment and the maps.
    seed : int, optional
        Seed of the half-map split.
    **options
        Passed to :func:`cryoposes.reconstruction.reconstruct` (``regularization``, ``method``).

    Returns
    -------
    dict
        ``physical`` and ``o4``: :class:`cryoposes.alignment.Alignment`; ``map``: the map in
        the truth's frame; ``fsc_truth``: its :class:`cryoposes.fsc.FSCCurve` against
        ``true_map`` and ``resolution_truth`` (Å, FSC 0.5); ``fsc_half`` and
        ``resolution_half`` (Å, FSC 0.143) of the half maps; ``seconds`` of reconstruction.
    """
    quaternions = np.asarray(quaternions, dtype=float)
    physical = alignment.align_physical(true_quaternions, quaternions, symmetry=symmetry)
    arguments = (dataset.images, physical.apply(quaternions), dataset.shifts, dataset.ctf, dataset.pixel_size)
    start = time.perf_counter()
    volume = reconstruction.reconstruct(*arguments, symmetry=symmetry, **options)
    seconds = time.perf_counter() - start
    first, second, _ = reconstruction.half_maps(dataset.images, quaternions, dataset.shifts, dataset.ctf,
                                                dataset.pixel_size, seed=seed, symmetry=symmetry, **options)
    against_truth = fsc.fsc(volume, np.asarray(getattr(true_map, "data", true_map)), dataset.pixel_size)
    halves = fsc.fsc(first, second)
    return {
        "physical": physical,
        "o4": alignment.align_o4(true_quaternions, quaternions, symmetry=symmetry),
        "map": volume,
        "fsc_truth": against_truth,
        "resolution_truth": against_truth.resolution(fsc.REFERENCE_THRESHOLD),
        "fsc_half": halves,
        "resolution_half": halves.resolution(fsc.HALF_MAP_THRESHOLD),
        "seconds": seconds,
    }


def true_map(protein: str, size: int, zoom: float = 1.0) -> volumes.Volume:
    """The map that :func:`cryoposes.simulation.simulate` projects, on the images' grid.

    Parameters
    ----------
    protein : str
        A name known to :mod:`cryoposes.data`.
    size : int
        Image side in pixels.
    zoom : float, optional
        The simulation's zoom: the map is boxed at ``round(size·zoom)`` voxels and its central
        ``size``³ kept, as the images keep their central ``size`` pixels.

    Returns
    -------
    cryoposes.volumes.Volume
        (size, size, size) map with the images' pixel size.
    """
    volume = volumes.load_protein(protein, box=int(round(size * zoom)))
    corner = volume.box // 2 - size // 2
    return volumes.Volume(np.ascontiguousarray(volume.data[corner:corner + size, corner:corner + size,
                                                           corner:corner + size]), volume.voxel_size)


def poses_to_maps(result: dict, protein: str, zoom: float = 1.0, recovery: RecoveryConfig | None = None,
                  symmetry: str = "C1", seed: int = 0, progress: bool = False, refine_iterations: int = 0) -> dict:
    """The chapter "From poses to a map" on the test images of an :func:`experiment`.

    Phase 1 poses (recovered from the test images' true distances) and the learned poses of
    ``result`` are made physical from the images (:func:`cryoposes.gauge.resolve_gauge`, no
    ground truth); maps are made from the true poses, the learned poses in the gauge of
    distances only, and both gauge-resolved pose sets (:func:`map_from_poses`).

    Parameters
    ----------
    result : dict
        An :func:`experiment` result with a ``"spectral"`` recovery.
    protein : str
        The simulated protein (for the true map).
    zoom : float, optional
        The simulation's zoom.
    recovery : cryoposes.recovery.RecoveryConfig, optional
        Settings of the Phase 1 recovery (``seed`` is set here).
    symmetry : str, optional
        Point group.
    seed : int, optional
        Seed of the recovery, the gauge search and the half-map split.
    progress : bool, optional
        Show progress bars.
    refine_iterations : int, optional
        If positive, the learned gauge-resolved poses are also refined locally
        (:func:`cryoposes.refinement.refine`, this many iterations) and mapped as ``"learned,
        refined"``, next to the distance-only ones.

    Returns
    -------
    dict
        ``test``: the test :class:`~cryoposes.particles.ParticleDataset`; ``true_map``;
        ``distance_only``: name → (T, 4) poses; ``gauges``: name →
        :class:`cryoposes.gauge.GaugeResult`; ``gauge_seconds``: name → seconds; ``maps``:
        name → :func:`map_from_poses` result, for ``"true poses"``, ``"learned, gauge of
        distances only"``, ``"Phase 1, gauge from the images"`` and ``"learned, gauge from the
        images"``; with refinement also ``refinement``
        (:class:`cryoposes.refinement.RefinementResult`) and ``refine_seconds``.
    """
    recovery = dataclasses.replace(recovery or RecoveryConfig(), seed=seed)
    test = result["test_dataset"]
    truth = test.quaternions
    phase1 = fit_poses(rotations.pairwise_geodesic_distances(truth), recovery, progress=progress).quaternions
    distance_only = {"Phase 1": phase1, "learned": result["recoveries"]["spectral"]["quaternions"]}
    gauges, gauge_seconds = {}, {}
    for name, poses in distance_only.items():
        start = time.perf_counter()
        gauges[name] = gauge.resolve_gauge(test.images, poses, test.shifts, test.ctf, test.pixel_size, seed=seed,
                                           progress=progress)
        gauge_seconds[name] = time.perf_counter() - start
    reference = true_map(protein, test.size, zoom)
    sources = {"true poses": truth, "learned, gauge of distances only": distance_only["learned"],
               "Phase 1, gauge from the images": gauges["Phase 1"].quaternions,
               "learned, gauge from the images": gauges["learned"].quaternions}
    maps = {name: map_from_poses(test, poses, truth, reference, symmetry=symmetry, seed=seed)
            for name, poses in sources.items()}
    study = {"test": test, "true_map": reference, "distance_only": distance_only, "gauges": gauges,
             "gauge_seconds": gauge_seconds, "maps": maps}
    if refine_iterations > 0:
        start = time.perf_counter()
        refined = refinement.refine(test.images, gauges["learned"].quaternions, test.shifts, test.ctf,
                                    test.pixel_size, iterations=refine_iterations, symmetry=symmetry, seed=seed,
                                    progress=progress)
        study["refine_seconds"] = time.perf_counter() - start
        study["refinement"] = refined
        moved = dataclasses.replace(test, shifts=refined.shifts)
        maps["learned, refined"] = map_from_poses(moved, refined.quaternions, truth, reference, symmetry=symmetry,
                                                  seed=seed)
    return study


#: The 2021 paper's medians after O(4) alignment (its Table; 5,000 images at 116 px, a T4 GPU),
#: keyed by (protein, coverage, SNR in dB or None for clean).
PAPER_MEDIANS_DEG = {("5j0n", "full", None): 11.4, ("5j0n", "full", -12.0): 14.6, ("5a1a", "quarter", None): 7.2,
                     ("5a1a", "quarter", -12.0): 7.7}


def _noise(snr_db) -> str:
    return "clean" if snr_db is None else f"{snr_db:g} dB"


def comparison_table(records, page: dict | None = None, profiles=("paper",)):
    """The learned-distance results side by side with the 2021 paper's, one row per setting.

    Parameters
    ----------
    records : list of dict
        Results records of ``benchmarks/learned_distances.py`` (``results/learned_distances.json``);
        only those of ``profiles`` are shown (exploratory runs stay in the file, labelled).
    page : dict, optional
        A row for the page's own run: ``protein``, ``coverage``, ``snr_db``, ``profile`` and the
        spectral start's ``o4`` and ``physical`` :class:`~cryoposes.alignment.Alignment`.
    profiles : sequence of str, optional
        The record profiles to show.

    Returns
    -------
    pandas.DataFrame
        Columns: source, protein, coverage, noise, the paper's median, cryoposes' median and mean
        after O(4) alignment, physical median (degrees), and the record's name.

    Examples
    --------
    >>> from cryoposes.studies import comparison_table
    >>> record = {"name": "r", "profile": "paper", "settings": {"protein": "5j0n", "coverage": "full", "snr_db": None},
    ...           "recovery": {"spectral": {"o4_median_deg": 4.2, "o4_mean_deg": 5.0, "physical_median_deg": 60.0}}}
    >>> comparison_table([record]).loc[0, ["paper O(4) median °", "O(4) median °"]].tolist()
    [11.4, 4.2]
    """
    import pandas as pd

    rows = []
    for run in records:
        if run["profile"] not in profiles:
            continue
        settings, spectral = run["settings"], run["recovery"]["spectral"]
        key = (settings["protein"], settings["coverage"], settings["snr_db"])
        rows.append({"source": f"cryoposes, {run['profile']} profile", "protein": key[0], "coverage": key[1],
                     "noise": _noise(key[2]), "paper O(4) median °": PAPER_MEDIANS_DEG.get(key),
                     "O(4) median °": spectral["o4_median_deg"], "O(4) mean °": spectral["o4_mean_deg"],
                     "physical median °": spectral["physical_median_deg"], "record": run["name"]})
    if page is not None:
        key = (page["protein"], page["coverage"], page["snr_db"])
        rows.append({"source": f"cryoposes, {page['profile']} profile (this page)", "protein": key[0],
                     "coverage": key[1], "noise": _noise(key[2]), "paper O(4) median °": PAPER_MEDIANS_DEG.get(key),
                     "O(4) median °": page["o4"].median, "O(4) mean °": page["o4"].mean,
                     "physical median °": page["physical"].median, "record": "—"})
    return pd.DataFrame(rows).round(2)
