"""Reconstruction against ASPIRE's mean estimator: the same images and poses, time and FSC side by side.

    python benchmarks/mean_estimator.py --name 5j0n-116px-1650 --profile paper --size 116 --images 1650 \\
        --snr-db -12 --repeats 3 --output results/reconstruction.json

Simulates ``--images`` projections of 5j0n at ``--size`` px (:func:`cryoposes.simulation.simulate`:
no CTF, no shifts) and reconstructs them at their true poses twice, alternately, ``--repeats``
times: with :func:`cryoposes.reconstruction.reconstruct` (``method="fourier"``, CPU, its defaults)
and with ASPIRE's ``MeanEstimator`` (PyPI ``aspire``, the ``bench`` extra; its defaults: Dirac
basis, circulant preconditioner, CG to a relative residual of 1e-5 or 50 iterations, no
regularisation, float32 as the images). The clean images come first, then the same images with
noise at each ``--snr-db`` (:func:`cryoposes.simulation.with_noise`).

Conventions: ASPIRE's Euler angles are intrinsic ZYZ like RELION's, and its projection at a
rotation matrix R is ``Σ_z V(R·(x, y, z))`` (a mean, not a sum) with the centre at ``L // 2``,
as cryoposes', so the poses pass as ``(rot, tilt, psi)`` unchanged. Before timing, ASPIRE's
projections of the true map at those poses are compared with the clean images (normalised
cross-correlation, recorded); its map comes out in the true map's frame, L times larger (a
global factor, which the FSC ignores).

Recorded per setting and method: wall-clock and CPU seconds (all threads), best of the repeats;
cryoposes' speed-up over ASPIRE for both; the FSC against the true map
(:func:`cryoposes.studies.true_map`), its 0.5 resolution in Å and its value at Nyquist (the
resolution stops at Nyquist, 2 px, when the curve never falls below 0.5); the full curves.
ASPIRE writes its log to ``logs/`` (ignored by git) and its last CG iterate to a temporary
folder. Without ASPIRE installed only cryoposes is timed, and the record says so.
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time

import numpy as np

import records
from cryoposes import fsc, reconstruction, rotations, simulation, studies

try:
    import aspire
    from aspire.reconstruction import MeanEstimator
    from aspire.source import ArrayImageSource
    from aspire.volume import Volume as AspireVolume
except ImportError:
    aspire = None

#: Clean images used to check ASPIRE's projection convention against cryoposes' images.
CONVENTION_CHECK_IMAGES = 200


def aspire_angles(quaternions) -> np.ndarray:
    """(N, 3) float32 Euler angles ``(rot, tilt, psi)`` in radians, as ASPIRE's sources take them
    (``Rotation.from_euler``: intrinsic ZYZ, the convention of :mod:`cryoposes.rotations`)."""
    return np.stack(rotations.quaternion_to_euler(quaternions), axis=-1).astype(np.float32)


def aspire_source(images, quaternions, pixel_size: float):
    """ASPIRE's ``ArrayImageSource`` of the images (float32) at the poses ``quaternions``."""
    return ArrayImageSource(np.asarray(images, dtype=np.float32), angles=aspire_angles(quaternions),
                            pixel_size=pixel_size)


def normalised_cross_correlations(images, references) -> np.ndarray:
    """(N,) normalised cross-correlation of each image with its reference (means removed)."""
    a = images - images.mean(axis=(1, 2), keepdims=True)
    b = references - references.mean(axis=(1, 2), keepdims=True)
    return np.sum(a * b, axis=(1, 2)) / np.sqrt(np.sum(a * a, axis=(1, 2)) * np.sum(b * b, axis=(1, 2)))


def check_conventions(dataset, truth) -> dict:
    """ASPIRE's projections of the true map at the converted poses against the clean images.

    Returns
    -------
    dict
        ``images`` compared, ``rotation_matrix_max_difference`` between ASPIRE's matrices and
        :func:`cryoposes.rotations.quaternion_to_matrix`, and the ``ncc_min`` and ``ncc_median``
        of the projections with the images.

    Raises
    ------
    RuntimeError
        If any correlation is below 0.99: the conventions do not match.
    """
    count = min(CONVENTION_CHECK_IMAGES, len(dataset.images))
    source = aspire_source(dataset.images[:count], dataset.quaternions[:count], dataset.pixel_size)
    matrices = rotations.quaternion_to_matrix(dataset.quaternions[:count])
    projections = AspireVolume(truth.data.astype(np.float32)).project(source.rotations).asnumpy()
    correlations = normalised_cross_correlations(projections.astype(np.float64), dataset.images[:count])
    check = {"images": count,
             "rotation_matrix_max_difference": float(np.abs(source.rotations - matrices).max()),
             "ncc_min": float(correlations.min()), "ncc_median": float(np.median(correlations))}
    if check["ncc_min"] < 0.99:
        raise RuntimeError(f"ASPIRE's projections do not match the images (NCC down to {check['ncc_min']:.4f})")
    return check


def cryoposes_map(dataset) -> np.ndarray:
    """cryoposes' map of the dataset at its true poses (CPU Fourier method, default settings)."""
    return reconstruction.reconstruct(dataset.images, dataset.quaternions, pixel_size=dataset.pixel_size,
                                      method="fourier").data


def aspire_map(dataset, checkpoints: str) -> np.ndarray:
    """ASPIRE's mean estimate of the dataset at its true poses (default settings; the last CG
    iterate, which ASPIRE saves, goes under ``checkpoints``)."""
    source = aspire_source(dataset.images, dataset.quaternions, dataset.pixel_size)
    estimator = MeanEstimator(source, checkpoint_prefix=os.path.join(checkpoints, "volume_checkpoint"))
    return estimator.estimate().asnumpy()[0]


