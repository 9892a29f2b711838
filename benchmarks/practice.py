"""How good is it in practice: learned distances, Euclidean distances and common lines on the same
noisy particles, at each noise level of a sweep (and with CTF and shifts), recorded for the book.

    python benchmarks/practice.py --name 5j0n-116px-half --profile paper --protein 5j0n \\
        --coverage half --size 116 --crop 72 --input-size 64 --snr-db inf -12.04 -6 \\
        --output results/practice.json

For each noise level (one record per level, named ``NAME SNR``):

1. the distance network: the clean model is trained from scratch (``--epochs``); every noisy
   level fine-tunes the clean model (or ``--initial-model``) on images with noise of that
   level, and the shifts and CTFs asked for, drawn on the fly (``--finetune-epochs``, half the
   learning rate): :func:`cryoposes.practice.noise_level`;
2. the test particles' poses by each method of :func:`cryoposes.practice.compare_methods`:
   learned and Euclidean distances on all test images (gauge resolved from the images, no
   ground truth), and on the first ``--common-lines-images`` test images, recovered from those
   images alone, learned distances and ASPIRE's common lines side by side;
3. O(4) and physical medians per method, seconds per method and stage, and the distance errors.

Resumable: a level whose record is already in ``--output`` with the same settings is skipped,
and models are kept in ``--models`` (``NAME-SNR.keras``) and reused when their training settings
match. Noise levels are in dB (``inf`` = clean); the 2021 paper's σ² on unit-variance images is
−10·log10(σ²) dB (σ² = 16 is −12.04 dB).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from pathlib import Path

import records
from cryoposes import batches, practice, siamese, training
from cryoposes.options import TURNS
from cryoposes.recovery import RecoveryConfig


def label(snr_db: float | None) -> str:
    """``clean`` or the SNR as written in record and model names, e.g. ``-12.04dB``."""
    return "clean" if snr_db is None else f"{snr_db:g}dB"


def cached_model(path: Path, config: training.TrainingConfig):
    """The model at ``path`` if it was trained with ``config`` (else None: it is trained again)."""
    if not path.exists():
        return None
    model = siamese.load(path)
    wanted = json.loads(json.dumps(dataclasses.asdict(config)))
    return model if model.metadata.get("config") == wanted else None


def run_level(args, snr_db, clean_model: Path | None) -> dict:
    """Train (or reuse) the model of one noise level and compare the methods on its test images."""
    config = training.TrainingConfig(
        embedding=args.embedding, epochs=args.epochs, batch_size=args.batch_size, seed=args.seed,
        patience=args.patience, crop=args.crop, input_size=args.input_size, learning_rate=args.learning_rate,
        augmentation=batches.Augmentation(rotate=True))
    initial = None
    if clean_model is not None:  # fine-tune the clean model
        config = dataclasses.replace(config, epochs=args.finetune_epochs, learning_rate=args.learning_rate / 2)
        initial = clean_model
    shift = args.shift * args.size
    model_path = Path(args.models) / f"{args.name}-{label(snr_db)}.keras"
    # The config the experiment will train with (it sets the augmentation from the data).
    final = dataclasses.replace(config, augmentation=dataclasses.replace(
        config.augmentation, snr_db=snr_db, shift=float(shift), ctf=bool(args.ctf)))
    cached = cached_model(model_path, final)
    level = practice.noise_level(args.protein, args.images, args.size, args.coverage, snr_db, config, initial=initial,
                                 trained=cached, shift=shift, ctf=args.ctf,
                                 common_lines_images=args.common_lines_images,
                                 recovery=RecoveryConfig(steps=args.recovery_steps), turns=args.turns, seed=args.seed,
                                 zoom=args.zoom, progress=True)
    result = level["experiment"]
    if cached is None:
        model_path.parent.mkdir(parents=True, exist_ok=True)
        result["model"].save(model_path)
    return {**practice.level_record(level, snr_db, ""),
            "model": {"file": model_path.name, "reused": cached is not None,
                      "fine_tuned_from": None if initial is None else Path(initial).name}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", required=True, help="record name prefix (records are 'NAME SNR')")
    parser.add_argument("--profile", default="measurement")
    parser.add_argument("--protein", default="5j0n")
    parser.add_argument("--coverage", default="half")
    parser.add_argument("--size", type=int, default=116)
    parser.add_argument("--zoom", type=float, default=1.0)
    parser.add_argument("--crop", type=int, default=None)
    parser.add_argument("--input-size", type=int, default=None)
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--snr-db", nargs="+", type=float, required=True, help="noise levels in dB; inf = clean")
    parser.add_argument("--shift", type=float, default=0.0, help="largest shift as a fraction of the box (e.g. 0.1)")
    parser.add_argument("--ctf", action="store_true", help="random CTF per particle (defocus 0.5–2.5 µm, astigmatic)")
    parser.add_argument("--epochs", type=int, default=40, help="epochs of the clean model")
    parser.add_argument("--finetune-epochs", type=int, default=15, help="epochs of each noisy level's fine-tuning")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--embedding", type=int, default=64)
    parser.add_argument("--patience", type=int, default=10)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--turns", type=int, default=TURNS)
    parser.add_argument("--recovery-steps", type=int, default=3000)
    parser.add_argument("--common-lines-images", type=int, default=500,
                        help="test images given to common lines (and to learned distances beside them)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--initial-model", default=None, metavar="MODEL.keras",
                        help="fine-tune every level from this model (same images and split) instead of training "
                             "NAME-clean.keras; e.g. the plain clean model for a run with CTF and shifts")
    parser.add_argument("--models", default="results/runs", help="folder of the trained models (reused on rerun)")
    parser.add_argument("--output", default="results/practice.json")
    args = parser.parse_args()
    if not 0 <= args.shift < 0.5:
        parser.error(f"--shift is a fraction of the box in [0, 0.5), got {args.shift}")
    levels = [None if math.isinf(value) and value > 0 else value for value in args.snr_db]
    if any(value is not None and not math.isfinite(value) for value in levels):
        parser.error("--snr-db takes finite dB values or inf (clean)")
    settings = {key: value for key, value in vars(args).items() if key != "snr_db"}
    done = json.loads(Path(args.output).read_text())["runs"] if Path(args.output).exists() else []
    start = Path(args.initial_model or Path(args.models) / f"{args.name}-clean.keras")
    for snr_db in levels:
        name = f"{args.name} {label(snr_db)}"
        if any(entry["name"] == name and {k: v for k, v in entry["settings"].items() if k != "snr_db"}
               == json.loads(json.dumps(settings)) for entry in done):
            print(f"{name}: already recorded, skipped")
            continue
        if args.initial_model is None and snr_db is not None and not start.exists():
            run_level(args, None, None)  # the clean model every noisy level starts from
        measured = run_level(args, snr_db, None if snr_db is None and args.initial_model is None else start)
        records.save(args.output, {**measured, **records.header(name, args.profile, {**settings, "snr_db": snr_db})})
        for method, numbers in {**measured["all_test_images"],
                                **{f"{k} ({measured['common_lines_images']})": v
                                   for k, v in measured["side_by_side"].items()}}.items():
            print(f"{name} [{method}]: O(4) {numbers['o4_median_deg']:.2f}°, physical "
                  f"{numbers['physical_median_deg']:.2f}°, {numbers['seconds']:.0f} s")


if __name__ == "__main__":
    main()
