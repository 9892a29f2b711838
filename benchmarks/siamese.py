"""Speed of the Siamese distance network: training throughput and the distance matrix.

    python benchmarks/siamese.py                        # 64 px, B = 64 and 128, 1,650 test images
    python benchmarks/siamese.py --size 116 --batch-sizes 128 --images 1650

Training: steps of ``train_on_batch`` on all pairs of a batch of B images (after two warm-up
steps), reported as images/s (encoder passes) and pairs/s (B(B−1)/2 per step); the in-plane
rotation augmentation is timed on its own (it runs in the data pipeline, on the CPU). Distance
matrix: :func:`cryoposes.siamese.distance_matrix` on N images (N encoder passes, N(N−1)/2
pairs). Inputs are random images: speed does not depend on their content.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from cryoposes import __version__, batches, provenance, rotations, siamese, training


def training_throughput(size: int, batch_size: int, steps: int, normalization: str = "batch",
                        head: str = "rotation", seed: int = 0) -> dict:
    training.set_seed(seed)
    rng = np.random.default_rng(seed)
    images = rng.standard_normal((batch_size, size, size)).astype(np.float32)
    quaternions = rotations.random_quaternions(batch_size, rng)
    model = siamese.SiameseDistance(size, head=head, normalization=normalization)
    model.compile(optimizer="adam", loss=training.PairDistanceLoss("mae"))
    pair_batches = batches.PairBatches(images, quaternions, batch_size, seed)
    x, y = pair_batches[0]
    for _ in range(2):  # tracing and first-call allocation
        model.train_on_batch(x, y)
    start = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(x, y)
    seconds = (time.perf_counter() - start) / steps
    augmentation = batches.Augmentation(rotate=True)
    start = time.perf_counter()
    augmentation(images, quaternions, rng)
    rotate_seconds = time.perf_counter() - start
    pairs = batch_size * (batch_size - 1) // 2
    return {
        "size": size, "batch_size": batch_size, "normalization": normalization, "seconds_per_step": seconds,
        "images_per_s": batch_size / seconds, "pairs_per_s": pairs / seconds,
        "rotation_augmentation_images_per_s": batch_size / rotate_seconds,
    }


def distance_matrix_time(size: int, count: int, seed: int = 0) -> dict:
    training.set_seed(seed)
    images = np.random.default_rng(seed).standard_normal((count, size, size)).astype(np.float32)
    model = siamese.SiameseDistance(size)
    siamese.distance_matrix(model, images[:8], turns=1)  # tracing
    start = time.perf_counter()
    distances = siamese.distance_matrix(model, images, turns=1)  # one matrix: the cost per image
    seconds = time.perf_counter() - start
    return {"size": size, "images": count, "pairs": count * (count - 1) // 2, "seconds": seconds,
            "shape": list(distances.shape)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=64, help="image side in pixels (default 64)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 128], help="images per step")
    parser.add_argument("--normalizations", nargs="+", default=["batch", "group"], help="encoder normalisations")
    parser.add_argument("--steps", type=int, default=5, help="timed training steps per batch size")
    parser.add_argument("--images", type=int, default=1650, help="images in the distance matrix (paper's test set)")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args()

    results = {"version": __version__, "machine": provenance.machine(load=True), "training": [], "distance_matrix": None}
    print(f"cryoposes {__version__} on {results['machine']}")
    print(f"{'size':>5} {'norm':>6} {'B':>5} {'s/step':>8} {'images/s':>9} {'pairs/s':>10} {'rotate img/s':>13}")
    for normalization in args.normalizations:
        for batch_size in args.batch_sizes:
            row = training_throughput(args.size, batch_size, args.steps, normalization)
            results["training"].append(row)
            print(f"{row['size']:>5} {normalization:>6} {batch_size:>5} {row['seconds_per_step']:>8.3f} "
                  f"{row['images_per_s']:>9.1f} {row['pairs_per_s']:>10.0f} "
                  f"{row['rotation_augmentation_images_per_s']:>13.0f}")
    row = distance_matrix_time(args.size, args.images)
    results["distance_matrix"] = row
    print(f"distance matrix: {row['images']} images ({row['pairs']:,} pairs) at {row['size']} px "
          f"in {row['seconds']:.2f} s")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()
