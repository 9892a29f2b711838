"""Score estimated poses against the true ones, up to what the data cannot determine.

Prints the mean and median angular error (degrees) after two alignments
(cryoposes.alignment):

  physical  one global rotation of the molecule, with or without the handedness flip: what
            the images cannot see, so the error a reconstruction inherits;
  O(4)      q ↦ a⊗q⊗b or a⊗q̄⊗b: what pairwise distances cannot see (the 2021 paper's
            score, whose printed E_OR values are medians).

and the seed report's losses Eq. 7 (ground truth, on pairwise distances) and Eq. 8 (mean error
in radians after the global rotation). Particles are matched by rlnImageName when both files
have it (the estimate may cover a subset, e.g. a distance model's test images), else by row.

Example:
    cryoposes evaluate particles/particles.star recovered.star --symmetry D2 --json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cryoposes.errors import InputError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("true", type=Path, metavar="TRUE.star", help="STAR file with the true poses")
    parser.add_argument("estimated", type=Path, metavar="ESTIMATED.star", help="STAR file with the estimated poses")
    parser.add_argument("--symmetry", default="C1", metavar="GROUP",
                        help="point group of the molecule, e.g. C1 (default), C4, D2: each pose may match any symmetry copy")
    parser.add_argument("--json", action="store_true", help="print the numbers as JSON")


def _matched(true_path: Path, estimated_path: Path):
    import numpy as np

    from cryoposes.star import read_pose_table

    truth, estimate = read_pose_table(true_path), read_pose_table(estimated_path)
    q_true, true_names = truth.quaternions, truth.names
    q_est, estimated_names = estimate.quaternions, estimate.names
    if true_names is not None and estimated_names is not None:
        rows = {name: i for i, name in enumerate(true_names)}
        missing = [name for name in estimated_names if name not in rows]
        if missing:
            raise InputError(f"{len(missing)} particle(s) of {estimated_path} are not in {true_path}, "
                             f"first {missing[0]!r}")
        if len(set(estimated_names)) != len(estimated_names):
            raise InputError(f"{estimated_path} lists some particles more than once")
        q_true = q_true[np.array([rows[name] for name in estimated_names], dtype=int)]
    elif len(q_true) != len(q_est):
        raise InputError(f"mismatched particle counts: {true_path} has {len(q_true)}, "
                         f"{estimated_path} has {len(q_est)}")
    if len(q_est) < 2:
        raise InputError(f"{estimated_path} holds {len(q_est)} pose(s); at least 2 are needed to align")
    return q_true, q_est


def main(args) -> int:
    from cryoposes import alignment, symmetry

    for path in (args.true, args.estimated):
        if not path.is_file():
            raise InputError(f"no STAR file at {path}")
    symmetry.symmetry_group(args.symmetry)  # InputError naming the accepted forms
    q_true, q_est = _matched(args.true, args.estimated)
    physical = alignment.align_physical(q_true, q_est, symmetry=args.symmetry)
    o4 = alignment.align_o4(q_true, q_est, symmetry=args.symmetry)
    losses = alignment.seed_losses(q_true, q_est)
    report = {
        "particles": int(len(q_est)),
        "symmetry": args.symmetry.upper(),
        "physical": physical.summary(),
        "o4": o4.summary(),
        "seed_losses": losses,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"{len(q_est)} particles, symmetry {report['symmetry']}")
    print(f"{'alignment':<34}{'mean (deg)':>12}{'median (deg)':>14}")
    flip = " + handedness flip" if physical.flipped else ""
    print(f"{'physical (G·R' + flip + ')':<34}{physical.mean:>12.4f}{physical.median:>14.4f}")
    conjugate = "A·Rᵀ·B" if o4.flipped else "A·R·B"
    print(f"{'O(4) (' + conjugate + ')':<34}{o4.mean:>12.4f}{o4.median:>14.4f}")
    print(f"seed report: Eq. 7 = {losses['eq7']:.4g}, Eq. 8 = {losses['eq8']:.4g} rad")
    return 0
