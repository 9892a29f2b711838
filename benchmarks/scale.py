"""Recovery at scale: time, peak memory and error from N = 1,000 to 100,000 images.

    python benchmarks/scale.py --model results/runs/5j0n-64px.keras --protein 5j0n --size 64 \\
        --zoom 1.6 --sizes 1000 5000 20000 100000 --output results/scale.json

For each N: ``cryoposes simulate`` writes N new images (another seed than the model's training
images, so poses it never saw) to a temporary folder; then a fresh process (so that its peak
memory is its own and holds no simulation) reads them as ``recover`` does (the stack memory-mapped)
and times what ``cryoposes recover --distance MODEL.keras`` does: embed every image (``turns`` in-plane turns),
build the targets (the N×N matrix up to ``--dense-limit``, per-pair distances from the
embeddings beyond), start (spectral; beyond the limit on ``--subset`` particles, the others
placed at their nearest), fit, and find the gauge from the images. Recorded per N: seconds of
each stage, peak resident memory of the process, steps per second, O(4) and physical median
errors against the simulated truth. Records hold the command, version and machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import subprocess
import sys
import tempfile
import time

import records
from cryoposes.options import DENSE_LIMIT, RECOVERY_SAMPLINGS, TURNS


def measure(args) -> dict:
    """One N, in this process: the stages of ``recover`` and their errors."""
    from cryoposes import alignment, gauge, particles, recovery, siamese

    timings, peaks = {}, {}

    def peak() -> float:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20

    dataset = particles.read_dataset(args.dataset)
    model = siamese.load(args.model)
    start = time.perf_counter()
    targets = siamese.learned_targets(model, dataset.images, args.turns, args.dense_limit, progress=True)
    timings["embed_and_targets"] = time.perf_counter() - start
    peaks["embed_and_targets"] = peak()
    config = recovery.RecoveryConfig(steps=args.steps, seed=args.seed, sampling=args.sampling)
    start = time.perf_counter()
    initial = None
    if targets.dense is None:
        config = dataclasses.replace(config, reseat=False)
        initial = recovery.subset_start(targets, args.subset, config, progress=True)
    timings["start"] = time.perf_counter() - start
    peaks["start"] = peak()
    start = time.perf_counter()
    result = recovery.fit_poses(targets, config, initial=initial, progress=True)
    timings["fit"] = time.perf_counter() - start
    peaks["fit"] = peak()
    start = time.perf_counter()
    found = gauge.resolve_gauge(dataset.images, result.quaternions, dataset.shifts, dataset.ctf,
                                dataset.pixel_size, seed=args.seed, progress=True)
    timings["gauge"] = time.perf_counter() - start
    peaks["gauge"] = peak()
    truth = dataset.quaternions
    return {
        "n": args.n,
        "targets": "matrix" if targets.dense is not None else "embeddings",
        "timings_s": timings,
        "embed_to_poses_s": timings["embed_and_targets"] + timings["start"] + timings["fit"] + timings["gauge"],
        "steps_per_s": result.history["step"][-1] / result.history["time"][-1],
        "peak_memory_gb": peaks["gauge"],  # of recover's stages (scoring below excluded)
        "peak_memory_gb_after": peaks,
        "o4_median_deg": alignment.align_o4(truth, result.quaternions).median,
        "physical_median_deg": alignment.align_physical(truth, found.quaternions).median,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--name", default="scale")
    parser.add_argument("--profile", default="measurement")
    parser.add_argument("--model", required=True, metavar="MODEL.keras", help="a trained distance model")
    parser.add_argument("--protein", default="5j0n")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--zoom", type=float, default=1.0)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000, 20000, 100000])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--turns", type=int, default=TURNS)
    parser.add_argument("--dense-limit", type=int, default=DENSE_LIMIT)
    parser.add_argument("--subset", type=int, default=5000)
    parser.add_argument("--sampling", choices=RECOVERY_SAMPLINGS, default=RECOVERY_SAMPLINGS[0],
                        help="pairs per step; kNN pairs beyond --dense-limit come from a search in "
                             "embedding space, timed with the fit")
    parser.add_argument("--seed", type=int, default=1000, help="simulation seed: not the model's training seed")
    parser.add_argument("--output", default="results/scale.json")
    parser.add_argument("--n", type=int, default=None, help=argparse.SUPPRESS)  # one size, in a child process
    parser.add_argument("--dataset", default=None, help=argparse.SUPPRESS)  # ... of this simulated dataset
    args = parser.parse_args()
    if args.n is not None:
        print("RESULT " + json.dumps(measure(args)), flush=True)
        return
    runs = []
    for n in args.sizes:
        with tempfile.TemporaryDirectory(prefix="scale-") as folder:
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "cryoposes", "simulate", args.protein, "-n", str(n), "--size",
                            str(args.size), "--zoom", str(args.zoom), "--seed", str(args.seed), "--quiet",
                            "-o", f"{folder}/particles"], check=True, stdout=subprocess.DEVNULL)
            simulated = time.perf_counter() - start
            child = subprocess.run([sys.executable, *sys.argv, "--n", str(n), "--dataset", f"{folder}/particles"],
                                   stdout=subprocess.PIPE, text=True, check=True)
        runs.append(json.loads(child.stdout.rsplit("RESULT ", 1)[1]))
        run = runs[-1]
        run["timings_s"] = {"simulate_and_write": simulated, **run["timings_s"]}
        print(f"N = {n:>7}: {run['targets']:<10} embed→poses {run['embed_to_poses_s']:7.0f} s, "
              f"{run['steps_per_s']:6.1f} steps/s, peak {run['peak_memory_gb']:5.2f} GB, "
              f"O(4) {run['o4_median_deg']:6.2f}°, physical {run['physical_median_deg']:6.2f}°", flush=True)
        # Saved after every size: a long last size that does not finish keeps the others.
        records.save(args.output, {**records.header(args.name, args.profile, vars(args)), "runs": runs})


if __name__ == "__main__":
    main()
