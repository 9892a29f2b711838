"""Recover particle poses from pairwise distances and write them as a RELION STAR file.

Reads a particle dataset: a folder written by `cryoposes simulate`, or any RELION particle STAR
file (DIR/particles.star or the STAR file itself; many stacks, several optics groups, with or
without poses: particles fresh from picking have none, and that is what this is for). Builds
the N×N target distances and fits one unit quaternion per particle to them
(cryoposes.recovery.fit_poses). Distances:

  true         the true pose distances d_q from the STAR file (Phase 1: perfect distances;
               needs poses in the file);
  euclidean    ‖p_i − p_j‖ between images, scaled so their mean is that of uniform rotations
               (Phase 2.1 baseline);
  MODEL.keras  a distance network from `cryoposes train-distance`, on images of its size. On
               the dataset it was trained on, or the same simulation with noise (same protein,
               size, count, coverage, seed: the same poses, so the same split), only its test
               images (never seen in training) are recovered; on any other dataset, all images.
               Train on clean images with noise added on the fly (--snr-db), then recover a
               noisy dataset. Beyond --dense-limit particles no N×N matrix is made: each
               image is embedded once (N × turns × K numbers), the distances of the pairs
               drawn at each step are computed inside the compiled step, and the spectral
               start is made on --subset particles, the others placed at their nearest;
               kNN pairs (--sampling knn|mixed) come from a search in embedding space
               (at N = 20,000 of 5j0n mixed pairs gave 4.1° against random pairs' 3.5°
               O(4): results/scale.json).
               Memory grows linearly with N. With --checkpoints DIR the embeddings, the
               start and the fit's progress are kept in DIR: the same command resumes.

Distances cannot see a right multiplication of every pose nor its transposition (see
`cryoposes evaluate`); by default these are then found from the images themselves, by
common lines (cryoposes.gauge), so the poses written are physical: right up to one global
rotation of the molecule and its hand, like any reconstruction's. No ground truth is used.
--no-gauge writes the distance-only poses instead. With --init true nothing is to be found.
Particles are taken as centred where their origins (rlnOriginX/YAngst, or none) put them; with
--max-shift PX, particles that may lie up to PX pixels from there are first centred on the
stack's rotational average, the gauge uses the shifts so found, and they are written as the
particles' origins.

The output is the input STAR file's rows of the recovered particles, every column kept in its
order (and the optics block), with rlnAngleRot/Tilt/Psi (degrees) added or replaced, so RELION
continues from it; a data_cryoposes block says which gauge the poses are in (physical or
distances), which distance and which images were used. Score it with `cryoposes evaluate
DIR/particles.star FILE.star` when the truth is known, map it with `cryoposes reconstruct`.

Example:
    cryoposes recover particles/ --distance true --init random --seed 0 -o recovered.star
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

from cryoposes.errors import InputError

from cryoposes.options import DENSE_LIMIT, INITS, RECOVERY_SAMPLINGS, TURNS

DISTANCES = ("true", "euclidean")
#: Particles of the spectral start at scale.
SUBSET = 5000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("directory", type=Path, metavar="DIR|FILE.star",
                        help="dataset folder with particles.star, or a particle STAR file")
    parser.add_argument("--pixel-size", type=float, default=None, metavar="Å",
                        help="bring every particle to this pixel size (needed when optics groups differ)")
    parser.add_argument("--distance", required=True, metavar="true|euclidean|MODEL.keras",
                        help="target distances: the true d_q, the Euclidean baseline, or a trained distance model")
    parser.add_argument("--init", choices=INITS, default=INITS[0],
                        help="starting poses: spectral (from the distances, default), random, or the true poses")
    parser.add_argument("--sampling", choices=RECOVERY_SAMPLINGS, default=RECOVERY_SAMPLINGS[0],
                        help="pairs per step: uniform random (default), k nearest neighbours, or half of each")
    parser.add_argument("--turns", type=int, default=TURNS, metavar="K",
                        help="with MODEL.keras: average the learned distances over K in-plane turns of "
                             f"the images (d_q does not change when both images turn alike; default {TURNS})")
    parser.add_argument("--dense-limit", type=int, default=DENSE_LIMIT, metavar="M",
                        help="with MODEL.keras, recover more particles than M without their N×N matrix: "
                             "distances of sampled pairs from per-image embeddings, a spectral start on "
                             f"--subset particles, the others placed by their nearest (default {DENSE_LIMIT})")
    parser.add_argument("--subset", type=int, default=SUBSET, metavar="S",
                        help=f"particles of the spectral start beyond --dense-limit (default {SUBSET})")
    parser.add_argument("--steps", type=int, default=1500, metavar="S", help="optimisation steps (default 1500)")
    parser.add_argument("--batch", type=int, default=65536, metavar="B",
                        help="pairs per step (default 65536; at least all pairs means all pairs every step)")
    parser.add_argument("--learning-rate", type=float, default=0.05, metavar="LR", help="initial Adam learning rate")
    parser.add_argument("--seed", type=int, required=True, metavar="K", help="random seed (same seed, same poses)")
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="FILE.star", help="STAR file to write")
    parser.add_argument("--gauge", action=argparse.BooleanOptionalAction, default=True,
                        help="find the gauge from the images so that the poses are physical (default on)")
    parser.add_argument("--max-shift", type=float, default=0.0, metavar="PX",
                        help="particles without origins may be off-centre by up to PX pixels: centre "
                             "them before the gauge and write the shifts found (default 0: centred)")
    parser.add_argument("--checkpoints", type=Path, metavar="DIR",
                        help="keep the long stages' results in DIR (embeddings, start, the fit's "
                             "progress): run the same command again after a stop and it resumes")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _check_arguments(args) -> None:
    if args.turns <= 0:
        raise InputError(f"--turns must be positive, got {args.turns}")
    if args.steps <= 0:
        raise InputError(f"--steps must be positive, got {args.steps}")
    if args.dense_limit < 3 or args.subset < 3:
        raise InputError(f"--dense-limit and --subset must be at least 3, got {args.dense_limit} and {args.subset}")
    if args.batch <= 0:
        raise InputError(f"--batch must be positive, got {args.batch}")
    if not args.learning_rate > 0:
        raise InputError(f"--learning-rate must be positive, got {args.learning_rate}")
    if args.seed < 0:
        raise InputError(f"--seed must be non-negative, got {args.seed}")
    if not 0 <= args.max_shift < float("inf"):
        raise InputError(f"--max-shift must be a non-negative number of pixels, got {args.max_shift}")
    if args.output.suffix != ".star":
        raise InputError(f"the output must be a .star file, got {args.output}")
    if args.output.is_dir():
        raise InputError(f"{args.output} is a folder; give a .star file name")
    if args.distance not in DISTANCES and not args.distance.endswith(".keras"):
        raise InputError(f"--distance must be 'true', 'euclidean' or a MODEL.keras file, got {args.distance!r}")
    if args.distance.endswith(".keras") and not Path(args.distance).is_file():
        raise InputError(f"no distance model at {args.distance}")
    if not args.directory.exists():
        raise InputError(f"no dataset folder or STAR file at {args.directory}")


#: Simulation settings that must agree between the dataset a distance model was trained on and
#: the one recovered (noise may differ: that is the point of training with on-the-fly noise).
SAME_SIMULATION = ("protein", "n", "size", "coverage", "seed", "shift", "ctf", "zoom")


def _same_dataset(recorded: dict, fingerprint, count: int, dataset) -> bool:
    """Whether ``dataset`` is the one described (or its noisy twin): as many images, the same
    particle names (when recorded), and every :data:`SAME_SIMULATION` setting both record equal."""
    if any(recorded[key] != dataset.metadata[key] for key in SAME_SIMULATION
           if key in recorded and key in dataset.metadata):
        return False
    if fingerprint is not None and fingerprint != dataset.names_sha256():
        return False
    return count == len(dataset)


def trained_test_images(model, dataset):
    """The test images of ``dataset`` if ``model`` was trained on it (alone or among several
    datasets), else None: then every image is new to the model."""
    import numpy as np

    from cryoposes import siamese

    split = siamese.load_split(model)
    entries = model.metadata.get("datasets")
    if entries is None:  # trained on one dataset
        count = sum(len(indices) for indices in split.values())
        if not _same_dataset(model.metadata.get("dataset_metadata") or {},
                             model.metadata.get("dataset_names_sha256"), count, dataset):
            return None
        return siamese.test_indices(model, len(dataset))
    test = np.asarray(split["test"])
    for entry in entries:
        if _same_dataset(entry["dataset_metadata"], entry["dataset_names_sha256"], entry["images"], dataset):
            inside = test[(test >= entry["offset"]) & (test < entry["offset"] + entry["images"])]
            return np.sort(inside - entry["offset"])
    return None


def main(args) -> int:
    import numpy as np

    from cryoposes import distances, particles, recovery, rotations, star

    _check_arguments(args)
    dataset = particles.read_dataset(args.directory, args.pixel_size)
    n = len(dataset)
    if n < 3:
        raise InputError(f"{args.directory} holds {n} particle(s); recovery needs at least 3")
    if not dataset.has_poses and (args.distance == "true" or args.init == "true"):
        raise InputError(f"{args.directory} has no poses (no rlnAngleRot/Tilt/Psi): --distance true and "
                         "--init true need them; use --distance euclidean or MODEL.keras")
    chosen = np.arange(n)
    about = {"distance": args.distance, "images": "all"}
    if args.distance == "true":
        targets = rotations.pairwise_geodesic_distances(dataset.quaternions)
    elif args.distance == "euclidean":
        targets = distances.scale_to_rotations(distances.euclidean_distances(dataset.images))
    else:
        from cryoposes import siamese  # TensorFlow model code: only loaded when asked for

        model = siamese.load(args.distance)
        if dataset.size != model.image_size:
            raise InputError(f"the images of {args.directory} are {dataset.size} px, the distance model "
                             f"{args.distance} takes {model.image_size} px")
        about["distance"] = Path(args.distance).name
        test_images = trained_test_images(model, dataset)
        if test_images is not None:
            chosen = test_images
            about["images"] = "test split of the training dataset"
        targets = siamese.learned_targets(model, dataset.images[chosen], args.turns, args.dense_limit,
                                          progress=not args.quiet, checkpoint=_checkpoint(args, "embeddings.npy"))

    recovered = dataset.subset(chosen)
    config = recovery.RecoveryConfig(init=args.init, sampling=args.sampling, steps=args.steps,
                                     batch_size=args.batch, learning_rate=args.learning_rate, seed=args.seed)
    start = time.perf_counter()
    initial = None
    if isinstance(targets, recovery.PairTargets) and targets.dense is None:
        # At scale: the start from a fitted subset is close already, and reseating without
        # neighbour lists would cost N × 40 × 64 distances per epoch.
        config = dataclasses.replace(config, reseat=False)
        if args.init == "spectral":
            initial = _subset_start(targets, args, config)
        about["targets"] = f"per-pair from embeddings (N > {args.dense_limit}), start on {args.subset}"
    result = recovery.fit_poses(targets, config, progress=not args.quiet, initial=initial,
                                true_quaternions=recovered.quaternions, backup_dir=_checkpoint(args, "fit"))
    seconds = time.perf_counter() - start
    poses, metadata, estimated_shifts = result.quaternions, {"gauge": "distances"}, None
    if args.init == "true":
        metadata = {"gauge": "physical", "gauge_method": "true start"}
    elif args.gauge:
        from cryoposes import gauge

        found = gauge.resolve_gauge(recovered.images, poses, recovered.shifts, recovered.ctf,
                                    recovered.pixel_size, seed=args.seed, progress=not args.quiet,
                                    max_shift=args.max_shift)
        poses = found.quaternions
        metadata = {"gauge": "physical", "gauge_method": "common lines", "gauge_score": found.score,
                    "gauge_runner_up": found.runner_up, "gauge_transposed": found.transposed}
        if args.max_shift > 0:
            estimated_shifts = found.shifts * recovered.pixel_size
            metadata["shifts"] = f"estimated by centring (up to {args.max_shift:g} px)"
    # The rows read from the STAR file (every column, the names), so that a reordered or subset
    # file keeps its pairing and RELION continues from the output.
    star.write_poses(args.output, poses, image_names=recovered.names(), metadata={**metadata, **about},
                     shifts=estimated_shifts, table=recovered.table, optics=dataset.optics)
    print(f"recovered {len(chosen)} poses ({about['images']} images) in {seconds:.1f} s (final loss "
          f"{result.history['loss'][-1]:.3g}), gauge: {metadata['gauge']} -> {args.output}")
    return 0


def _checkpoint(args, name: str):
    """``--checkpoints``/name, or None without checkpoints."""
    return None if args.checkpoints is None else args.checkpoints / name


def _subset_start(targets, args, config):
    """recovery.subset_start, kept in --checkpoints/start.npy with what it was made from."""
    import hashlib
    import json

    import numpy as np

    from cryoposes import recovery

    path = _checkpoint(args, "start.npy")
    if path is None:
        return recovery.subset_start(targets, args.subset, config, progress=not args.quiet)
    digest = hashlib.blake2b(digest_size=16)
    for array in targets.tensors().values():
        digest.update(np.ascontiguousarray(array).data)
    about = {"targets_blake2b": digest.hexdigest(), "subset": args.subset, "config": repr(config)}
    record = path.with_suffix(".json")
    if path.is_file() and record.is_file() and json.loads(record.read_text()) == about:
        return np.load(path)
    start = recovery.subset_start(targets, args.subset, config, progress=not args.quiet)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, start)
    record.write_text(json.dumps(about))
    return start
