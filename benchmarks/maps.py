"""From images to a map, measured: the gauge from the images, maps and their resolution.

    python benchmarks/maps.py --name 5j0n-116px-clean --profile paper --protein 5j0n --size 116 \\
        --images 5000 --crop 72 --input-size 64 --epochs 40 --output results/maps.json

Runs :func:`cryoposes.studies.experiment` (simulate, train, recover the test images' poses from
their learned distances) and :func:`cryoposes.studies.poses_to_maps` (Phase 1 and learned poses
made physical from the images, maps of true, distance-only and gauge-resolved poses, FSC against
the true map and between half maps; with ``--refine-iterations`` also the learned poses after
local refinement, next to the distance-only ones), and stores a record under ``--name`` (the
exact command, version, machine; errors, resolutions and times). ``--model`` reuses the model
of an earlier run with the same simulation and seed instead of training again. The chapter
"From poses to a map" renders the records.
"""

from __future__ import annotations

import argparse

import records
from cryoposes import alignment, batches, studies, training
from cryoposes.options import TURNS
from cryoposes.rotations import COVERAGES
from cryoposes.recovery import RecoveryConfig


def record(result: dict, study: dict, name: str, profile: str, args: dict) -> dict:
    """JSON-ready numbers of an experiment and its maps."""
    truth = study["test"].quaternions
    gauges = {}
    for source, poses in study["distance_only"].items():
        found = study["gauges"][source]
        gauges[source] = {
            "o4_median_deg": alignment.align_o4(truth, poses).median,
            "physical_median_before_deg": alignment.align_physical(truth, poses).median,
            "physical_median_deg": alignment.align_physical(truth, found.quaternions).median,
            "score": found.score, "runner_up": found.runner_up, "transposed": found.transposed,
            "seconds": study["gauge_seconds"][source],
        }
    maps = {source: {"physical_median_deg": scored["physical"].median, "o4_median_deg": scored["o4"].median,
                     "resolution_truth": scored["resolution_truth"], "resolution_half": scored["resolution_half"],
                     "reconstruction_seconds": scored["seconds"], "fsc_truth": scored["fsc_truth"].as_dict(),
                     "fsc_half": scored["fsc_half"].as_dict()}
            for source, scored in study["maps"].items()}
    entry = {
        **records.header(name, profile, args),
        "test_images": len(study["test"]),
        "pixel_size": study["test"].pixel_size,
        "timings_s": result["timings"],
        "gauge": gauges,
        "maps": maps,
    }
    if "refinement" in study:
        entry["refinement"] = {"seconds": study["refine_seconds"], "history": study["refinement"].history}
    return entry


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--name", required=True)
    parser.add_argument("--profile", default="measurement")
    parser.add_argument("--protein", default="5j0n")
    parser.add_argument("--coverage", default="full", choices=list(COVERAGES))
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--size", type=int, default=116)
    parser.add_argument("--zoom", type=float, default=1.0)
    parser.add_argument("--crop", type=int, default=None)
    parser.add_argument("--input-size", type=int, default=None)
    parser.add_argument("--snr-db", type=float, default=None)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--turns", type=int, default=TURNS)
    parser.add_argument("--recovery-steps", type=int, default=3000)
    parser.add_argument("--symmetry", default="C1")
    parser.add_argument("--init-model", default=None, metavar="MODEL.keras",
                        help="fine-tune this model (same simulated images and seed), e.g. a clean run's")
    parser.add_argument("--save-model", default=None, metavar="MODEL.keras", help="keep the trained model here")
    parser.add_argument("--model", default=None, metavar="MODEL.keras",
                        help="use this model, trained by an earlier run with the same simulation and seed, instead "
                             "of training")
    parser.add_argument("--refine-iterations", type=int, default=0,
                        help="also refine the learned poses locally (projection matching), this many iterations")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default="results/maps.json")
    args = parser.parse_args()

    config = training.TrainingConfig(epochs=args.epochs, batch_size=args.batch_size, seed=args.seed,
                                     crop=args.crop, input_size=args.input_size, learning_rate=args.learning_rate,
                                     augmentation=batches.Augmentation(rotate=True))
    recovery = RecoveryConfig(steps=args.recovery_steps)
    result = studies.experiment(args.protein, args.images, args.size, coverage=args.coverage, snr_db=args.snr_db, config=config,
                                recovery=recovery, symmetry=args.symmetry, seed=args.seed, zoom=args.zoom,
                                progress=True, initial=args.init_model, turns=args.turns, trained=args.model)
    if args.save_model:
        result["model"].save(args.save_model)
    study = studies.poses_to_maps(result, args.protein, zoom=args.zoom, recovery=recovery, symmetry=args.symmetry,
                                  seed=args.seed, progress=True, refine_iterations=args.refine_iterations)
    entry = record(result, study, args.name, args.profile, vars(args))
    records.save(args.output, entry)
    for source, numbers in entry["maps"].items():
        print(f"{args.name} [{source}]: physical median {numbers['physical_median_deg']:.2f}°, "
              f"{numbers['resolution_truth']:.1f} Å against the truth (0.5), "
              f"{numbers['resolution_half']:.1f} Å between half maps (0.143)")


if __name__ == "__main__":
    main()
