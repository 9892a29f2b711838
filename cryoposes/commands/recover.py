"""Recover particle poses from pairwise distances and write them as a RELION STAR file.

Reads DIR/particles.mrcs and DIR/particles.star (as written by `cryoposes simulate`), builds the
N×N target distances and fits one unit quaternion per particle to them
(cryoposes.recovery.fit_poses). Distances:

  true         the true pose distances d_q from the STAR file (Phase 1: perfect distances);
  euclidean    ‖p_i − p_j‖ between images, scaled so their mean is that of uniform rotations
               (Phase 2.1 baseline);
  MODEL.keras  a distance network from `cryoposes train-distance` trained on this dataset, or
               on the same simulation without noise (same protein, size, count, coverage,
               seed: the same poses, so the same split): only its test images (never seen
               in training) are recovered. Train on clean images with noise added on the fly
               (--snr-db), then recover a noisy dataset.

Distances cannot see a right multiplication of every pose nor its transposition (see
`cryoposes evaluate`); by default these are then found from the images themselves, by
common lines (cryoposes.gauge), so the poses written are physical: right up to one global
rotation of the molecule and its hand, like any reconstruction's. No ground truth is used.
--no-gauge writes the distance-only poses instead. With --init true nothing is to be found.

The output lists rlnImageName and rlnAngleRot/Tilt/Psi (degrees) of the recovered particles,
and a data_cryoposes block saying which gauge they are in (physical or distances); score it
with `cryoposes evaluate DIR/particles.star FILE.star`, map it with `cryoposes reconstruct`.

Example:
    cryoposes recover particles/ --distance true --init random --seed 0 -o recovered.star
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from cryoposes.errors import InputError

from cryoposes.options import INITS, RECOVERY_SAMPLINGS, TURNS

DISTANCES = ("true", "euclidean")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("directory", type=Path, metavar="DIR", help="dataset folder with particles.mrcs and particles.star")
    parser.add_argument("--distance", required=True, metavar="true|euclidean|MODEL.keras",
                        help="target distances: the true d_q, the Euclidean baseline, or a trained distance model")
    parser.add_argument("--init", choices=INITS, default=INITS[0],
                        help="starting poses: spectral (from the distances, default), random, or the true poses")
    parser.add_argument("--sampling", choices=RECOVERY_SAMPLINGS, default=RECOVERY_SAMPLINGS[0],
                        help="pairs per step: uniform random (default), k nearest neighbours, or half of each")
    parser.add_argument("--turns", type=int, default=TURNS, metavar="K",
                        help="with MODEL.keras: average the learned distances over K in-plane turns of "
                             f"the images (d_q does not change when both images turn alike; default {TURNS})")
    parser.add_argument("--steps", type=int, default=1500, metavar="S", help="optimisation steps (default 1500)")
    parser.add_argument("--batch", type=int, default=65536, metavar="B",
                        help="pairs per step (default 65536; at least all pairs means all pairs every step)")
    parser.add_argument("--learning-rate", type=float, default=0.05, metavar="LR", help="initial Adam learning rate")
    parser.add_argument("--seed", type=int, required=True, metavar="K", help="random seed (same seed, same poses)")
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="FILE.star", help="STAR file to write")
    parser.add_argument("--gauge", action=argparse.BooleanOptionalAction, default=True,
                        help="find the gauge from the images so that the poses are physical (default on)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _check_arguments(args) -> None:
    if args.turns <= 0:
        raise InputError(f"--turns must be positive, got {args.turns}")
    if args.steps <= 0:
        raise InputError(f"--steps must be positive, got {args.steps}")
    if args.batch <= 0:
        raise InputError(f"--batch must be positive, got {args.batch}")
    if not args.learning_rate > 0:
        raise InputError(f"--learning-rate must be positive, got {args.learning_rate}")
    if args.seed < 0:
        raise InputError(f"--seed must be non-negative, got {args.seed}")
    if args.output.suffix != ".star":
        raise InputError(f"the output must be a .star file, got {args.output}")
    if args.output.is_dir():
        raise InputError(f"{args.output} is a folder; give a .star file name")
    if args.distance not in DISTANCES and not args.distance.endswith(".keras"):
        raise InputError(f"--distance must be 'true', 'euclidean' or a MODEL.keras file, got {args.distance!r}")
    if args.distance.endswith(".keras") and not Path(args.distance).is_file():
        raise InputError(f"no distance model at {args.distance}")
    if not args.directory.is_dir():
        raise InputError(f"no dataset folder at {args.directory}")


#: Simulation settings that must agree between the dataset a distance model was trained on and
#: the one recovered (noise may differ: that is the point of training with on-the-fly noise).
SAME_SIMULATION = ("protein", "n", "size", "coverage", "seed", "shift", "ctf", "zoom")


def _check_same_simulation(trained_on: dict, recovered: dict) -> None:
    different = [f"{key} {trained_on[key]!r} ≠ {recovered[key]!r}" for key in SAME_SIMULATION
                 if key in trained_on and key in recovered and trained_on[key] != recovered[key]]
    if different:
        raise InputError("the distance model was trained on another simulation (" + ", ".join(different)
                         + "): its test images are not this dataset's unseen images")


def main(args) -> int:
    import numpy as np

    from cryoposes import distances, particles, recovery, rotations, star

    _check_arguments(args)
    dataset = particles.read_dataset(args.directory)
    n = len(dataset)
    if n < 3:
        raise InputError(f"{args.directory} holds {n} particle(s); recovery needs at least 3")
    chosen = np.arange(n)
    if args.distance == "true":
        targets = rotations.pairwise_geodesic_distances(dataset.quaternions)
    elif args.distance == "euclidean":
        targets = distances.scale_to_rotations(distances.euclidean_distances(dataset.images))
    else:
        from cryoposes import siamese  # TensorFlow model code: only loaded when asked for

        model = siamese.load(args.distance)
        _check_same_simulation(model.metadata.get("dataset_metadata") or {}, dataset.metadata)
        chosen = siamese.test_indices(model, n)
        targets = siamese.distance_matrix(model, dataset.images[chosen], turns=args.turns)

    config = recovery.RecoveryConfig(init=args.init, sampling=args.sampling, steps=args.steps,
                                     batch_size=args.batch, learning_rate=args.learning_rate, seed=args.seed)
    start = time.perf_counter()
    result = recovery.fit_poses(targets, config, true_quaternions=dataset.quaternions[chosen],
                                progress=not args.quiet)
    seconds = time.perf_counter() - start
    poses, metadata = result.quaternions, {"gauge": "distances"}
    if args.init == "true":
        metadata = {"gauge": "physical", "gauge_method": "true start"}
    elif args.gauge:
        from cryoposes import gauge

        recovered = dataset.subset(chosen)
        found = gauge.resolve_gauge(recovered.images, poses, recovered.shifts, recovered.ctf,
                                    recovered.pixel_size, seed=args.seed, progress=not args.quiet)
        poses = found.quaternions
        metadata = {"gauge": "physical", "gauge_method": "common lines", "gauge_score": found.score,
                    "gauge_runner_up": found.runner_up, "gauge_transposed": found.transposed}
    # The names read from the STAR file, so that a reordered or subset file keeps its pairing.
    names = dataset.names()
    star.write_poses(args.output, poses, image_names=[names[i] for i in chosen], metadata=metadata)
    print(f"recovered {len(chosen)} poses in {seconds:.1f} s (final loss {result.history['loss'][-1]:.3g}), "
          f"gauge: {metadata['gauge']} -> {args.output}")
    return 0
