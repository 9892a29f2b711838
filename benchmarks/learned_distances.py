"""Accuracy of orientation recovery from learned distances (Phase 2.2), recorded for the book.

    python benchmarks/learned_distances.py --name 5j0n-64px-clean --protein 5j0n --size 64 \\
        --images 5000 --epochs 30 --output results/learned_distances.json

Runs :func:`cryoposes.studies.experiment` (simulate, split, train on the training images,
recover the test images' poses from their learned distances, score them) and stores a record
under ``--name`` in the JSON file (other records are kept): the exact command, cryoposes
version, machine, sizes, training history, distance errors, median and mean errors after O(4)
and physical alignment for each start, the seed report's Table 1 losses and timings. The
chapter "Phase 2.2: learned distances" renders the file.
"""

from __future__ import annotations

import argparse

import records
from cryoposes import batches, studies, training
from cryoposes.options import TURNS
from cryoposes.recovery import RecoveryConfig


def record(result: dict, name: str, profile: str, args: dict) -> dict:
    """JSON-ready numbers of an :func:`cryoposes.studies.experiment` result."""
    model = result["model"]
    recoveries = {}
    for init, recovered in result["recoveries"].items():
        recoveries[init] = {
            "o4_median_deg": recovered["o4"].median,
            "o4_mean_deg": recovered["o4"].mean,
            "physical_median_deg": recovered["physical"].median,
            "physical_mean_deg": recovered["physical"].mean,
            "losses_before": recovered["losses_before"],
            "losses_after": recovered["losses_after"],
            "seconds": recovered["seconds"],
        }
    split = {key: len(value) for key, value in result["split"].items()}
    return {
        **records.header(name, profile, args),
        "split": split,
        "epochs_run": len(model.metadata["history"]["loss"]),
        "history": model.metadata["history"],
        "distance_errors": result["distance_errors"],
        "recovery": recoveries,
        "timings_s": result["timings"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", required=True, help="record name (replaces a record of that name)")
    parser.add_argument("--profile", default="measurement",
                        help="what this run is, e.g. 'paper' only for the paper profile's sizes")
    parser.add_argument("--protein", default="5j0n")
    parser.add_argument("--coverage", default="full")
    parser.add_argument("--symmetry", default="C1", help="symmetry used when scoring (default C1, as the paper)")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--zoom", type=float, default=1.0,
                        help="project in a box of size·zoom px and keep the central size px (default 1)")
    parser.add_argument("--crop", type=int, default=None,
                        help="the encoder sees the central CROP px of each image (default: all of it)")
    parser.add_argument("--input-size", type=int, default=None,
                        help="and resizes them to this many px (anti-aliased; default: no resizing)")
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--snr-db", type=float, default=None)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--embedding", type=int, default=64)
    parser.add_argument("--head", default="rotation")
    parser.add_argument("--loss", default="mae")
    parser.add_argument("--normalization", default="batch", help="encoder normalisation: batch, group or none")
    parser.add_argument("--patience", type=int, default=10, help="early-stopping patience in epochs")
    parser.add_argument("--no-rotate", action="store_true", help="no in-plane rotation augmentation")
    parser.add_argument("--turns", type=int, default=TURNS,
                        help=f"in-plane turns averaged in each learned distance matrix (default {TURNS})")
    parser.add_argument("--recovery-steps", type=int, default=3000)
    parser.add_argument("--inits", nargs="+", default=["spectral", "random", "true"])
    parser.add_argument("--init-model", default=None, metavar="MODEL.keras",
                        help="fine-tune this model (same simulated images and seed), e.g. a clean run's")
    parser.add_argument("--save-model", default=None, metavar="MODEL.keras", help="keep the trained model here")
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default="results/learned_distances.json")
    args = parser.parse_args()

    config = training.TrainingConfig(
        embedding=args.embedding, head=args.head, loss=args.loss, epochs=args.epochs,
        batch_size=args.batch_size, seed=args.seed, normalization=args.normalization, patience=args.patience,
        crop=args.crop, input_size=args.input_size, learning_rate=args.learning_rate,
        augmentation=batches.Augmentation(rotate=not args.no_rotate))
    result = studies.experiment(args.protein, args.images, args.size, args.coverage, args.snr_db, config,
                                inits=tuple(args.inits), recovery=RecoveryConfig(steps=args.recovery_steps),
                                symmetry=args.symmetry, seed=args.seed, zoom=args.zoom, progress=True,
                                initial=args.init_model, turns=args.turns)
    if args.save_model:
        result["model"].save(args.save_model)
    entry = record(result, args.name, args.profile, vars(args))
    records.save(args.output, entry)
    for init, numbers in entry["recovery"].items():
        print(f"{args.name} [{init}]: median {numbers['o4_median_deg']:.2f}° / mean {numbers['o4_mean_deg']:.2f}° "
              f"(O(4)); physical median {numbers['physical_median_deg']:.2f}°")


if __name__ == "__main__":
    main()
