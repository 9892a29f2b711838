"""The gauge with particles whose shifts are unknown: given, found by centring, or ignored.

    python benchmarks/gauge.py --name 5j0n-64px-ctf-shift --protein 5j0n --size 64 --images 1000 \\
        --snr-db -12 --shift 0.1 --ctf --pose-error 8 --seeds 0 1 2 --output results/gauge.json

Simulates particles (CTF, shifts up to ``--shift`` of the box, noise), then poses as a recovery
from distances leaves them: each true pose turned by a random rotation of about
``--pose-error`` degrees (the angle ``|N(0, σ)|``), then hidden behind a random gauge of the
distances, ``a ⊗ q̄ ⊗ b``. No network is trained: what is measured is the gauge alone.
:func:`cryoposes.gauge.resolve_gauge` then runs three ways on the same particles: with the true
shifts; with the shifts unknown and found by centring (``max_shift``); with the shifts ignored
(particles taken as centred). Recorded per way and per seed of the image pairs: the physical
median error, the score and its runner-up, seconds; and how far the centring is from the true
shifts once the one 3-D offset common to all particles is removed (root mean square, pixels).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import records
from cryoposes import alignment, gauge, rotations, simulation

WAYS = ("true shifts", "centred", "ignored")


def hidden_poses(truth, error_deg: float, seed: int):
    """The true poses turned by random rotations of angle |N(0, error)| and seen through a random
    gauge of pairwise distances (transposed branch, random left and right factors)."""
    rng = np.random.default_rng(seed)
    angles = np.radians(error_deg) * np.abs(rng.standard_normal(len(truth)))
    turned = rotations.quaternion_multiply(truth, rotations.axis_angle_to_quaternion(rng.standard_normal((len(truth), 3)), angles))
    a, b = rotations.random_quaternions(2, rng)
    return turned, rotations.quaternion_multiply(a, rotations.quaternion_multiply(rotations.quaternion_conjugate(turned), b))


def centring_error(found, data) -> float:
    """Root-mean-square distance (px) of found from true shifts after removing the projection of
    the best single 3-D offset (the centring's own origin)."""
    in_plane = np.transpose(rotations.quaternion_to_matrix(data.quaternions), (0, 2, 1))[:, :2, :].reshape(-1, 3)
    difference = (found - data.shifts).ravel()
    offset = np.linalg.lstsq(in_plane, difference, rcond=None)[0]
    return float(np.linalg.norm(difference - in_plane @ offset) / np.sqrt(len(found)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", required=True, help="record name (replaces a record of that name)")
    parser.add_argument("--profile", default="measurement")
    parser.add_argument("--protein", default="5j0n")
    parser.add_argument("--coverage", default="half")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--snr-db", type=float, default=-12.0)
    parser.add_argument("--shift", type=float, default=0.1, help="largest shift as a fraction of the box")
    parser.add_argument("--ctf", action="store_true")
    parser.add_argument("--pose-error", type=float, default=8.0, help="σ of the pose errors, degrees")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds of the image pairs")
    parser.add_argument("--seed", type=int, default=3, help="seed of the particles")
    parser.add_argument("--output", default="results/gauge.json")
    args = parser.parse_args()
    if not 0 <= args.shift < 0.5:
        parser.error(f"--shift is a fraction of the box in [0, 0.5), got {args.shift}")

    max_shift = args.shift * args.size
    data = simulation.simulate(args.protein, args.images, args.size, coverage=args.coverage, snr_db=args.snr_db,
                               shift=max_shift, ctf=args.ctf, seed=args.seed, progress=False)
    turned, hidden = hidden_poses(data.quaternions, args.pose_error, args.seed + 1)
    runs, centred_shifts = [], None
    for seed in args.seeds:
        for way in WAYS:
            options = {"true shifts": {"shifts": data.shifts}, "centred": {"max_shift": max_shift}, "ignored": {}}[way]
            start = time.perf_counter()
            found = gauge.resolve_gauge(data.images, hidden, ctf=data.ctf, pixel_size=data.pixel_size, seed=seed,
                                        **options)
            seconds = time.perf_counter() - start
            if way == "centred":  # the shifts the gauge found (the same for every seed of pairs)
                centred_shifts = found.shifts
            physical = alignment.align_physical(data.quaternions, found.quaternions).median
            runs.append({"way": way, "seed": seed, "physical_median_deg": physical, "score": found.score,
                         "runner_up": found.runner_up, "seconds": seconds})
            print(f"{args.name} seed {seed} [{way}]: physical {physical:.2f}°, score {found.score:.3f} "
                  f"(runner-up {found.runner_up:.3f}), {seconds:.0f} s", flush=True)
    entry = {**records.header(args.name, args.profile, vars(args)),
             "o4_median_deg": alignment.align_o4(data.quaternions, hidden).median,
             "poses_error_median_deg": alignment.align_physical(data.quaternions, turned).median,
             "true_shift_rms_px": float(np.sqrt(np.mean(np.sum(data.shifts**2, axis=1)))),
             "centring_error_rms_px": centring_error(centred_shifts, data),
             "runs": runs}
    records.save(args.output, entry)
    print(f"{args.name}: poses {entry['o4_median_deg']:.2f}° from the truth (O(4)); centring error "
          f"{entry['centring_error_rms_px']:.2f} px RMS (shifts {entry['true_shift_rms_px']:.2f} px RMS)")


if __name__ == "__main__":
    main()
