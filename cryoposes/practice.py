"""How good is it in practice: the same particles through every pose estimator, noise level by level.

:func:`compare_methods` gives the same particles to learned distances, Euclidean distances and
common lines (:mod:`cryoposes.baselines`), makes every result physical without ground truth and
scores them the same way. :func:`noise_level` is one point of a noise sweep: the distance network
for that noise (trained, or fine-tuned from the clean one), then :func:`compare_methods` on all
test particles and, beside common lines, on a subset small enough for them.
:func:`sweep_table` and :data:`PAPER_NOISE_SWEEP` put recorded levels next to the 2021 paper's.
``benchmarks/practice.py`` records the levels; the book's chapter "In practice" shows them.

One caveat goes with every comparison: the learned distance has seen ground-truth poses of the
same protein in training (:data:`METHODS` says which method did); common lines and Euclidean
distances have seen nothing but the particles.
"""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np

from cryoposes import alignment, baselines, distances, gauge, rotations, siamese, simulation, studies, training
from cryoposes.options import TURNS
from cryoposes.recovery import RecoveryConfig, fit_poses

__all__ = ["METHODS", "compare_methods", "noise_level", "method_numbers", "level_record", "held_out_protein",
           "PAPER_NOISE_SWEEP", "sigma2_to_db", "sweep_table", "sweep_columns", "condition_table", "unseen_table",
           "distances_sharing_a_common_line"]


#: Pose estimators compared on the same particles by :func:`compare_methods`, and whether each
#: saw ground-truth poses of the protein before (the learned distance network is trained on them).
METHODS = {"learned": True, "euclidean": False, "common lines": False}


