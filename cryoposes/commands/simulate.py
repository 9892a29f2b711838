"""Simulate a particle dataset y = C·S·P·x + n of a protein and write it to DIR.

PROTEIN is a registered name or the path of your own file: a density map (.mrc, .map; voxel
size from its header) or an atomic model (.pdb, .cif, .mmcif; turned into a map as the
registered models are). A file is recorded in the dataset by its name and SHA-256.

Draws N poses uniformly within the coverage, projects the protein in an S×S box (or a box of
S·Z pixels cropped to its central S with --zoom Z), shifts each
image by up to ± PIXELS (uniform in a disk), optionally applies a random CTF (defocus 0.5–2.5 µm,
300 kV), standardises the clean stack and adds white noise at the SNR given in dB (−12 dB is the
2021 paper's σ² = 16 on unit-variance images). Writes DIR/particles.mrcs and DIR/particles.star
(RELION columns, true poses in degrees). DIR must be new or empty unless --force, which replaces
it as a whole; nothing is written until the dataset is complete.

Examples:
    cryoposes simulate 5j0n -n 5000 --size 64 --snr-db -12 --seed 0 -o particles/
    cryoposes simulate my_map.mrc -n 1000 --size 64 --seed 0 -o sim/
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cryoposes.errors import InputError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from cryoposes.data import MAP_SUFFIXES, MODEL_SUFFIXES, PROTEINS
    from cryoposes.rotations import COVERAGES

    parser.add_argument("protein", metavar="PROTEIN",
                        help=f"a protein name ({', '.join(sorted(PROTEINS))}) or the path of a density map "
                             f"({', '.join(MAP_SUFFIXES)}) or an atomic model ({', '.join(MODEL_SUFFIXES)})")
    parser.add_argument("-n", type=int, required=True, metavar="N", help="number of particles")
    parser.add_argument("--size", type=int, required=True, metavar="S", help="image size in pixels (the box is S³)")
    parser.add_argument("--coverage", choices=list(COVERAGES), default="full",
                        help="viewing directions: full sphere (default), half (tilt ≤ 90°), quarter (the 2021 paper's)")
    parser.add_argument("--snr-db", type=float, default=None, metavar="X",
                        help="signal-to-noise ratio in dB (clean variance / noise variance); default: no noise")
    parser.add_argument("--shift", type=float, default=0.0, metavar="PIXELS",
                        help="largest random shift in pixels (default 0)")
    parser.add_argument("--ctf", action="store_true", help="apply a random CTF to each particle")
    parser.add_argument("--zoom", type=float, default=1.0, metavar="Z",
                        help="project in a box of S·Z pixels and keep the central S: the molecule fills "
                             "more of the image (default 1: the whole rotation-safe box)")
    parser.add_argument("--seed", type=int, required=True, metavar="K", help="random seed (same seed, same dataset)")
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="DIR", help="dataset folder to create")
    parser.add_argument("--force", action="store_true", help="replace DIR if it exists and is not empty")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def main(args) -> int:
    from cryoposes import data
    from cryoposes.particles import write_dataset
    from cryoposes.simulation import simulate

    # Check everything cheap before the long part, so bad arguments fail at once.
    if args.n <= 0:
        raise InputError(f"-n must be a positive number of particles, got {args.n}")
    if args.size < 8:
        raise InputError(f"--size must be at least 8 pixels, got {args.size}")
    if args.shift < 0 or args.shift >= args.size / 2:
        raise InputError(f"--shift must be between 0 and half the image size, got {args.shift}")
    if args.seed < 0:
        raise InputError(f"--seed must be non-negative, got {args.seed}")
    if not args.zoom >= 1:
        raise InputError(f"--zoom must be at least 1, got {args.zoom}")
    # InputError naming the known proteins and the accepted files; resolved once (a file is hashed).
    protein = data.resolve_protein(args.protein)
    output = args.output
    if output.exists() and (not output.is_dir() or (any(output.iterdir()) and not args.force)):
        raise InputError(f"{output} exists and is not an empty folder; choose another or pass --force to replace it")
    dataset = simulate(protein, args.n, args.size, coverage=args.coverage, snr_db=args.snr_db,
                       shift=args.shift, ctf=args.ctf, seed=args.seed, zoom=args.zoom, progress=not args.quiet)
    write_dataset(dataset, output, overwrite=args.force)
    print(f"wrote {len(dataset)} particles of {dataset.metadata['protein']} ({args.size}×{args.size} px, "
          f"{dataset.pixel_size:.3f} Å/px) to {output}/particles.mrcs and {output}/particles.star")
    return 0
