"""Reconstruct a 3-D map from a particle dataset and poses, and write it as an MRC file.

Reads the images, shifts and CTFs of DIR (particles.mrcs and particles.star, as written by
`cryoposes simulate` or RELION) and the poses of FILE.star (from `cryoposes recover`, or any
RELION STAR file with rlnImageName and rlnAngleRot/Tilt/Psi; origins in it, when present,
replace the dataset's). Particles are paired by rlnImageName: FILE.star may list any subset of
the stack, in any order. The map is the regularised least-squares solution of the forward
model (cryoposes.reconstruction), on a CUDA GPU ASTRA's CGLS when there is no CTF.

With --half-maps, two more maps are written from a fixed random split of the particles
(MAP_half1.mrc, MAP_half2.mrc), and their FSC resolution (0.143 criterion) is printed. Files
are written whole or not at all.

Example:
    cryoposes reconstruct particles/ --poses recovered.star -o map.mrc --half-maps --symmetry D2
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
    parser.add_argument("--poses", type=Path, required=True, metavar="FILE.star", help="STAR file with the poses")
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="MAP.mrc", help="map to write")
    parser.add_argument("--half-maps", action="store_true", help="also write two half maps and print their FSC resolution")
    parser.add_argument("--symmetry", default="C1", metavar="GROUP", help="point group imposed on the map (default C1)")
    parser.add_argument("--regularization", type=float, default=0.1, metavar="λ",
                        help="Wiener-like damping, a fraction of the mean sampling density (default 0.1)")
    parser.add_argument("--method", choices=("auto", "fourier", "astra"), default="auto",
                        help="fourier (CPU), astra (CUDA GPU, no CTF) or auto (default)")
    parser.add_argument("--seed", type=int, default=0, metavar="K", help="seed of the half-map split (default 0)")


def _check(args) -> None:
    if args.output.suffix not in (".mrc", ".map"):
        raise InputError(f"the map must be a .mrc or .map file, got {args.output}")
    if not args.output.parent.is_dir():
        raise InputError(f"output folder {args.output.parent} does not exist")
    if not args.poses.is_file():
        raise InputError(f"no STAR file at {args.poses}")
    if not args.directory.exists():
        raise InputError(f"no dataset folder or STAR file at {args.directory}")
    if not args.regularization >= 0:
        raise InputError(f"--regularization must be non-negative, got {args.regularization}")


def paired_particles(dataset, poses_path: Path):
    """The dataset's particles listed in ``poses_path``, in its order, with its poses (and its
    shifts where it has origins)."""
    import numpy as np

    from cryoposes import star

    table = star.read_pose_table(poses_path)
    if table.names is None:
        if len(table.quaternions) != len(dataset):
            raise InputError(f"{poses_path} has no rlnImageName and {len(table.quaternions)} poses for "
                             f"{len(dataset)} particles")
        rows = np.arange(len(dataset))
    else:
        index = {name: i for i, name in enumerate(dataset.names())}
        missing = [name for name in table.names if name not in index]
        if missing:
            raise InputError(f"{len(missing)} pose(s) of {poses_path} are for images that are not in the "
                             f"stack, first {missing[0]!r}")
        rows = np.array([index[name] for name in table.names], dtype=int)
    subset = dataset.subset(rows)
    subset.quaternions = table.quaternions
    if table.shifts is not None:
        subset.shifts = table.shifts / subset.pixel_size
    return subset


def main(args) -> int:
    _check(args)
    from cryoposes import fsc, particles, reconstruction, symmetry, volumes

    symmetry.symmetry_group(args.symmetry)  # InputError naming the accepted forms
    dataset = paired_particles(particles.read_dataset(args.directory, args.pixel_size), args.poses)
    options = dict(symmetry=args.symmetry, regularization=args.regularization, method=args.method)
    arguments = (dataset.images, dataset.quaternions, dataset.shifts, dataset.ctf, dataset.pixel_size)
    volume = reconstruction.reconstruct(*arguments, **options)
    outputs = {args.output: volume}
    if args.half_maps:
        first, second, _ = reconstruction.half_maps(*arguments, seed=args.seed, **options)
        stem, suffix = args.output.with_suffix(""), args.output.suffix
        outputs[Path(f"{stem}_half1{suffix}")] = first
        outputs[Path(f"{stem}_half2{suffix}")] = second
    volumes.save_maps(outputs)
    print(f"reconstructed {len(dataset)} particles ({volume.box}³ voxels of {volume.voxel_size:.3f} Å, "
          f"symmetry {args.symmetry.upper()}) -> {args.output}")
    if args.half_maps:
        resolution = fsc.fsc(outputs[Path(f"{stem}_half1{suffix}")], outputs[Path(f"{stem}_half2{suffix}")]).resolution()
        print(f"half maps -> {stem}_half1{suffix}, {stem}_half2{suffix}; FSC 0.143 resolution {resolution:.2f} Å")
    return 0