def compare_methods(dataset, true_quaternions, model=None, methods=tuple(METHODS), recovery: RecoveryConfig | None = None,
                    turns: int = TURNS, symmetry: str = "C1", seed: int = 0, max_shift: float = 0.0,
                    progress: bool = False) -> dict:
    """Poses of the same particles by several methods, each made physical without ground truth.

    ``learned`` and ``euclidean`` recover poses from distances (the learned network's, averaged
    over ``turns`` in-plane turns; the images' Euclidean distances scaled to rotations, as
    ``cryoposes recover --distance euclidean``) from the spectral start, then resolve the gauge
    from the images (:func:`cryoposes.gauge.resolve_gauge`). ``common lines`` is ASPIRE's
    synchronisation with voting (:func:`cryoposes.baselines.common_lines`), physical by
    construction. Particle shifts are treated as unknown by every method (as for particles
    fresh from picking); CTFs as known (as after CTF estimation). The truth is used only to
    score: O(4) and physical alignment (:mod:`cryoposes.alignment`).

    Parameters
    ----------
    dataset : cryoposes.particles.ParticleDataset
        The particles (images, CTFs, pixel size).
    true_quaternions : array_like
        (N, 4) their true poses, for scoring.
    model : SiameseDistance or path, optional
        The distance network (needed for ``learned``).
    methods : sequence of str
        Keys of :data:`METHODS`.
    recovery : RecoveryConfig, optional
        Recovery settings (``init`` is set to ``"spectral"`` and ``seed`` to ``seed``).
    turns : int, optional
        In-plane turns averaged in the learned distances.
    symmetry : str, optional
        Point group used in scoring.
    seed : int, optional
        Seed of the recovery, the gauge search and common lines.
    max_shift : float, optional
        Largest particle shift, as a fraction of the image size: the range searched by common
        lines, and the range in which the gauge centres the particles first
        (:func:`cryoposes.gauge.resolve_gauge`).
    progress : bool, optional
        Show progress bars.

    Returns
    -------
    dict
        method → ``quaternions`` (N, 4) physical poses, ``distances`` (N, N) the targets
        recovered from (None for common lines), ``o4`` and ``physical``
        (:class:`cryoposes.alignment.Alignment`), ``seconds`` (total) and ``stages`` (seconds
        per stage), ``saw_true_poses`` (from :data:`METHODS`).

    Raises
    ------
    ValueError
        An unknown method, ``learned`` without a model, or poses that do not match the particles.

    Examples
    --------
    >>> from cryoposes import simulation, volumes
    >>> from cryoposes.recovery import RecoveryConfig
    >>> from cryoposes.practice import compare_methods
    >>> x, y, z = np.meshgrid(*[np.arange(32) - 16] * 3, indexing="ij")
    >>> blob = np.exp(-((x - 4) ** 2 + y ** 2 + 3 * (z + 3) ** 2) / 10.0) + np.exp(-(x ** 2 + (y - 5) ** 2 + z ** 2) / 6.0)
    >>> data = simulation.simulate(volumes.Volume(blob, 4.0), 40, 32, progress=False)
    >>> result = compare_methods(data, data.quaternions, methods=("euclidean",), recovery=RecoveryConfig(steps=200))
    >>> sorted(result["euclidean"]), result["euclidean"]["quaternions"].shape
    (['distances', 'o4', 'physical', 'quaternions', 'saw_true_poses', 'seconds', 'stages'], (40, 4))
    """
    unknown = [name for name in methods if name not in METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; choose from {list(METHODS)}")
    if "learned" in methods and model is None:
        raise ValueError("the learned method needs a distance model")
    true_quaternions = rotations._check_quaternions(true_quaternions)
    if len(true_quaternions) != len(dataset):
        raise ValueError(f"{len(true_quaternions)} true poses for {len(dataset)} particles")
    recovery = dataclasses.replace(recovery or RecoveryConfig(), init="spectral", seed=seed)
    images = dataset.images
    results = {}
    for name in methods:
        stages = {}
        start = time.perf_counter()
        if name == "common lines":
            poses = baselines.common_lines(images, dataset.pixel_size, dataset.ctf, max_shift=max_shift, seed=seed)
            stages["common lines"] = time.perf_counter() - start
        else:
            if name == "learned":
                targets = siamese.distance_matrix(siamese.as_model(model), images, turns=turns)
            else:
                targets = distances.scale_to_rotations(distances.euclidean_distances(images))
            stages["distances"] = time.perf_counter() - start
            fitted = fit_poses(targets, recovery, progress=progress)
            stages["recovery"] = time.perf_counter() - start - stages["distances"]
            poses = gauge.resolve_gauge(images, fitted.quaternions, None, dataset.ctf, dataset.pixel_size,
                                        seed=seed, progress=progress,
                                        max_shift=max_shift * dataset.size).quaternions
            stages["gauge"] = time.perf_counter() - start - stages["distances"] - stages["recovery"]
        seconds = time.perf_counter() - start
        results[name] = {
            "quaternions": poses,
            "distances": None if name == "common lines" else targets,
            "o4": alignment.align_o4(true_quaternions, poses, symmetry=symmetry),
            "physical": alignment.align_physical(true_quaternions, poses, symmetry=symmetry),
            "seconds": seconds,
            "stages": stages,
            "saw_true_poses": METHODS[name],
        }
    return results


def method_numbers(results: dict) -> dict:
    """Plain numbers of a :func:`compare_methods` result, for printing or JSON.

    Parameters
    ----------
    results : dict
        method → result, as :func:`compare_methods` returns.

    Returns
    -------
    dict
        method → ``o4_median_deg``, ``o4_mean_deg``, ``physical_median_deg``,
        ``physical_mean_deg``, ``physical_flipped``, ``seconds``, ``stages_s``, ``saw_true_poses``.

    Examples
    --------
    >>> from cryoposes.alignment import align_o4, align_physical
    >>> from cryoposes.practice import method_numbers
    >>> from cryoposes.rotations import random_quaternions
    >>> truth = random_quaternions(10, 0)
    >>> result = {"o4": align_o4(truth, truth), "physical": align_physical(truth, truth), "seconds": 1.0,
    ...           "stages": {}, "saw_true_poses": False}
    >>> numbers = method_numbers({"euclidean": result})["euclidean"]
    >>> bool(numbers["physical_median_deg"] < 0.01), numbers["saw_true_poses"]
    (True, False)
    """
    return {name: {"o4_median_deg": result["o4"].median, "o4_mean_deg": result["o4"].mean,
                   "physical_median_deg": result["physical"].median, "physical_mean_deg": result["physical"].mean,
                   "physical_flipped": bool(result["physical"].flipped), "seconds": float(result["seconds"]),
                   "stages_s": {key: float(value) for key, value in result["stages"].items()},
                   "saw_true_poses": bool(result["saw_true_poses"])}
            for name, result in results.items()}


def noise_level(protein: str, n: int, size: int, coverage: str, snr_db: float | None,
                config: training.TrainingConfig | None = None, initial=None, trained=None, shift: float = 0.0,
                ctf: bool = False, common_lines_images: int = 500, recovery: RecoveryConfig | None = None,
                turns: int = TURNS, seed: int = 0, zoom: float = 1.0, progress: bool = False) -> dict:
    """One point of a noise sweep: the distance network for it, and every method on its test particles.

    1. :func:`cryoposes.studies.experiment` simulates the particles (noise ``snr_db``, shifts and
       CTF if asked) and trains the distance network on the training particles, from scratch or
       fine-tuned from ``initial`` (e.g. the clean network), or takes ``trained``.
    2. :func:`compare_methods` on all test particles for learned and Euclidean distances, and on
       the first ``common_lines_images`` test particles alone for learned distances and common
       lines side by side (common lines' voting grows as N³).

    Parameters
    ----------
    protein, n, size, coverage, snr_db, zoom, seed, shift, ctf
        As :func:`cryoposes.studies.experiment` (``shift`` in pixels).
    config : cryoposes.training.TrainingConfig, optional
        Training settings.
    initial, trained : SiameseDistance or path, optional
        A model to fine-tune, or a model already trained for this level.
    common_lines_images : int, optional
        Test particles given to common lines (0: no common lines).
    recovery : RecoveryConfig, optional
        Recovery settings.
    turns : int, optional
        In-plane turns averaged in the learned distances.
    progress : bool, optional
        Show progress bars.

    Returns
    -------
    dict
        ``model``; ``experiment`` (the :func:`~cryoposes.studies.experiment` result);
        ``all_test_images`` and ``side_by_side``: :func:`compare_methods` results.
    """
    result = studies.experiment(protein, n, size, coverage, snr_db, config, inits=(), seed=seed, zoom=zoom,
                                progress=progress, initial=initial, turns=turns, trained=trained, shift=shift,
                                ctf=ctf)
    test, truth = result["test_dataset"], result["quaternions"][result["split"]["test"]]
    every = compare_methods(test, truth, result["model"], ("learned", "euclidean"), recovery, turns, seed=seed,
                            max_shift=shift / size, progress=progress)
    side_by_side = {}
    if common_lines_images > 0:
        subset = np.arange(min(common_lines_images, len(test)))
        side_by_side = compare_methods(test.subset(subset), truth[subset], result["model"],
                                       ("learned", "common lines"), recovery, turns, seed=seed,
                                       max_shift=shift / size, progress=progress)
    return {"model": result["model"], "experiment": result, "all_test_images": every, "side_by_side": side_by_side}


def level_record(level: dict, snr_db: float | None, name: str) -> dict:
    """The numbers of one :func:`noise_level`, as ``benchmarks/practice.py`` records them.

    Parameters
    ----------
    level : dict
        A :func:`noise_level` result.
    snr_db : float or None
        Its noise level (None: clean).
    name : str
        The record's name.

    Returns
    -------
    dict
        ``name``, ``snr_db``, ``sigma2`` (noise variance on unit-variance images), ``test_images``,
        ``common_lines_images``, ``distance_errors``, ``all_test_images`` and ``side_by_side``
        (:func:`method_numbers`), ``epochs_run``, ``timings_s``: what :func:`sweep_table` reads.
    """
    result = level["experiment"]
    side_by_side = level["side_by_side"]
    first = next(iter(side_by_side.values()), None)
    return {
        "name": name,
        "snr_db": snr_db,
        "sigma2": None if snr_db is None else 10 ** (-snr_db / 10),
        "test_images": len(result["test_dataset"]),
        "common_lines_images": 0 if first is None else len(first["quaternions"]),
        "distance_errors": result["distance_errors"],
        "all_test_images": method_numbers(level["all_test_images"]),
        "side_by_side": method_numbers(side_by_side),
        "epochs_run": len(level["model"].metadata["history"]["loss"]),
        "timings_s": result["timings"],
    }


def held_out_protein(held_out: str, trained_on, n: int, size: int, config: training.TrainingConfig | None = None,
                     test_images: int = 1000, coverage: str = "full", zoom: float = 1.0, seed: int = 0,
                     reference=None, recovery: RecoveryConfig | None = None, turns: int = TURNS,
                     progress: bool = False) -> dict:
    """A distance network trained on other proteins, tested on one it has never seen.

    1. Simulate ``n`` images of each protein of ``trained_on`` (seeds ``seed``, ``seed + 1``, …),
       split each as it would be alone (:func:`cryoposes.training.joint_split`) and train one
       network on all their training images (``config``; its augmentation should vary what
       differs between proteins: ``scale``, ``blur``).
    2. Simulate ``test_images`` new images of ``held_out`` (seed ``seed + 1000``) and score the
       network's distances on them (:func:`cryoposes.studies.distance_errors`) and the poses
       they give (:func:`compare_methods`, learned).
    3. The same on the same images with ``reference``, a network trained on ``held_out`` itself.

    Parameters
    ----------
    held_out : str
        The protein tested on (never trained on).
    trained_on : sequence of str
        The proteins trained on.
    n, size, coverage, zoom : int, int, str, float
        Images per training protein, their side, coverage and zoom (:func:`cryoposes.simulation.simulate`).
    config : cryoposes.training.TrainingConfig, optional
        Training settings.
    test_images : int, optional
        Images of ``held_out`` tested on.
    seed : int, optional
        Seed of the simulations, the split, the training and the recovery.
    reference : SiameseDistance or path, optional
        A network trained on ``held_out`` at the same image size, for comparison.
    recovery : RecoveryConfig, optional
        Recovery settings.
    turns : int, optional
        In-plane turns averaged in the learned distances.
    progress : bool, optional
        Show progress bars.

    Returns
    -------
    dict
        ``model``; ``distance_errors`` and ``methods`` (a :func:`compare_methods` result): name →
        for ``"unseen"`` (the network that never saw ``held_out``) and, with ``reference``,
        ``"same protein"``; ``seconds``: ``train`` and ``test``.

    Raises
    ------
    ValueError
        ``held_out`` among ``trained_on``, or no protein to train on.
    """
    trained_on = list(trained_on)
    if held_out in trained_on:
        raise ValueError(f"{held_out} is held out and cannot be trained on too")
    if not trained_on:
        raise ValueError("give at least one protein to train on")
    config = config or training.TrainingConfig()
    start = time.perf_counter()
    datasets = [simulation.simulate(protein, n, size, coverage, seed=seed + index, zoom=zoom, progress=progress)
                for index, protein in enumerate(trained_on)]
    split = training.joint_split([len(dataset) for dataset in datasets], seed=seed)
    model = training.train(np.concatenate([dataset.images for dataset in datasets]),
                           np.concatenate([dataset.quaternions for dataset in datasets]), split, config,
                           progress=progress, metadata={"proteins": trained_on, "size": size, "zoom": zoom,
                                                        "coverage": coverage, "held_out": held_out})
    seconds = {"train": time.perf_counter() - start}
    start = time.perf_counter()
    test = simulation.simulate(held_out, test_images, size, coverage, seed=seed + 1000, zoom=zoom, progress=progress)
    networks = {"unseen": model, **({} if reference is None else {"same protein": siamese.as_model(reference)})}
    errors, methods = {}, {}
    for name, network in networks.items():
        methods[name] = compare_methods(test, test.quaternions, network, ("learned",), recovery, turns, seed=seed,
                                        progress=progress)["learned"]
        errors[name] = studies.distance_errors(methods[name]["distances"], test.quaternions)
    seconds["test"] = time.perf_counter() - start
    return {"model": model, "distance_errors": errors, "methods": methods, "seconds": seconds}


def sigma2_to_db(sigma2: float) -> float:
    """The SNR in dB of unit-variance images with white noise of variance ``sigma2`` (the 2021 paper's σ²).

    Examples
    --------
    >>> from cryoposes.practice import sigma2_to_db
    >>> round(sigma2_to_db(16), 2)
    -12.04
    """
    return -10.0 * math.log10(sigma2)


#: The 2021 paper's noise sweep (5j0n, half coverage): σ² on unit-variance images → median
#: error after O(4) alignment, degrees (0.159, 0.189, 0.232, 0.418, 0.801, 0.725 rad).
PAPER_NOISE_SWEEP = {0: 9.11, 5: 10.83, 10: 13.29, 16: 23.95, 20: 45.89, 25: 41.54}


def _measured(record):
    """``(method, particles, numbers)`` of a record: on all test particles, then on the first ones
    (the side-by-side subset that common lines were given)."""
    for part, count in (("all_test_images", f"all {record['test_images']}"),
                        ("side_by_side", f"first {record['common_lines_images']}")):
        for method, numbers in record[part].items():
            yield method, count, numbers


def sweep_table(records):
    """Recorded noise levels side by side: one row per level and method, and the paper's sweep.

    Parameters
    ----------
    records : list of dict
        Records of ``benchmarks/practice.py`` (``results/practice.json``), all of one sweep.

    Returns
    -------
    pandas.DataFrame
        Columns: ``snr_db`` (``inf`` when clean), ``method`` (``"… (all N)"`` or ``"… (first N)"``
        for the particles it saw), ``O(4) median °``, ``physical median °``, ``seconds``,
        ``saw true poses``, ``record``; rows of the paper's sweep have only the O(4) median.
        Sorted from clean to noisiest.

    Examples
    --------
    >>> from cryoposes.practice import sweep_table
    >>> numbers = {"o4_median_deg": 3.0, "physical_median_deg": 3.1, "seconds": 9.0, "saw_true_poses": True}
    >>> record = {"name": "r clean", "snr_db": None, "test_images": 1650, "common_lines_images": 500,
    ...           "all_test_images": {"learned": numbers}, "side_by_side": {}}
    >>> table = sweep_table([record])
    >>> table["method"].tolist()[:2], float(table["snr_db"].iloc[0])
    (['2021 paper, learned', 'learned (all 1650)'], inf)
    """
    import pandas as pd

    rows = []
    for record in records:
        snr = math.inf if record["snr_db"] is None else record["snr_db"]
        for method, count, numbers in _measured(record):
            rows.append({"snr_db": snr, "method": f"{method} ({count})",
                         "O(4) median °": numbers["o4_median_deg"],
                         "physical median °": numbers["physical_median_deg"],
                         "seconds": numbers["seconds"], "saw true poses": numbers["saw_true_poses"],
                         "record": record["name"]})
    for sigma2, median in PAPER_NOISE_SWEEP.items():
        rows.append({"snr_db": math.inf if sigma2 == 0 else round(sigma2_to_db(sigma2), 2),
                     "method": "2021 paper, learned", "O(4) median °": median, "physical median °": None,
                     "seconds": None, "saw true poses": True, "record": "the paper"})
    table = pd.DataFrame(rows)
    return table.sort_values(["snr_db", "method"], ascending=[False, True], kind="stable").reset_index(drop=True)


def sweep_columns(table, column: str = "O(4) median °"):
    """A :func:`sweep_table` with one row per noise level and one column per method.

    Parameters
    ----------
    table : pandas.DataFrame
        As :func:`sweep_table` returns.
    column : str, optional
        The number shown per method.

    Returns
    -------
    pandas.DataFrame
        Index ``SNR (dB)`` ("clean" first, then decreasing); columns the methods (the paper's
        included); empty cells where a method has no number at that level.

    Examples
    --------
    >>> import pandas as pd
    >>> from cryoposes.practice import sweep_columns
    >>> table = pd.DataFrame({"snr_db": [float("inf"), -12.0, float("inf")], "method": ["a", "a", "b"],
    ...                       "O(4) median °": [3.0, 9.0, 5.0]})
    >>> columns = sweep_columns(table)
    >>> columns.index.tolist(), columns.columns.tolist(), float(columns.loc["-12", "a"])
    (['clean', '-12'], ['a', 'b'], 9.0)
    """
    shown = table.dropna(subset=[column])
    levels = sorted(set(shown["snr_db"]), reverse=True)
    wide = shown.pivot_table(index="snr_db", columns="method", values=column, aggfunc="first", sort=False)
    wide = wide.reindex(levels)[list(dict.fromkeys(shown["method"]))]
    wide.index = ["clean" if math.isinf(level) else f"{level:g}" for level in levels]
    wide.index.name, wide.columns.name = "SNR (dB)", None
    return wide


def condition_table(records, conditions):
    """Recorded runs under different imaging conditions side by side, one row per condition and method.

    Each method is shown once per condition: on all test particles where the record has that,
    else on the first ones it was given (common lines).

    Parameters
    ----------
    records : list of dict
        Records of ``benchmarks/practice.py`` (``results/practice.json``).
    conditions : mapping of str to str
        Record name → the condition's label, in the order to show; records named here but
        missing from ``records`` are left out.

    Returns
    -------
    pandas.DataFrame
        Columns: ``condition``, ``method``, ``particles`` (``"all N"`` or ``"first N"``),
        ``O(4) median °``, ``physical median °``, ``saw true poses``, ``record``.

    Examples
    --------
    >>> from cryoposes.practice import condition_table
    >>> numbers = {"o4_median_deg": 8.0, "physical_median_deg": 9.0, "seconds": 9.0, "saw_true_poses": True}
    >>> lines = {"o4_median_deg": 80.0, "physical_median_deg": 81.0, "seconds": 99.0, "saw_true_poses": False}
    >>> record = {"name": "r -12dB", "snr_db": -12.0, "test_images": 1650, "common_lines_images": 300,
    ...           "all_test_images": {"learned": numbers},
    ...           "side_by_side": {"learned": numbers, "common lines": lines}}
    >>> table = condition_table([record], {"r -12dB": "CTF and shifts"})
    >>> table[["condition", "method", "particles"]].values.tolist()
    [['CTF and shifts', 'learned', 'all 1650'], ['CTF and shifts', 'common lines', 'first 300']]
    """
    import pandas as pd

    by_name = {record["name"]: record for record in records}
    rows = []
    for name, label in conditions.items():
        if name not in by_name:
            continue
        seen = set()
        for method, count, numbers in _measured(by_name[name]):
            if method in seen:
                continue
            seen.add(method)
            rows.append({"condition": label, "method": method, "particles": count,
                         "O(4) median °": numbers["o4_median_deg"],
                         "physical median °": numbers["physical_median_deg"],
                         "saw true poses": numbers["saw_true_poses"], "record": name})
    return pd.DataFrame(rows, columns=["condition", "method", "particles", "O(4) median °", "physical median °",
                                       "saw true poses", "record"])


def unseen_table(records):
    """Held-out-protein records side by side: one row per held-out protein and network.

    Parameters
    ----------
    records : list of dict
        Records of ``benchmarks/unseen.py`` (``results/unseen.json``).

    Returns
    -------
    pandas.DataFrame
        Columns: ``held out``, ``trained on``, ``network`` (``unseen``: never saw the held-out
        protein; ``same protein``: trained on it), ``distance error median °``, ``O(4) median °``,
        ``physical median °``, ``record``.

    Examples
    --------
    >>> from cryoposes.practice import unseen_table
    >>> numbers = {"o4_median_deg": 80.0, "physical_median_deg": 95.0}
    >>> record = {"name": "r", "settings": {"held_out": "5j0n", "trained_on": ["7bv2", "6x18"]},
    ...           "networks": {"unseen": numbers}, "distance_errors": {"unseen": {"median_deg": 60.0}}}
    >>> row = unseen_table([record]).iloc[0]
    >>> row["held out"], row["trained on"], float(row["O(4) median °"])
    ('5j0n', '7bv2, 6x18', 80.0)
    """
    import pandas as pd

    rows = [{"held out": record["settings"]["held_out"], "trained on": ", ".join(record["settings"]["trained_on"]),
             "network": network, "distance error median °": record["distance_errors"][network]["median_deg"],
             "O(4) median °": numbers["o4_median_deg"], "physical median °": numbers["physical_median_deg"],
             "record": record["name"]}
            for record in records for network, numbers in record["networks"].items()]
    return pd.DataFrame(rows, columns=["held out", "trained on", "network", "distance error median °",
                                       "O(4) median °", "physical median °", "record"])


def distances_sharing_a_common_line(first, second, dihedrals):
    """Pose distances that two images of an unknown molecule cannot tell apart.

    Two projections of one molecule share one line of their Fourier transforms (the common line,
    where their central planes meet: the Fourier-slice theorem); off that line the two planes
    hold independent values of the map. For a molecule nobody has seen, any two images whose
    spectra agree on a line are therefore projections of *some* molecule, at planes meeting
    along that line at any angle. Turning the second pose about the common line by a dihedral
    angle φ keeps the line at the same angle in both images, so a pair of images alone cannot
    tell the turned poses apart, while their distance d_q changes with φ: the distance of two
    images is not a function of the two images unless the molecule is known (common-lines
    methods need a third image for this reason).

    Parameters
    ----------
    first, second : array_like
        (P, 4) unit quaternions of image pairs (not both with the same viewing direction).
    dihedrals : array_like
        (D,) angles φ in radians by which the second pose is turned about the common line.

    Returns
    -------
    numpy.ndarray
        (P, D) distances ``d_q(first, second turned by φ)`` in radians; at φ = 0 the pair's own.

    Examples
    --------
    >>> import numpy as np
    >>> from cryoposes import rotations
    >>> from cryoposes.practice import distances_sharing_a_common_line
    >>> first, second = rotations.random_quaternions(2, 0)[:, None]
    >>> d = distances_sharing_a_common_line(first, second, np.linspace(0, np.pi, 5))
    >>> d.shape, bool(np.isclose(d[0, 0], rotations.geodesic_distance(first, second)[0]))
    ((1, 5), True)
    """
    first, second = (rotations._check_quaternions(q) for q in (first, second))
    dihedrals = np.asarray(dihedrals, dtype=float)
    # The common line is along the cross product of the two beam directions (third columns).
    line = np.cross(rotations.quaternion_to_matrix(first)[:, :, 2], rotations.quaternion_to_matrix(second)[:, :, 2])
    turns = rotations.axis_angle_to_quaternion(np.repeat(line[:, None, :], len(dihedrals), axis=1),
                                               np.broadcast_to(dihedrals, (len(line), len(dihedrals))))
    turned = rotations.quaternion_multiply(turns, second[:, None, :])
    return rotations.geodesic_distance(first[:, None, :], turned)
