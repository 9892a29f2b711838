"""Speed of orientation recovery from perfect distances, and of the alignment used to score it.

    python benchmarks/recovery.py                           # N = 1,000 / 5,000 / 10,000, random start
    python benchmarks/recovery.py --sizes 5000 --init spectral

For each N: poses uniform on SO(3) (seeded), their exact distance matrix d_q as targets, and
:func:`cryoposes.recovery.fit_poses` with the defaults of ``cryoposes recover`` (65,536 random
pairs per step, Adam, XLA-compiled step, reseating) from the chosen start. Printed: training
steps per second (wall clock, including sampling, reseating and the first epoch, which also
compiles the step), the same after the first epoch ("steady"), the first epoch's seconds, the
time and step at which the median error after O(4) alignment first fell below 0.5° (checked on
the poses saved at the end of every 50-step epoch; the checks themselves are not timed), the
final median and mean O(4) errors, and the final loss. Then the time to align 5,000 poses (physical and O(4), best of 5).

Timings are wall clock: on a shared machine they depend on the other jobs running (each record
holds the load average). With ``--output`` the rows are also saved as a results record named
``--name``.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np

import records
from cryoposes import alignment, recovery, rotations


def time_to_threshold(result, truth, threshold):
    """(seconds, step) at which the O(4) median error first fell below ``threshold`` degrees."""
    for step, seconds, poses in zip(result.history["step"], result.history["time"], result.snapshots):
        if alignment.align_o4(truth, poses).median < threshold:
            return seconds, step
    return None, None


def benchmark_recovery(n, init, steps, batch, seed, threshold):
    truth = rotations.random_quaternions(n, np.random.default_rng(seed))
    targets = rotations.pairwise_geodesic_distances(truth).astype(np.float32)
    start = time.perf_counter()
    config = recovery.RecoveryConfig(init=init, steps=steps, batch_size=batch, seed=seed + 1)
    result = recovery.fit_poses(targets, config, snapshots=True, progress=False)
    wall = time.perf_counter() - start
    seconds, step = time_to_threshold(result, truth, threshold)
    final = alignment.align_o4(truth, result.quaternions)
    steps, times = np.asarray(result.history["step"]), np.asarray(result.history["time"])
    return {
        "n": n,
        "steps/s": steps[-1] / times[-1],
        # After the first epoch, which also compiles the step.
        "steady_steps/s": (steps[-1] - steps[0]) / (times[-1] - times[0]) if len(steps) > 1 else np.nan,
        "first_epoch_s": times[0],
        "setup_s": wall - result.history["time"][-1],  # start poses, kNN lists, compilation
        "time_to_threshold_s": seconds,
        "step_to_threshold": step,
        "median_deg": final.median,
        "mean_deg": final.mean,
        "loss": result.history["loss"][-1],
        "wall_s": wall,
    }


def benchmark_alignment(n, repeats, seed):
    rng = np.random.default_rng(seed)
    truth = rotations.random_quaternions(n, rng)
    a, b = rotations.random_quaternions(2, rng)
    noise = rotations.axis_angle_to_quaternion(rng.standard_normal((n, 3)), np.radians(rng.exponential(2.0, n)))
    estimated = rotations.quaternion_multiply(rotations.quaternion_multiply(a, rotations.quaternion_multiply(truth, noise)), b)
    times = {}
    for name, align in (("physical", alignment.align_physical), ("O(4)", alignment.align_o4)):
        best = np.inf
        for _ in range(repeats):
            start = time.perf_counter()
            align(truth, estimated)
            best = min(best, time.perf_counter() - start)
        times[name] = best
    return times


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000, 10000])
    parser.add_argument("--init", choices=recovery.INITS[:2], default="random")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch", type=int, default=65536)
    parser.add_argument("--threshold", type=float, default=0.5, help="median O(4) error in degrees")
    parser.add_argument("--align-n", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--name", default="recovery-speed", help="name of the results record")
    parser.add_argument("--output", help="results file to add the record to (e.g. results/recovery.json)")
    args = parser.parse_args()

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores; "
          f"start: {args.init}; {args.steps} steps of {args.batch} pairs")
    header = (f"{'N':>7} {'steps/s':>8} {'steady':>7} {'1st ep s':>8} {'setup s':>8} "
              f"{'t<' + str(args.threshold) + '° s':>9} {'step':>6} "
              f"{'median °':>10} {'mean °':>10} {'loss':>9} {'wall s':>7}")
    print(header)
    rows = []
    for n in args.sizes:
        row = benchmark_recovery(n, args.init, args.steps, args.batch, args.seed, args.threshold)
        rows.append(row)
        reached = (f"{row['time_to_threshold_s']:>9.1f} {row['step_to_threshold']:>6d}"
                   if row["time_to_threshold_s"] is not None else f"{'never':>9} {'-':>6}")
        print(f"{n:>7} {row['steps/s']:>8.1f} {row['steady_steps/s']:>7.1f} {row['first_epoch_s']:>8.2f} "
              f"{row['setup_s']:>8.1f} {reached} {row['median_deg']:>10.4f} "
              f"{row['mean_deg']:>10.4f} {row['loss']:>9.2e} {row['wall_s']:>7.1f}", flush=True)
    times = benchmark_alignment(args.align_n, 5, args.seed)
    print(f"alignment of {args.align_n} poses: " + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in times.items()))
    if args.output:
        records.save(args.output, {**records.header(args.name, "benchmark", vars(args)), "rows": rows,
                                   "alignment_s": times})


if __name__ == "__main__":
    main()
