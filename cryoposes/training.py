"""Training the Siamese distance network on images of known pose.

**All pairs of a batch.** :class:`~cryoposes.siamese.SiameseDistance` embeds a batch of B images
once and returns the B×B matrix of head outputs, so one step trains on B(B−1)/2 pairs for B
encoder passes. Targets are packed as ``y = [q | W]`` (quaternions (B, 4) and a pair-weight
matrix (B, B), from :class:`cryoposes.batches.PairBatches`); :class:`PairDistanceLoss` computes
``Σ W·err / Σ W`` with ``err = |d_p − d_q|`` (MAE, the 2021 paper's code), ``(d_p − d_q)²``
(MSE, the seed report) or the squared difference of their cosines
(:data:`cryoposes.options.LOSSES`).

**Seeding and resuming.** Every batch is a pure function of its epoch and index
(:mod:`cryoposes.batches`), so a run resumed after an interruption equals an uninterrupted one;
the best weights and the loss history are kept beside the checkpoint.

**The split.** Images are split by image into train / validation / test sets
(:func:`split_indices`, the paper's proportions by default). The split is saved inside the
model, so recovery runs on test images that no training or validation pair contained
(:func:`cryoposes.siamese.test_indices`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import asdict, dataclass, field

import numpy as np

from cryoposes.backend import keras, ops

from cryoposes import rotations
from cryoposes.batches import Augmentation, PairBatches
from cryoposes.callbacks import EpochSync, ProgressBar
from cryoposes.errors import InputError
from cryoposes.options import LOSSES
from cryoposes.siamese import SiameseDistance, as_model

__all__ = [
    "PAPER_SPLIT",
    "PairDistanceLoss",
    "split_indices",
    "joint_split",
    "TrainingConfig",
    "recompute_batch_statistics",
    "set_seed",
    "train",
]

#: The 2021 paper's split of 5,000 images into train / validation / test.
PAPER_SPLIT = (2512, 838, 1650)


@keras.saving.register_keras_serializable(package="cryoposes")
class PairDistanceLoss(keras.losses.Loss):
    """Weighted pair loss on a batch's (B, B) matrix of predicted distances ``d_p``.

    ``y_true`` packs the quaternions and the pair weights: ``[q (B, 4) | W (B, B)]``; the value
    is ``Σ_ij W_ij·err(d_p_ij, d_q_ij) / Σ_ij W_ij``. Each row returns its share so that Keras'
    mean over the batch is that ratio.

    Parameters
    ----------
    kind : str, optional
        ``err``, one of :data:`cryoposes.options.LOSSES`.
    name : str, optional

    Raises
    ------
    ValueError
        Unknown ``kind``.

    Examples
    --------
    >>> from cryoposes.training import PairDistanceLoss
    >>> y_true = np.concatenate([np.tile([1.0, 0, 0, 0], (3, 1)), 1 - np.eye(3)], axis=1)
    >>> round(float(PairDistanceLoss("mae")(y_true, np.full((3, 3), 0.5))), 2)
    0.5
    """

    def __init__(self, kind: str = "mae", name: str = "pair_distance_loss", **kwargs):
        if kind not in LOSSES:
            raise ValueError(f"unknown loss {kind!r}; choose one of {LOSSES}")
        super().__init__(name=name, **kwargs)
        self.kind = kind

    def call(self, y_true, y_pred):
        quaternions = y_true[:, :4]
        weights = y_true[:, 4:]
        target = rotations.pairwise_geodesic_distances(quaternions, xp=ops)
        if self.kind == "chordal":
            difference = ops.cos(y_pred) - ops.cos(target)
        else:
            difference = y_pred - target
        error = ops.abs(difference) if self.kind == "mae" else difference * difference
        batch = ops.cast(ops.shape(weights)[0], weights.dtype)
        return ops.sum(weights * error, axis=1) * batch / ops.maximum(ops.sum(weights), 1e-12)

    def get_config(self):
        return {"kind": self.kind, "name": self.name}


def split_indices(n: int, fractions=None, seed: int = 0) -> dict:
    """Disjoint random train / validation / test image indices.

    Parameters
    ----------
    n : int
        Number of images.
    fractions : tuple of float, optional
        (train, validation); the rest is test. Default: the paper's :data:`PAPER_SPLIT`.
    seed : int, optional

    Returns
    -------
    dict
        ``"train"``, ``"validation"``, ``"test"`` → sorted int arrays of indices.

    Raises
    ------
    ValueError
        Fractions not positive or summing to 1 or more, or fewer than 2 images in a set.

    Examples
    --------
    >>> from cryoposes.training import split_indices
    >>> {name: len(indices) for name, indices in split_indices(5000).items()}
    {'train': 2512, 'validation': 838, 'test': 1650}
    """
    if fractions is None:
        fractions = (PAPER_SPLIT[0] / sum(PAPER_SPLIT), PAPER_SPLIT[1] / sum(PAPER_SPLIT))
    train_fraction, validation_fraction = fractions
    if train_fraction <= 0 or validation_fraction <= 0 or train_fraction + validation_fraction >= 1:
        raise ValueError(f"split fractions must be positive and sum below 1, got {fractions}")
    order = np.random.default_rng([seed, 3]).permutation(n)
    n_train = int(round(train_fraction * n))
    n_validation = int(round(validation_fraction * n))
    if n_train < 2 or n_validation < 2 or n - n_train - n_validation < 2:
        raise ValueError(f"{n} images are too few to split into train/validation/test sets")
    return {
        "train": np.sort(order[:n_train]),
        "validation": np.sort(order[n_train:n_train + n_validation]),
        "test": np.sort(order[n_train + n_validation:]),
    }


def joint_split(counts, fractions=None, seed: int = 0) -> dict:
    """The split of several datasets stacked one after the other, each split as it would be alone.

    Parameters
    ----------
    counts : sequence of int
        Number of images of each dataset, in stacking order.
    fractions : tuple of float, optional
        As :func:`split_indices`.
    seed : int, optional

    Returns
    -------
    dict
        ``"train"``, ``"validation"``, ``"test"`` → sorted int arrays of indices into the stack.

    Examples
    --------
    >>> from cryoposes.training import joint_split, split_indices
    >>> joint = joint_split([100, 50])
    >>> bool(np.array_equal(joint["test"][joint["test"] >= 100] - 100, split_indices(50)["test"]))
    True
    """
    offsets = np.cumsum([0, *counts])
    parts = [split_indices(count, fractions, seed=seed) for count in counts]
    return {key: np.concatenate([part[key] + offset for part, offset in zip(parts, offsets)])
            for key in ("train", "validation", "test")}


@dataclass
class TrainingConfig:
    """Settings of :func:`train` (all saved in the model's metadata).

    Attributes
    ----------
    embedding, head, filters, normalization, crop, input_size
        The network: :class:`~cryoposes.siamese.SiameseDistance`'s parameters.
    loss : str
        One of :data:`cryoposes.options.LOSSES` (:class:`PairDistanceLoss`).
    epochs, batch_size, patience : int
        Most epochs; images per batch; epochs without a lower validation loss before stopping.
    learning_rate : float
        Adam's initial learning rate.
    schedule : str
        ``"cosine"`` (decays to 1% over the planned steps) or ``"constant"``.
    sampling, pair_fraction
        Pair weights, as :class:`PairBatches`.
    seed : int
        Seeds the split, the weights, the batches and their augmentation.
    augmentation : Augmentation
        Of the training batches (validation batches: the same without rotation).

    Examples
    --------
    >>> from cryoposes.batches import Augmentation
    >>> from cryoposes.training import TrainingConfig
    >>> TrainingConfig(epochs=5, augmentation=Augmentation(snr_db=-10.0)).augmentation.snr_db
    -10.0
    """

    embedding: int = 64
    head: str = "rotation"
    loss: str = "mae"
    filters: tuple = (16, 32, 64, 128)
    normalization: str = "batch"
    crop: int | None = None
    input_size: int | None = None
    epochs: int = 20
    batch_size: int = 64
    learning_rate: float = 1e-3
    schedule: str = "cosine"
    sampling: str = "all"
    pair_fraction: float = 0.01
    patience: int = 10
    seed: int = 0
    augmentation: Augmentation = field(default_factory=Augmentation)


def recompute_batch_statistics(model: SiameseDistance, batches: PairBatches, passes: int = 40):
    """Refresh the BatchNorm evaluation statistics with training-mode passes over ``batches``.

    The moving statistics kept during training lag behind the weights; passes in training mode
    change no weight, and after ``passes`` batches the statistics from before weigh
    0.9^passes. Does nothing without BatchNorm.

    Parameters
    ----------
    model : SiameseDistance
        Updated in place.
    batches : PairBatches
        Training batches, cycled through.
    passes : int, optional

    Examples
    --------
    >>> from cryoposes.siamese import SiameseDistance
    >>> from cryoposes.batches import PairBatches
    >>> from cryoposes.training import recompute_batch_statistics
    >>> model = SiameseDistance(32, filters=(8, 16), embedding=8)
    >>> batches = PairBatches(np.random.default_rng(0).random((8, 32, 32)), np.eye(4)[[0] * 8], 4)
    >>> recompute_batch_statistics(model, batches, passes=2)
    >>> bool(np.any(model.encoder.get_layer("block0_norm0").moving_mean.numpy() != 0))
    True
    """
    if model.normalization != "batch":
        return
    for step in range(passes):
        images, _ = batches[step % len(batches)]
        model.embed(images, training=True)


def set_seed(seed: int):
    """Seed Python, NumPy and the backend.

    TensorFlow's ``enable_op_determinism`` is *not* switched on: it is process-wide and
    irreversible, and it turns off XLA for every later model (orientation recovery in the same
    process ran ~5× slower). CPU kernels are deterministic without it (tested:
    same seed → same weights, and a resumed run equals an uninterrupted one).

    Parameters
    ----------
    seed : int

    Examples
    --------
    >>> from cryoposes.training import set_seed
    >>> set_seed(1); first = np.random.random()
    >>> set_seed(1); bool(np.random.random() == first)
    True
    """
    keras.utils.set_random_seed(int(seed))


class _History(keras.callbacks.Callback):
    """Losses per epoch, kept in ``directory/history.json`` too so a resumed run keeps the
    epochs trained before the interruption."""

    def __init__(self, directory=None):
        super().__init__()
        self.path = None if directory is None else os.path.join(os.fspath(directory), "history.json")
        self.epochs = {}
        if self.path is not None and os.path.exists(self.path):
            with open(self.path) as handle:
                self.epochs = {int(k): v for k, v in json.load(handle).items()}

    def on_epoch_end(self, epoch, logs=None):
        self.epochs[epoch] = {key: float(value) for key, value in (logs or {}).items()}
        if self.path is not None and os.path.isdir(os.path.dirname(self.path)):
            with open(self.path, "w") as handle:
                json.dump(self.epochs, handle)

    def as_lists(self) -> dict:
        ordered = [self.epochs[epoch] for epoch in sorted(self.epochs)]
        keys = sorted({key for logs in ordered for key in logs})
        return {key: [logs.get(key, float("nan")) for logs in ordered] for key in keys}


class _BestWeights(keras.callbacks.Callback):
    """Keeps the weights of the epoch with the lowest validation loss and restores them at the
    end; with a ``directory`` they are kept on disk too, so that a resumed run restores the best
    epoch of the whole run, not only of its own part (Keras' EarlyStopping forgets that)."""

    def __init__(self, directory=None):
        super().__init__()
        self.directory = None if directory is None else os.fspath(directory)
        self.best = math.inf
        self.weights = None
        if self.directory is not None and os.path.exists(self._path("best.json")):
            with open(self._path("best.json")) as handle:
                self.best = json.load(handle)["val_loss"]

    def _path(self, name):
        return os.path.join(self.directory, name)

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get("val_loss", math.inf)
        if value < self.best:
            self.best = value
            self.weights = self.model.get_weights()
            if self.directory is not None and os.path.isdir(self.directory):
                self.model.save_weights(self._path("best.weights.h5"))
                with open(self._path("best.json"), "w") as handle:
                    json.dump({"val_loss": value, "epoch": epoch}, handle)

    def on_train_end(self, logs=None):
        if self.weights is not None:
            self.model.set_weights(self.weights)
        elif self.directory is not None and os.path.exists(self._path("best.weights.h5")):
            self.model.load_weights(self._path("best.weights.h5"))


def train(images, quaternions, split: dict | None = None, config: TrainingConfig | None = None,
          backup_dir=None, progress: bool = True, metadata: dict | None = None, initial=None):
    """Train a :class:`SiameseDistance` on the train images, validating on the validation ones.

    Training stops early after ``config.patience`` epochs without a lower validation loss (the
    count restarts on resume), ends with the weights of the best epoch, then recomputes the
    BatchNorm statistics (:func:`recompute_batch_statistics`).

    Parameters
    ----------
    images : array_like
        (N, L, L).
    quaternions : array_like
        (N, 4) poses of the images.
    split : dict, optional
        ``"train"``, ``"validation"``, ``"test"`` → indices into ``images`` (default:
        :func:`split_indices` with ``config.seed``).
    config : TrainingConfig, optional
    backup_dir : str or os.PathLike, optional
        Resume from the last finished epoch after an interruption (Keras ``BackupAndRestore``);
        the directory is kept (with the losses and the best weights so far): the caller's to remove.
    progress : bool, optional
        Show a tqdm bar.
    metadata : dict, optional
        More JSON-serialisable entries for the model's ``metadata``.
    initial : SiameseDistance or str or os.PathLike, optional
        Start from this model's weights: fine-tuning, e.g. on noisy images after clean ones (a
        curriculum: poses first, then seeing them through the noise). It must have the same
        architecture and split of the same images, or its "test" images would not be unseen.

    Returns
    -------
    SiameseDistance
        Its ``metadata`` holds ``"config"``, ``"split"`` and ``"history"`` (losses per epoch).

    Raises
    ------
    ValueError
        Images not (N, L, L), not one quaternion per image, or an unknown setting.
    InputError
        ``initial`` has another architecture or split.

    Examples
    --------
    >>> from cryoposes import rotations
    >>> from cryoposes.training import TrainingConfig, train
    >>> rng, config = np.random.default_rng(0), TrainingConfig(embedding=4, filters=(4,), epochs=1)
    >>> model = train(rng.random((12, 8, 8)), rotations.random_quaternions(12, rng), config=config,
    ...               progress=False)
    >>> len(model.metadata["history"]["loss"]), model.metadata["split"]["test"]
    (1, [0, 1, 5, 10])
    """
    config = config or TrainingConfig()
    images = np.asarray(images, dtype=np.float32)
    quaternions = np.asarray(quaternions, dtype=np.float64)
    if images.ndim != 3 or images.shape[1] != images.shape[2]:
        raise ValueError(f"images must be shaped (N, L, L), got {images.shape}")
    if quaternions.shape != (len(images), 4):
        raise ValueError(f"need one quaternion per image: got {quaternions.shape} for {len(images)} images")
    if config.loss not in LOSSES:
        raise ValueError(f"unknown loss {config.loss!r}; choose one of {LOSSES}")
    if config.epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {config.epochs}")
    split = split_indices(len(images), seed=config.seed) if split is None else split
    set_seed(config.seed)
    settings = asdict(config)
    model = SiameseDistance(images.shape[1], config.embedding, config.head, config.filters,
                            config.normalization, crop=config.crop, input_size=config.input_size,
                            metadata={**(metadata or {}), "config": settings,
                                      "split": {k: np.asarray(v).tolist() for k, v in split.items()}})
    model(np.zeros((2, images.shape[1], images.shape[1], 1), np.float32))  # build (BackupAndRestore needs it)
    if initial is not None:
        _start_from(model, as_model(initial), split)
    if config.schedule not in ("cosine", "constant"):
        raise ValueError(f"unknown learning-rate schedule {config.schedule!r}; choose cosine or constant")
    learning_rate = config.learning_rate
    if config.schedule == "cosine":  # anneal to 1% over the planned steps
        learning_rate = keras.optimizers.schedules.CosineDecay(
            config.learning_rate, config.epochs * (len(split["train"]) // min(config.batch_size, len(split["train"]))),
            alpha=0.01)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                  loss=PairDistanceLoss(config.loss))
    training = PairBatches(images[split["train"]], quaternions[split["train"]], config.batch_size,
                           config.seed, config.augmentation, config.sampling, config.pair_fraction)
    # Validation sees the same noise/CTF/shifts as training (fixed per batch), no rotation.
    validation_augmentation = dataclasses.replace(config.augmentation, rotate=False)
    validation = PairBatches(images[split["validation"]], quaternions[split["validation"]],
                             config.batch_size, config.seed + 1, validation_augmentation,
                             shuffle=False)
    history = _History(backup_dir)
    callbacks = [
        keras.callbacks.EarlyStopping(patience=config.patience),
        _BestWeights(backup_dir),
        EpochSync(training),
        history,
    ]
    if progress:
        callbacks.append(ProgressBar(config.epochs, "train-distance"))
    if backup_dir is not None:
        callbacks.insert(0, keras.callbacks.BackupAndRestore(os.fspath(backup_dir)))
    model.fit(training, validation_data=validation, epochs=config.epochs,
              callbacks=callbacks, shuffle=False, verbose=0)
    recompute_batch_statistics(model, training)
    model.metadata["history"] = history.as_lists()
    return model


def _start_from(model: SiameseDistance, initial: SiameseDistance, split: dict):
    """Copy ``initial``'s weights into ``model`` after checking they are compatible."""
    architecture = ("image_size", "crop", "input_size", "embedding", "head", "filters", "normalization")
    different = [name for name in architecture if getattr(model, name) != getattr(initial, name)]
    if different:
        raise InputError("the initial model has another architecture: "
                         + ", ".join(f"{name} {getattr(initial, name)} ≠ {getattr(model, name)}" for name in different))
    initial_split = initial.metadata.get("split")
    if initial_split is None or any(sorted(initial_split.get(key, [])) != sorted(np.asarray(value).tolist())
                                    for key, value in split.items()):
        raise InputError("the initial model was trained on another image split: its test images would "
                         "not be unseen (train it on the same dataset with the same seed and split)")
    model.set_weights(initial.get_weights())
    model.metadata["initial"] = {key: initial.metadata.get(key) for key in ("config", "history")}