def timed(function):
    """(result, wall-clock seconds, CPU seconds of all threads) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = function()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def compare(dataset, truth, methods: dict, repeats: int) -> dict:
    """Every method on the dataset, alternately, ``repeats`` times; best times and FSC per method."""
    times = {name: {"wall": [], "cpu": []} for name in methods}
    maps = {}
    for repeat in range(repeats):
        for name, method in methods.items():
            print(f"  repeat {repeat + 1}/{repeats}: {name} …", end=" ", flush=True)
            maps[name], wall, cpu = timed(lambda: method(dataset))
            times[name]["wall"].append(wall)
            times[name]["cpu"].append(cpu)
            print(f"{wall:.1f} s wall, {cpu:.1f} s CPU", flush=True)
    results = {}
    for name in methods:
        curve = fsc.fsc(maps[name], truth.data, dataset.pixel_size)
        results[name] = {"wall_s": min(times[name]["wall"]), "cpu_s": min(times[name]["cpu"]),
                         "wall_s_all": times[name]["wall"], "cpu_s_all": times[name]["cpu"],
                         "resolution_truth": curve.resolution(fsc.REFERENCE_THRESHOLD),
                         "fsc_nyquist": float(curve.correlation[-1]),
                         "scale_to_truth": float(np.vdot(maps[name], truth.data) / np.vdot(truth.data, truth.data)),
                         "fsc_truth": curve.as_dict()}
    return results


def print_table(rows: list, have_aspire: bool) -> None:
    """The measurements, one line per setting and method."""
    header = (f"{'images':<14} {'method':<22} {'wall s':>8} {'CPU s':>8} {'× wall':>7} {'× CPU':>7} "
              f"{'FSC 0.5 (Å)':>11} {'FSC Nyq.':>8}")
    print("\n" + header + "\n" + "-" * len(header))
    for row in rows:
        for name, numbers in row["methods"].items():
            speedup = row.get("speedup") if name == "cryoposes" else None
            wall_ratio = f"{speedup['wall']:7.2f}" if speedup else f"{'':>7}"
            cpu_ratio = f"{speedup['cpu']:7.2f}" if speedup else f"{'':>7}"
            print(f"{row['setting']:<14} {name:<22} {numbers['wall_s']:>8.1f} {numbers['cpu_s']:>8.1f} "
                  f"{wall_ratio} {cpu_ratio} {numbers['resolution_truth']:>11.2f} {numbers['fsc_nyquist']:>8.3f}")
    if have_aspire:
        print("× wall, × CPU: cryoposes' speed-up over ASPIRE (best of the repeats).")
    else:
        print("ASPIRE is not installed (pip install 'cryoposes[bench]'): cryoposes timed alone, no comparison.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--name", required=True)
    parser.add_argument("--profile", default="measurement")
    parser.add_argument("--protein", default="5j0n")
    parser.add_argument("--size", type=int, default=116)
    parser.add_argument("--images", type=int, default=1650)
    parser.add_argument("--snr-db", type=float, nargs="*", default=[],
                        help="noise levels (dB) reconstructed after the clean images, e.g. -12")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default="results/reconstruction.json")
    args = parser.parse_args()

    print(f"simulating {args.images} images of {args.protein} at {args.size} px (seed {args.seed}) …", flush=True)
    clean = simulation.simulate(args.protein, args.images, args.size, seed=args.seed, progress=True)
    truth = studies.true_map(args.protein, args.size)
    methods = {"cryoposes": cryoposes_map}
    convention_check = None
    with tempfile.TemporaryDirectory() as checkpoints:
        if aspire is not None:
            logging.getLogger("aspire").setLevel(logging.WARNING)
            convention_check = check_conventions(clean, truth)
            print(f"ASPIRE {aspire.__version__}: projections of the true map at the converted poses against "
                  f"the images, NCC min {convention_check['ncc_min']:.5f}", flush=True)
            methods["ASPIRE MeanEstimator"] = lambda dataset: aspire_map(dataset, checkpoints)
        else:
            print("ASPIRE is not installed (pip install 'cryoposes[bench]'): timing cryoposes alone", flush=True)
        rows = []
        for snr_db in [None, *args.snr_db]:
            dataset = clean if snr_db is None else simulation.with_noise(clean, snr_db)
            setting = "clean" if snr_db is None else f"{snr_db:g} dB"
            print(f"{setting}:", flush=True)
            row = {"setting": setting, "snr_db": snr_db, "methods": compare(dataset, truth, methods, args.repeats)}
            if aspire is not None:
                ours, theirs = row["methods"]["cryoposes"], row["methods"]["ASPIRE MeanEstimator"]
                row["speedup"] = {"wall": theirs["wall_s"] / ours["wall_s"], "cpu": theirs["cpu_s"] / ours["cpu_s"]}
            rows.append(row)

    entry = {
        **records.header(args.name, args.profile, vars(args)),
        "aspire_version": aspire.__version__ if aspire is not None else None,
        "images": args.images,
        "size": args.size,
        "pixel_size": clean.pixel_size,
        "nyquist_resolution": 2 * clean.pixel_size,
        "convention_check": convention_check,
        "rows": rows,
    }
    records.save(args.output, entry)
    print_table(rows, aspire is not None)
    print(f"saved {args.name!r} to {args.output}")


if __name__ == "__main__":
    main()
