"""Train the Siamese distance network d_p on one or several particle datasets.

Splits the images of each DIR (read with cryoposes.particles.read_dataset) into disjoint train /
validation / test sets (the paper's 2,512 / 838 / 1,650 proportions by default), trains on all
pairs of each batch of training images with on-the-fly augmentation, stops early on the
validation loss, and saves the model to MODEL.keras. The split is stored inside the model, so
`cryoposes recover DIR --distance MODEL.keras` recovers the poses of the test images only when
DIR is one of the datasets it was trained on (all images otherwise).

Several datasets (several proteins, say) are trained on together; they must have the same image
size. Each is split as it would be alone. --scale and --blur augment what differs between
proteins and datasets (size in the box or pixel size; resolution), so that the network cannot
learn one molecule's size and detail.

An interrupted run resumes from its last finished epoch when started again with the same
arguments (state kept in MODEL.keras.backup/ until the model is written).

Examples (the second continues the clean model on noisy images, which learns noise far
faster than starting from random weights):
    cryoposes train-distance particles/ -o clean.keras --crop 72 --input-size 64 --epochs 40 --seed 0
    cryoposes train-distance particles/ -o noisy.keras --crop 72 --input-size 64 --epochs 40 \
        --snr-db -12 --learning-rate 5e-4 --init-model clean.keras --seed 0
    cryoposes train-distance 7bv2/ 7q5b/ 6x18/ 5uak/ 8qjx/ -o four.keras --scale 0.15 --blur 1.5
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
    parser.add_argument("datasets", metavar="DIR", nargs="+",
                        help="particle dataset folder(s) (particles.mrcs + particles.star), or STAR files")
    parser.add_argument("--pixel-size", type=float, default=None, metavar="Å",
                        help="bring every particle to this pixel size (needed when optics groups differ)")
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
    parser.add_argument("--scale", type=float, default=0.0, metavar="S",
                        help="magnify each image by a factor uniform in [1-S, 1+S] on the fly (default 0)")
    parser.add_argument("--blur", type=float, default=0.0, metavar="PX",
                        help="low-pass each image with a Gaussian of width uniform in [0, PX] pixels on the "
                             "fly (default 0)")
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
    for dataset in args.datasets:
        if not Path(dataset).exists():
            raise InputError(f"dataset {dataset} does not exist")
    if len(set(map(os.path.abspath, args.datasets))) != len(args.datasets):
        raise InputError("a dataset is given twice")
    if args.init_model is not None and not Path(args.init_model).is_file():
        raise InputError(f"initial model {args.init_model} does not exist")
    for name in ("epochs", "embedding", "batch_size", "patience", "crop", "input_size"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise InputError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if args.batch_size < 2:
        raise InputError("--batch-size must be at least 2 (pairs need two images)")
    for name in ("shift", "blur"):
        if not getattr(args, name) >= 0:
            raise InputError(f"--{name} must be non-negative, got {getattr(args, name)}")
    if not 0 <= args.scale < 1:
        raise InputError(f"--scale must be in [0, 1), got {args.scale}")
    if not args.learning_rate > 0:
        raise InputError(f"--learning-rate must be positive, got {args.learning_rate}")
    return output


def _plain(metadata: dict) -> dict:
    return {key: value for key, value in metadata.items() if isinstance(value, (str, int, float, bool, type(None)))}


def main(args) -> int:
    output = _check(args)
    import numpy as np

    from cryoposes import __version__, batches, training
    from cryoposes.particles import read_dataset

    datasets = [read_dataset(path, args.pixel_size) for path in args.datasets]
    for path, dataset in zip(args.datasets, datasets):
        if not dataset.has_poses:
            raise InputError(f"{path} has no poses (no rlnAngleRot/Tilt/Psi): training needs them")
        if dataset.size != datasets[0].size:
            raise InputError(f"{path} has {dataset.size} px images, {args.datasets[0]} has {datasets[0].size} px: "
                             "datasets trained together need one image size")
        if dataset.metadata.get("snr_db") is not None and args.rotate:
            print(f"note: {path} is noisy; rotating noisy images interpolates (smooths) their noise. "
                  "Prefer a clean dataset with --snr-db, or --no-rotate.", file=sys.stderr)
    pixel_sizes = {float(dataset.pixel_size) for dataset in datasets}
    if args.ctf and len(pixel_sizes) > 1:
        raise InputError(f"--ctf needs one pixel size, the datasets have {sorted(pixel_sizes)} Å")
    fractions = None if args.split is None else tuple(args.split)
    offsets = np.cumsum([0, *(len(dataset) for dataset in datasets)])
    split = training.joint_split([len(dataset) for dataset in datasets], fractions, seed=args.seed)
    images = np.concatenate([dataset.images for dataset in datasets])
    quaternions = np.concatenate([dataset.quaternions for dataset in datasets])
    augmentation = batches.Augmentation(rotate=args.rotate, scale=args.scale, blur=args.blur, ctf=args.ctf,
                                        pixel_size=float(datasets[0].pixel_size), shift=args.shift,
                                        snr_db=args.snr_db)
    config = training.TrainingConfig(
        embedding=args.embedding, head=args.head, loss=args.loss, normalization=args.normalization, epochs=args.epochs,
        batch_size=args.batch_size, learning_rate=args.learning_rate, sampling=args.sampling,
        pair_fraction=args.pair_fraction, patience=args.patience, seed=args.seed,
        crop=args.crop, input_size=args.input_size, augmentation=augmentation)
    backup = output.with_name(output.name + ".backup")
    described = [{"dataset": os.path.abspath(path), "dataset_metadata": _plain(dataset.metadata),
                  "dataset_names_sha256": dataset.names_sha256(), "images": len(dataset), "offset": int(offset)}
                 for path, dataset, offset in zip(args.datasets, datasets, offsets)]
    metadata = {
        # One dataset: its description at the top level; several: the list, each with its offset.
        **({key: described[0][key] for key in ("dataset", "dataset_metadata", "dataset_names_sha256")}
           if len(datasets) == 1 else {"datasets": described}),
        "command": " ".join(["cryoposes", "train-distance", *sys.argv[2:]]) if sys.argv[1:2] == ["train-distance"] else None,
        "version": __version__,
    }
    model = training.train(images, quaternions, split, config, backup_dir=backup,
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
