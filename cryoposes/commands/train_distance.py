"""Train the Siamese distance network d_p on a particle dataset.

Splits the images of DIR (read with cryoposes.particles.read_dataset) into disjoint train /
validation / test sets (the paper's 2,512 / 838 / 1,650 proportions by default), trains on all
pairs of each batch of training images with on-the-fly augmentation, stops early on the
validation loss, and saves the model to MODEL.keras. The split is stored inside the model, so
`cryoposes recover DIR --distance MODEL.keras` recovers the poses of the test images only.

An interrupted run resumes from its last finished epoch when started again with the same
arguments (state kept in MODEL.keras.backup/ until the model is written).

Examples (the second continues the clean model on noisy images, which learns noise far
faster than starting from random weights):
    cryoposes train-distance particles/ -o clean.keras --crop 72 --input-size 64 --epochs 40 --seed 0
    cryoposes train-distance particles/ -o noisy.keras --crop 72 --input-size 64 --epochs 40 \
        --snr-db -12 --learning-rate 5e-4 --init-model clean.keras --seed 0
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from cryoposes.errors import InputError


from cryoposes.options import HEADS, LOSSES, NORMALIZATIONS, TRAINING_SAMPLINGS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", metavar="DIR", help="particle dataset folder (particles.mrcs + particles.star)")
    parser.add_argument("-o", "--output", metavar="MODEL.keras", required=True, help="where to save the model")
    parser.add_argument("--epochs", type=int, default=50, help="maximum number of epochs (default 50)")
    parser.add_argument("--embedding", type=int, default=64, metavar="K", help="embedding size (default 64)")
    parser.add_argument("--head", choices=HEADS, default=HEADS[0],
                        help="distance head: rotation = acos((3c-1)/2) (default), cosine = the paper's "
                             "2·acos(c), euclidean = the seed's ‖e_i − e_j‖")
    parser.add_argument("--loss", choices=LOSSES, default=LOSSES[0],
                        help="pair loss: mae (default, the paper's code), mse (the seed), or chordal "
                             "(squared difference of cos d)")
    parser.add_argument("--normalization", choices=NORMALIZATIONS, default=NORMALIZATIONS[0],
                        help="encoder normalisation: batch (default; statistics recomputed after "
                             "training), group or none")
    parser.add_argument("--crop", type=int, default=None, metavar="PX",
                        help="the encoder sees the central PX pixels of each image (default: all)")
    parser.add_argument("--input-size", type=int, default=None, metavar="PX",
                        help="resize the (cropped) images to PX pixels, anti-aliased, before the "
                             "convolutions: averages noise away, faster steps (default: no resizing)")
    parser.add_argument("--init-model", metavar="MODEL.keras", default=None,
                        help="fine-tune this model instead of starting from random weights (same "
                             "architecture, trained on this dataset with the same seed and split), "
                             "e.g. a clean-image model continued with --snr-db")
    parser.add_argument("--batch-size", type=int, default=64, metavar="B",
                        help="images per step; trains on their B(B-1)/2 pairs (default 64)")
    parser.add_argument("--learning-rate", type=float, default=1e-3, help="Adam learning rate (default 1e-3)")
    parser.add_argument("--sampling", choices=TRAINING_SAMPLINGS, default=TRAINING_SAMPLINGS[0],
                        help="pairs trained on: all pairs of a batch (default), a fixed random fraction "
                             "(the paper), or weights flattening the d_q histogram")
    parser.add_argument("--pair-fraction", type=float, default=0.01, help="fraction for --sampling fraction")
    parser.add_argument("--snr-db", type=float, default=None, metavar="X",
                        help="add white noise at this SNR (dB) on the fly (default: none)")
    parser.add_argument("--shift", type=float, default=0.0, metavar="PX",
                        help="random shifts of up to PX pixels on the fly, uniform in the disk (default 0)")
    parser.add_argument("--ctf", action="store_true",
                        help="apply a random CTF on the fly, drawn as `cryoposes simulate --ctf` draws them")
    parser.add_argument("--rotate", action=argparse.BooleanOptionalAction, default=True,
                        help="in-plane rotation augmentation with exact pose update (default on)")
    parser.add_argument("--split", type=float, nargs=2, default=None, metavar=("TRAIN", "VALIDATION"),
                        help="fractions of images for training and validation; the rest is test "
                             "(default 0.5024 0.1676, the paper's 2,512 / 838 / 1,650)")
    parser.add_argument("--patience", type=int, default=10, help="early-stopping patience in epochs (default 10)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split, weights and augmentation")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _check(args) -> Path:
    output = Path(args.output)
    if output.suffix != ".keras":
        raise InputError(f"the model file must end in .keras, got {output}")
    if not output.parent.is_dir():
        raise InputError(f"output folder {output.parent} does not exist")
    if not Path(args.dataset).is_dir():
        raise InputError(f"dataset folder {args.dataset} does not exist")
    if args.init_model is not None and not Path(args.init_model).is_file():
        raise InputError(f"initial model {args.init_model} does not exist")
    for name in ("epochs", "embedding", "batch_size", "patience", "crop", "input_size"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise InputError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if args.batch_size < 2:
        raise InputError("--batch-size must be at least 2 (pairs need two images)")
    if args.shift < 0:
        raise InputError(f"--shift must be non-negative, got {args.shift}")
    if not args.learning_rate > 0:
        raise InputError(f"--learning-rate must be positive, got {args.learning_rate}")
    return output


def main(args) -> int:
    output = _check(args)
    from cryoposes import __version__, batches, training
    from cryoposes.particles import read_dataset

    dataset = read_dataset(args.dataset)
    if not dataset.has_poses:
        raise InputError(f"{args.dataset} has no poses (no rlnAngleRot/Tilt/Psi): training needs them")
    images = dataset.images
    if dataset.metadata.get("snr_db") is not None and args.rotate:
        print("note: the dataset is noisy; rotating noisy images interpolates (smooths) their noise. "
              "Prefer a clean dataset with --snr-db, or --no-rotate.", file=sys.stderr)
    fractions = None if args.split is None else tuple(args.split)
    split = training.split_indices(len(images), fractions, seed=args.seed)
    augmentation = batches.Augmentation(rotate=args.rotate, ctf=args.ctf, pixel_size=float(dataset.pixel_size),
                                        shift=args.shift, snr_db=args.snr_db)
    config = training.TrainingConfig(
        embedding=args.embedding, head=args.head, loss=args.loss, normalization=args.normalization, epochs=args.epochs,
        batch_size=args.batch_size, learning_rate=args.learning_rate, sampling=args.sampling,
        pair_fraction=args.pair_fraction, patience=args.patience, seed=args.seed,
        crop=args.crop, input_size=args.input_size, augmentation=augmentation)
    backup = output.with_name(output.name + ".backup")
    metadata = {
        "dataset": os.path.abspath(args.dataset),
        "dataset_metadata": {k: v for k, v in dataset.metadata.items() if isinstance(v, (str, int, float, bool, type(None)))},
        "dataset_names_sha256": dataset.names_sha256(),
        "command": " ".join(["cryoposes", "train-distance", *sys.argv[2:]]) if sys.argv[1:2] == ["train-distance"] else None,
        "version": __version__,
    }
    model = training.train(images, dataset.quaternions, split, config, backup_dir=backup,
                          progress=not args.quiet, metadata=metadata, initial=args.init_model)
    temporary = output.with_name(f".{output.stem}.partial.keras")
    model.save(temporary)
    os.replace(temporary, output)
    shutil.rmtree(backup, ignore_errors=True)
    history = model.metadata["history"]
    best = min(history.get("val_loss", [float("nan")]))
    print(f"saved {output}: {len(history['loss'])} epochs, best validation loss {best:.4f} ({args.loss}); "
          f"test images: {len(split['test'])}")
    return 0
