"""Unseen proteins: a distance network trained on other proteins, tested on one it never saw.

    python benchmarks/unseen.py --name unseen-5j0n-64px --held-out 5j0n \\
        --trained-on 7bv2 7q5b 6x18 5uak 8qjx --size 64 --zoom 1.6 --images 2000 \\
        --scale 0.15 --blur 1.0 --reference results/runs/5j0n-64px.keras --output results/unseen.json

Runs :func:`cryoposes.practice.held_out_protein` (simulate each training protein, train one
network on all of them with augmentations of what differs between proteins, test on new images
of the held-out protein) and records, next to a network trained on the held-out protein itself
(``--reference``, same image size, on the same test images): the distance errors, O(4) and
physical medians, seconds; with the exact command, version and machine. Leave-one-out is one run
per held-out protein, each a record of its own name. The model is kept in ``--models``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import records
from cryoposes import batches, practice, training
from cryoposes.options import TURNS
from cryoposes.recovery import RecoveryConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", required=True, help="record name (replaces a record of that name)")
    parser.add_argument("--profile", default="measurement")
    parser.add_argument("--held-out", required=True, help="the protein tested on, never trained on")
    parser.add_argument("--trained-on", nargs="+", required=True, help="the proteins trained on")
    parser.add_argument("--coverage", default="full")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--zoom", type=float, default=1.0)
    parser.add_argument("--images", type=int, default=2000, help="images per training protein")
    parser.add_argument("--test-images", type=int, default=1000, help="images of the held-out protein")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--scale", type=float, default=0.15, help="magnification augmentation, ±fraction")
    parser.add_argument("--blur", type=float, default=1.0, help="Gaussian blur augmentation, up to PX pixels")
    parser.add_argument("--turns", type=int, default=TURNS)
    parser.add_argument("--recovery-steps", type=int, default=3000)
    parser.add_argument("--reference", default=None, metavar="MODEL.keras",
                        help="a network trained on the held-out protein at the same image size")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--models", default="results/runs")
    parser.add_argument("--output", default="results/unseen.json")
    args = parser.parse_args()
    if args.reference is not None and not Path(args.reference).is_file():
        parser.error(f"no reference model {args.reference}")

    config = training.TrainingConfig(epochs=args.epochs, batch_size=args.batch_size, seed=args.seed,
                                     augmentation=batches.Augmentation(rotate=True, scale=args.scale, blur=args.blur))
    result = practice.held_out_protein(args.held_out, args.trained_on, args.images, args.size, config,
                                       test_images=args.test_images, coverage=args.coverage, zoom=args.zoom,
                                       seed=args.seed, reference=args.reference,
                                       recovery=RecoveryConfig(steps=args.recovery_steps), turns=args.turns,
                                       progress=True)
    model_path = Path(args.models) / f"{args.name}.keras"
    model_path.parent.mkdir(parents=True, exist_ok=True)
    result["model"].save(model_path)
    methods = practice.method_numbers(result["methods"])
    entry = {**records.header(args.name, args.profile, vars(args)), "model": model_path.name,
             "epochs_run": len(result["model"].metadata["history"]["loss"]),
             "distance_errors": result["distance_errors"], "networks": methods, "seconds": result["seconds"]}
    records.save(args.output, entry)
    for network, numbers in methods.items():
        print(f"{args.name} [{network}]: distance error median {result['distance_errors'][network]['median_deg']:.1f}°, "
              f"poses O(4) {numbers['o4_median_deg']:.2f}°, physical {numbers['physical_median_deg']:.2f}°")


if __name__ == "__main__":
    main()
