"""Refine poses and shifts locally by projection matching against gold-standard half maps.

Reads the images, shifts and CTFs of DIR (particles.mrcs and particles.star) and the poses of
FILE.star (from `cryoposes recover`, paired by rlnImageName like `cryoposes reconstruct`; its
origins, when present, replace the dataset's shifts). The poses must be physical (the gauge
resolved, as `recover` writes them by default): a map is made from them. Each iteration splits
the particles in two fixed halves, makes a map from each, and moves every pose within a few
degrees, and its shift within a pixel, to where the image best matches the projection of its
own half's map (cryoposes.refinement). Frequencies beyond the half maps' FSC 0.143 resolution
are not used.

The output is the dataset STAR file's rows of the refined particles (every column kept, in
FILE.star's order) with rlnAngleRot/Tilt/Psi and rlnOriginX/YAngst replaced; its
data_cryoposes block keeps FILE.star's (e.g. the gauge) and adds the half-map resolution
before and after. Keep the input file: the distance-only poses are the method's
own result, the refined ones what a refinement makes of them. Written whole or not at all.

Example:
    cryoposes refine particles/ --poses recovered.star -o refined.star --iterations 3
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cryoposes.errors import InputError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("directory", type=Path, metavar="DIR|FILE.star",
                        help="dataset folder with particles.star, or a particle STAR file")
    parser.add_argument("--pixel-size", type=float, default=None, metavar="Å",
                        help="bring every particle to this pixel size (needed when optics groups differ)")
    parser.add_argument("--poses", type=Path, required=True, metavar="FILE.star", help="STAR file with the starting poses")
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="OUT.star", help="STAR file to write")
    parser.add_argument("--iterations", type=int, default=3, metavar="K", help="rounds of reconstruct-then-match (default 3)")
    parser.add_argument("--angle-step", type=float, default=2.0, metavar="DEG",
                        help="first search step in degrees, halved at each level (default 2)")
    parser.add_argument("--shift-step", type=float, default=1.0, metavar="PX",
                        help="first shift step in pixels, halved at each level; 0 keeps the shifts (default 1)")
    parser.add_argument("--levels", type=int, default=4, metavar="K", help="search levels per iteration (default 4)")
    parser.add_argument("--symmetry", default="C1", metavar="GROUP", help="point group imposed on the maps (default C1)")
    parser.add_argument("--seed", type=int, default=0, metavar="K", help="seed of the half split (default 0)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _check(args) -> None:
    if args.output.suffix != ".star":
        raise InputError(f"the output must be a .star file, got {args.output}")
    if args.output.is_dir():
        raise InputError(f"{args.output} is a folder; give a .star file name")
    if not args.poses.is_file():
        raise InputError(f"no STAR file at {args.poses}")
    if not args.directory.exists():
        raise InputError(f"no dataset folder or STAR file at {args.directory}")
    if args.iterations < 1 or args.levels < 1:
        raise InputError(f"--iterations and --levels must be positive, got {args.iterations} and {args.levels}")
    if not args.angle_step > 0 or not args.shift_step >= 0:
        raise InputError(f"--angle-step must be positive and --shift-step non-negative, "
                         f"got {args.angle_step} and {args.shift_step}")


def main(args) -> int:
    _check(args)
    from cryoposes import particles, refinement, star, symmetry
    from cryoposes.commands.reconstruct import paired_particles

    symmetry.symmetry_group(args.symmetry)  # InputError naming the accepted forms
    table = star.read_pose_table(args.poses)
    if table.metadata.get("gauge") == "distances":
        raise InputError(f"the poses of {args.poses} are in the gauge of distances only (recovered with "
                         "--no-gauge): resolve the gauge first, e.g. `cryoposes recover` without --no-gauge")
    dataset = paired_particles(particles.read_dataset(args.directory, args.pixel_size), args.poses)
    if len(dataset) < 2:
        raise InputError(f"refinement needs at least 2 particles, {args.poses} pairs {len(dataset)}")
    result = refinement.refine(dataset.images, dataset.quaternions, dataset.shifts, dataset.ctf, dataset.pixel_size,
                               iterations=args.iterations, symmetry=args.symmetry, angle_step=args.angle_step,
                               shift_step=args.shift_step, levels=args.levels, seed=args.seed,
                               progress=not args.quiet)
    before, after = result.history[0]["resolution_half"], result.history[-1]["resolution_half"]
    metadata = {**table.metadata, "refinement": "projection matching", "refinement_iterations": args.iterations,
                "refinement_half_map_resolution_before": before, "refinement_half_map_resolution_after": after}
    star.write_poses(args.output, result.quaternions, image_names=dataset.names(), metadata=metadata,
                     shifts=result.shifts * dataset.pixel_size, table=dataset.table, optics=dataset.optics)
    print(f"refined {len(dataset)} poses in {args.iterations} iteration(s): half maps {before:.2f} Å -> "
          f"{after:.2f} Å (FSC 0.143) -> {args.output}")
    return 0
