"""Speed and accuracy of the projectors, side by side in one run.

    python benchmarks/projection.py                          # 1,000 poses of 5j0n at 64³ and 128³
    python benchmarks/projection.py --sizes 64 --poses 5000

For each box size: the cryoposes CPU projector (``project(method="fourier")``), ASPIRE's
``Volume.project`` (PyPI ``aspire``, the ``bench`` extra; scaled by L because it returns the mean
along the ray, not the sum), ASTRA on a CUDA GPU when there is one, and the brute-force float64
references of :func:`cryoposes.projection.project_reference` (band-limited: the one the issue's
≤ 1% check uses; trilinear: plain ray sums through the trilinear interpolant, for comparison).
All project the same random poses of the same volume (``load_protein("5j0n", box=L)``).

Printed per method: projections per second in wall-clock time and in CPU time (all threads; less
sensitive to other jobs on a shared machine), the ratio to ASPIRE for both, and the relative
error ‖p − p_ref‖/‖p_ref‖ (median and max) and normalised cross-correlation against the
band-limited reference. The references are too slow for all poses: they are timed and compared
on the first ``--reference-poses`` poses (the table says how many). Fast methods are timed as the
best of ``--repeats`` runs (wall-clock and CPU time each), after one warm-up projection. On a
shared machine the wall-clock numbers depend on the other jobs; the CPU-time ones much less.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import time

import numpy as np

from cryoposes import projection
from cryoposes.rotations import quaternion_to_matrix, random_quaternions
from cryoposes.volumes import load_protein


def timed(function, repeats: int):
    """(result, shortest wall-clock seconds, shortest CPU seconds) over ``repeats`` runs."""
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        result = function()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return result, min(walls), min(cpus)


def relative_errors(images, reference):
    return np.linalg.norm(images - reference, axis=(1, 2)) / np.linalg.norm(reference, axis=(1, 2))


def ncc(images, reference):
    a = images - images.mean(axis=(1, 2), keepdims=True)
    b = reference - reference.mean(axis=(1, 2), keepdims=True)
    return np.sum(a * b, axis=(1, 2)) / np.sqrt(np.sum(a * a, axis=(1, 2)) * np.sum(b * b, axis=(1, 2)))


def aspire_projector(data):
    """ASPIRE's projector as a function of quaternions, or None when ASPIRE is not installed."""
    try:
        from aspire.volume import Volume as AspireVolume
    except ImportError:
        return None
    logging.getLogger("aspire").setLevel(logging.WARNING)
    volume = AspireVolume(data.astype(np.float32))
    length = data.shape[0]

    def project(q):
        rotations = quaternion_to_matrix(q).astype(np.float32)
        # Same convention as ours (image(x, y) = Σ_z V(R·(x, y, z)), centre L // 2), mean not sum.
        return volume.project(rotations).asnumpy() * length

    return project


def benchmark(size: int, poses: int, reference_poses: int, repeats: int, seed: int):
    volume = load_protein("5j0n", box=size)
    q = random_quaternions(poses, rng=seed)
    subset = q[:reference_poses]
    rows = []
    reference, wall, cpu = timed(lambda: projection.project_reference(volume, subset), 1)
    rows.append(("reference, band-limited (float64)", len(subset), wall, cpu, reference))
    trilinear, wall, cpu = timed(lambda: projection.project_reference(volume, subset, kind="trilinear"), 1)
    rows.append(("reference, trilinear ray sums (float64)", len(subset), wall, cpu, trilinear))

    methods = {"cryoposes fourier (CPU)": lambda qq: projection.project(volume, qq, method="fourier")}
    aspire = aspire_projector(volume.data)
    if aspire is not None:
        methods["ASPIRE Volume.project"] = aspire
    if projection.cuda_available():
        methods["cryoposes astra (GPU)"] = lambda qq: projection.project(volume, qq, method="astra")
    for name, method in methods.items():
        method(q[:2])  # warm-up: imports, plans
        images, wall, cpu = timed(lambda: method(q), repeats)
        rows.append((name, poses, wall, cpu, images[:reference_poses]))
    return rows, aspire is not None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--poses", type=int, default=1000)
    parser.add_argument("--reference-poses", type=int, nargs="+", default=[100, 20],
                        help="poses the references are run on, per size (default 100 at 64³, 20 at 128³)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    counts = dict(zip(args.sizes, args.reference_poses + args.reference_poses[-1:] * len(args.sizes)))
    load = os.getloadavg()[0]
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPU cores, CUDA for ASTRA: {projection.cuda_available()}, "
          f"load average {load:.1f} at the start")
    print(f"protein 5j0n, {args.poses} random poses (seed {args.seed}); errors against the band-limited reference\n")
    header = (f"{'size':>4}  {'method':<40} {'poses':>5} {'proj/s':>9} {'× ASPIRE':>8} {'proj/CPU-s':>10} "
              f"{'× ASPIRE':>8} {'rel. err. median':>16} {'max':>7} {'NCC min':>8}")
    print(header)
    print("-" * len(header))
    for size in args.sizes:
        rows, have_aspire = benchmark(size, args.poses, min(counts[size], args.poses), args.repeats, args.seed)
        reference = rows[0][4]
        aspire_row = next((row for row in rows if row[0].startswith("ASPIRE")), None)
        for name, count, wall, cpu, images in rows:
            speed, cpu_speed = count / wall, count / cpu
            ratio = f"{speed / (aspire_row[1] / aspire_row[2]):8.2f}" if aspire_row else f"{'–':>8}"
            cpu_ratio = f"{cpu_speed / (aspire_row[1] / aspire_row[3]):8.2f}" if aspire_row else f"{'–':>8}"
            errors = relative_errors(images, reference)
            print(f"{size:>4}  {name:<40} {count:>5} {speed:>9.1f} {ratio} {cpu_speed:>10.1f} {cpu_ratio} "
                  f"{np.median(errors):>16.2e} {errors.max():>7.2e} {ncc(images, reference).min():>8.5f}")
        if not have_aspire:
            print(f"{size:>4}  ASPIRE not installed (pip install 'cryoposes[bench]'): no comparison")
    print(f"\nload average {os.getloadavg()[0]:.1f} at the end; references timed on the poses listed.")


if __name__ == "__main__":
    main()
