"""The learned distance d_p: a Siamese network trained so that d_p(p_i, p_j) ≈ d_q(q_i, q_j).

The network
-----------
A shared CNN encoder ``G_w`` (optional central crop and anti-aliased downsampling of the input,
per-image standardisation, convolution blocks with GroupNorm or
BatchNorm (:data:`NORMALIZATIONS`) and ReLU, max pooling, global average pooling, a dense layer)
maps each image to an embedding of size ``K``; a parameter-free *head* turns two embeddings into a distance. Three heads:

``rotation`` (default)
    ``d = acos((3c − 1) / 2)`` with ``c`` the cosine similarity of the two embeddings. If the
    embedding is ``vec(R)/√3`` (a unit vector for a rotation matrix ``R``), then
    ``c = tr(RᵢᵀRⱼ)/3 = (1 + 2 cos d_q)/3``, so this head is *exactly* the geodesic distance,
    and ``vec(R)`` is a continuous function of the pose that the encoder can learn. It covers
    [0, π] and has a gradient everywhere, including at the mean target of uniform rotations
    (126.5°). It is the default for that reason: in the findings' experiments a plain
    ``acos(c)`` head could not reach the targets' mean and never beat a constant prediction.
``cosine`` (the 2021 paper)
    ``d = 2·acos(clip(c, 0, 1))``, in [0, π]. It is exact when the embedding is the quaternion
    with ``⟨q_i, q_j⟩ ≥ 0``, but ``q`` and ``−q`` are one rotation and no continuous encoder can
    pick consistent signs over SO(3): pairs with ``c ≤ 0`` are pinned at π, with zero gradient.
``euclidean`` (the seed report)
    ``d = ‖e_i − e_j‖``, unbounded.

Training on all pairs of a batch
--------------------------------
:meth:`SiameseDistance.call` embeds a batch of B images once and returns the B×B matrix of head
outputs, so one step trains on B(B−1)/2 pairs for B encoder passes. Targets are packed as
``y = [q | W]`` (quaternions (B, 4) and a pair-weight matrix (B, B)); :class:`PairDistanceLoss`
computes ``Σ W·err / Σ W`` with ``err = |d_p − d_q|`` (MAE, the paper's code) or ``(d_p − d_q)²``
(MSE, the seed). The weights implement the samplings of :data:`SAMPLINGS`: ``all`` pairs,
``fraction`` (the paper's fixed random 1% of pairs) and ``flat`` (weights flattening the
histogram of d_q over the training pairs).

Augmentation
------------
:class:`PairBatches` draws each batch on the fly (seeded by seed, epoch and batch): in-plane
rotation by a uniform angle α with the pose updated to ``q ⊗ q_z(α)`` (exact: see
:func:`rotate_in_plane`), CTF, shifts and noise at a chosen SNR, all from
:mod:`cryoposes.imaging`.

Using the model
---------------
:func:`distance_matrix` embeds each image once and evaluates the head on all pairs of
embeddings (N×N, float64). The image split (train / validation / test indices into the
dataset trained on) is stored in the saved model (``model.metadata["split"]``; read it with
:func:`load_split`) so that recovery runs on the test images.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field

import numpy as np

import cryoposes  # noqa: F401  (sets the TensorFlow logging variables before keras is imported)
import keras
from keras import ops
from scipy import ndimage

from cryoposes import rotations

__all__ = [
    "HEADS",
    "LOSSES",
    "SAMPLINGS",
    "NORMALIZATIONS",
    "PAPER_SPLIT",
    "recompute_batch_statistics",
    "pairwise_head",
    "SiameseDistance",
    "PairDistanceLoss",
    "Augmentation",
    "PairBatches",
    "rotate_in_plane",
    "rotate_images",
    "split_indices",
    "flat_histogram_weights",
    "TrainingConfig",
    "train",
    "set_seed",
    "load",
    "load_split",
    "test_indices",
    "embed",
    "distance_matrix",
    "distance_errors",
    "recover_from_distances",
    "experiment",
]

#: Distance heads, the default first.
HEADS = ("rotation", "cosine", "euclidean")
#: Pair losses: mean absolute error (the paper's code), mean squared error (the seed), or
#: ``chordal``: mean squared difference of ``cos d`` (i.e. of squared chordal distances
#: ‖Rᵢ − Rⱼ‖² = 4(1 − cos d)), whose gradient avoids acos' infinite slope at d = π, where most
#: targets of uniform rotations lie.
LOSSES = ("mae", "mse", "chordal")
#: Pair samplings: all pairs of each batch, a fixed random fraction of pairs, a flat d_q histogram.
SAMPLINGS = ("all", "fraction", "flat")
#: Normalisation layers of the encoder: GroupNorm (no train/evaluation difference), BatchNorm
#: (about half GroupNorm's step cost; evaluation statistics recomputed after training), none.
#: :class:`TrainingConfig` uses BatchNorm: with it (and 64-image batches) 5j0n at 64 px learned
#: in ~10 min what GroupNorm with 128-image batches had not learned in 35 (results/).
NORMALIZATIONS = ("group", "batch", "none")
#: The paper's split of 5,000 images.
PAPER_SPLIT = (2512, 838, 1650)

_COSINE_EPSILON = 1e-6


def pairwise_head(first, second, head: str = "rotation", xp=np):
    """Head distances between every row of ``first`` (M, K) and every row of ``second`` (N, K).

    Runs on NumPy arrays (``xp=numpy``) or tensors (``xp=keras.ops``) from the same formula,
    so training and :func:`distance_matrix` agree. Returns an (M, N) matrix in radians
    (``rotation``, ``cosine``) or embedding units (``euclidean``).
    """
    if head not in HEADS:
        raise ValueError(f"unknown head {head!r}; choose one of {HEADS}")
    if head == "euclidean":
        squared = (
            xp.sum(first * first, axis=-1)[:, None]
            + xp.sum(second * second, axis=-1)[None, :]
            - 2.0 * xp.matmul(first, xp.transpose(second))
        )
        # The small floor keeps the gradient finite at zero distance (the diagonal).
        return xp.sqrt(xp.maximum(squared, 0.0) + 1e-12)
    unit_first = first / xp.sqrt(xp.maximum(xp.sum(first * first, axis=-1, keepdims=True), 1e-12))
    unit_second = second / xp.sqrt(xp.maximum(xp.sum(second * second, axis=-1, keepdims=True), 1e-12))
    cosine = xp.matmul(unit_first, xp.transpose(unit_second))
    if head == "cosine":
        return 2.0 * xp.arccos(xp.clip(cosine, 0.0, 1.0 - _COSINE_EPSILON))
    return xp.arccos(xp.clip((3.0 * cosine - 1.0) / 2.0, -1.0 + _COSINE_EPSILON, 1.0 - _COSINE_EPSILON))


@keras.saving.register_keras_serializable(package="cryoposes")
class SiameseDistance(keras.Model):
    """Shared encoder + distance head; ``model(images)`` is the (B, B) matrix of pair distances.

    Parameters
    ----------
    image_size : side L of the square input images.
    crop : side of the central square the encoder looks at (default: the whole image). The
        particle sits in the middle of a box made large enough to turn it (the map's diagonal),
        so the outer ring is mostly background, or noise only.
    input_size : side the cropped square is resized to (anti-aliased bilinear) before the
        convolutions (default: no resizing). Downsampling averages white noise away (binning by
        2 divides its variance by 4) and makes each step cheaper; the simulated images, their
        noise and their augmentations keep the full size L.
    embedding : size K of the embedding.
    head : one of :data:`HEADS`.
    filters : channels of the convolution blocks; each block is two 3×3 convolutions with
        GroupNorm and ReLU, then 2×2 max pooling.
    metadata : JSON-serialisable dict saved with the model (split, training settings, history).
    """

    def __init__(self, image_size: int, embedding: int = 64, head: str = "rotation",
                 filters=(16, 32, 64, 128), normalization: str = "batch", metadata=None,
                 crop: int | None = None, input_size: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if head not in HEADS:
            raise ValueError(f"unknown head {head!r}; choose one of {HEADS}")
        if int(embedding) < 1:
            raise ValueError(f"embedding size must be positive, got {embedding}")
        crop = int(image_size) if crop is None else int(crop)
        if not 1 <= crop <= int(image_size):
            raise ValueError(f"crop must be between 1 and the image size {image_size} px, got {crop}")
        input_size = crop if input_size is None else int(input_size)
        if not 1 <= input_size <= crop:
            raise ValueError(f"input size must be between 1 and the crop {crop} px, got {input_size}")
        if input_size < 2 ** len(filters):
            raise ValueError(f"images of {input_size} px are too small for {len(filters)} pooling blocks")
        self.image_size = int(image_size)
        self.crop = crop
        self.input_size = input_size
        self.embedding = int(embedding)
        self.head = head
        self.filters = tuple(int(f) for f in filters)
        if normalization not in NORMALIZATIONS:
            raise ValueError(f"unknown normalization {normalization!r}; choose one of {NORMALIZATIONS}")
        self.normalization = normalization
        self.metadata = dict(metadata or {})
        self.encoder = self._build_encoder()

    def _build_encoder(self):
        images = keras.Input((self.image_size, self.image_size, 1), name="image")
        x = images
        if self.crop < self.image_size:
            # Keeps the centre pixel L//2 at crop//2 (the convention of cryoposes.projection).
            before = self.image_size // 2 - self.crop // 2
            after = self.image_size - self.crop - before
            x = keras.layers.Cropping2D(((before, after), (before, after)), name="crop")(x)
        if self.input_size < self.crop:
            x = keras.layers.Resizing(self.input_size, self.input_size, interpolation="bilinear",
                                      antialias=True, name="downsample")(x)
        # Per-image standardisation: the distance must not depend on the image scale or
        # offset, and noise augmentation changes both.
        mean = ops.mean(x, axis=(1, 2, 3), keepdims=True)
        std = ops.std(x, axis=(1, 2, 3), keepdims=True)
        x = (x - mean) / (std + 1e-6)
        for index, channels in enumerate(self.filters):
            for repeat in range(2):
                x = keras.layers.Conv2D(channels, 3, padding="same", use_bias=self.normalization == "none",
                                        name=f"block{index}_conv{repeat}")(x)
                if self.normalization == "group":
                    x = keras.layers.GroupNormalization(groups=min(8, channels),
                                                        name=f"block{index}_norm{repeat}")(x)
                elif self.normalization == "batch":
                    # Fast-moving statistics: with momentum 0.99 and a few dozen steps per
                    # epoch the evaluation-mode statistics lag far behind the weights and the
                    # embeddings collapse (findings); train() also recomputes them at the end.
                    x = keras.layers.BatchNormalization(momentum=0.9, name=f"block{index}_norm{repeat}")(x)
                x = keras.layers.Activation("relu")(x)
            x = keras.layers.MaxPooling2D(2, name=f"block{index}_pool")(x)
        x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
        x = keras.layers.Dense(2 * self.filters[-1], activation="relu", name="dense")(x)
        output = keras.layers.Dense(self.embedding, name="embedding")(x)
        return keras.Model(images, output, name="encoder")

    def embed(self, images, training=False):
        """Embeddings (B, K) of images (B, L, L) or (B, L, L, 1)."""
        if len(images.shape) == 3:
            images = ops.expand_dims(images, -1)
        return self.encoder(images, training=training)

    def call(self, images, training=False):
        embeddings = self.embed(images, training=training)
        return pairwise_head(embeddings, embeddings, self.head, xp=ops)

    def get_config(self):
        return {
            "image_size": self.image_size,
            "embedding": self.embedding,
            "head": self.head,
            "filters": list(self.filters),
            "normalization": self.normalization,
            "metadata": self.metadata,
            "crop": self.crop,
            "input_size": self.input_size,
            "name": self.name,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)


@keras.saving.register_keras_serializable(package="cryoposes")
class PairDistanceLoss(keras.losses.Loss):
    """Weighted pair loss on a batch's (B, B) distance matrix.

    ``y_true`` packs the quaternions and the pair weights: ``[q (B, 4) | W (B, B)]``; the value
    is ``Σ_ij W_ij·err(d_p_ij, d_q_ij) / Σ_ij W_ij``. Each row returns its share so that Keras'
    mean over the batch is that ratio.
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


def rotate_in_plane(images, quaternions, angles):
    """Rotate images in their plane by ``angles`` (radians) and return the matching poses.

    The projection at pose ``R·Rz(α)`` is ``Σ_z V(R·Rz(α)·(x, y, z))``, i.e. the old image read
    at ``Rz(α)·(x, y)``: so the rotated image is ``image'(x, y) = image(Rz(α)·(x, y))`` about the
    centre pixel L//2 (cubic spline, zeros outside) and the new pose is ``q ⊗ q_z(α)``.
    Returns ``(rotated images (N, L, L) float32, quaternions (N, 4))``.
    """
    angles = np.asarray(angles, dtype=float)
    turns = rotations.axis_angle_to_quaternion(np.tile([0.0, 0.0, 1.0], (len(angles), 1)), angles)
    return rotate_images(images, angles), rotations.quaternion_multiply(np.asarray(quaternions, dtype=float), turns)


def rotate_images(images, angles):
    """``image'(x, y) = image(Rz(α)·(x, y))`` about the centre pixel L//2 for each image and
    angle α (radians; cubic spline, zeros outside): the images of the poses ``q ⊗ q_z(α)``
    (see :func:`rotate_in_plane`). Returns (N, L, L) float32."""
    images = np.asarray(images, dtype=np.float32)
    angles = np.asarray(angles, dtype=float)
    size = images.shape[-1]
    centre = np.array([size // 2, size // 2], dtype=float)
    rotated = np.empty_like(images)
    for index, (image, angle) in enumerate(zip(images, angles)):
        c, s = math.cos(angle), math.sin(angle)
        # Arrays are indexed [y, x]: (x, y) ↦ (c·x − s·y, s·x + c·y) reads as this matrix.
        matrix = np.array([[c, s], [-s, c]])
        rotated[index] = ndimage.affine_transform(image, matrix, offset=centre - matrix @ centre,
                                                  order=3, mode="constant", cval=0.0)
    return rotated


@dataclass
class Augmentation:
    """On-the-fly corruption of training images (applied in this order).

    rotate: in-plane rotation by a uniform angle, pose updated (exact; see :func:`rotate_in_plane`).
    ctf: multiply by a CTF with defocus uniform in ``defocus_um`` (µm) at ``pixel_size`` Å.
    shift: uniform shifts of up to ± ``shift`` pixels in x and y.
    snr_db: white Gaussian noise at this SNR (dB), per :func:`cryoposes.imaging.add_noise`.
    """

    rotate: bool = False
    ctf: bool = False
    defocus_um: tuple = (1.0, 2.5)
    pixel_size: float = 1.0
    shift: float = 0.0
    snr_db: float | None = None

    def __call__(self, images, quaternions, rng):
        images = np.asarray(images, dtype=np.float32)
        quaternions = np.asarray(quaternions, dtype=float)
        count = len(images)
        if self.rotate:
            images, quaternions = rotate_in_plane(images, quaternions, rng.uniform(0, 2 * np.pi, count))
        if self.ctf or self.shift > 0 or self.snr_db is not None:
            from cryoposes import imaging

            if self.ctf:
                defocus = rng.uniform(*self.defocus_um, count) * 1e4  # µm → Å
                images = imaging.apply_ctf(images, imaging.CTFParameters(defocus, defocus), self.pixel_size)
            if self.shift > 0:
                images = imaging.shift_images(images, rng.uniform(-self.shift, self.shift, (count, 2)))
            if self.snr_db is not None:
                images = imaging.add_noise(images, self.snr_db, rng)
        return np.asarray(images, dtype=np.float32), quaternions


def flat_histogram_weights(quaternions, bins: int = 32, pairs: int = 200_000, seed: int = 0):
    """Function d_q ↦ weight that flattens the histogram of d_q over pairs of ``quaternions``.

    The histogram is estimated from ``pairs`` random pairs; weights are 1 / frequency of the
    bin, normalised to mean 1 over the pairs (empty bins get the largest weight seen).
    """
    quaternions = np.asarray(quaternions, dtype=float)
    rng = np.random.default_rng(seed)
    first = rng.integers(0, len(quaternions), pairs)
    second = rng.integers(0, len(quaternions), pairs)
    keep = first != second
    distances = rotations.geodesic_distance(quaternions[first[keep]], quaternions[second[keep]])
    counts, edges = np.histogram(distances, bins=bins, range=(0.0, np.pi))
    frequency = counts / max(counts.sum(), 1)
    weights = np.where(counts > 0, 1.0 / np.maximum(frequency, 1e-300), 0.0)
    weights[counts == 0] = weights.max() if np.any(counts > 0) else 1.0
    weights /= np.sum(weights * frequency)

    def weight(d):
        index = np.clip(np.digitize(d, edges) - 1, 0, bins - 1)
        return weights[index]

    return weight


class PairBatches(keras.utils.PyDataset):
    """Batches ``(images (B, L, L, 1), [q | W] (B, 4 + B))`` for all-pairs training.

    Shuffled each epoch (drop-last, so every step has the same shape); augmentation and the
    shuffle are seeded by ``(seed, epoch, batch)``, so a batch is a pure function of its epoch
    and index (``epoch`` is set by :func:`train` at the start of each epoch). ``sampling``: ``all`` pairs i ≠ j;
    ``fraction``: a fixed random ``pair_fraction`` of the pairs of the whole set (the paper's
    1%), restricted to each batch; ``flat``: weights flattening the d_q histogram.
    """

    def __init__(self, images, quaternions, batch_size: int = 64, seed: int = 0,
                 augmentation: Augmentation | None = None, sampling: str = "all",
                 pair_fraction: float = 0.01, shuffle: bool = True):
        super().__init__(workers=1, use_multiprocessing=False)
        if sampling not in SAMPLINGS:
            raise ValueError(f"unknown sampling {sampling!r}; choose one of {SAMPLINGS}")
        self.images = np.asarray(images, dtype=np.float32)
        self.quaternions = np.asarray(quaternions, dtype=np.float64)
        if len(self.images) < 2:
            raise ValueError(f"need at least 2 images to form pairs, got {len(self.images)}")
        self.batch_size = int(min(batch_size, len(self.images)))
        self.seed = int(seed)
        self.augmentation = augmentation or Augmentation()
        self.sampling = sampling
        self.shuffle = shuffle
        self.epoch = 0
        if sampling == "fraction":
            if not 0 < pair_fraction <= 1:
                raise ValueError(f"pair fraction must be in (0, 1], got {pair_fraction}")
            rng = np.random.default_rng([self.seed, 7])
            upper = np.triu(rng.random((len(self.images),) * 2) < pair_fraction, 1)
            self.pair_mask = upper | upper.T
        if sampling == "flat":
            self.flat_weight = flat_histogram_weights(self.quaternions, seed=self.seed)

    def __len__(self):
        return len(self.images) // self.batch_size

    def batch_indices(self, index: int):
        order = (np.random.default_rng([self.seed, self.epoch]).permutation(len(self.images))
                 if self.shuffle else np.arange(len(self.images)))
        return order[index * self.batch_size:(index + 1) * self.batch_size]

    def __getitem__(self, index):
        chosen = self.batch_indices(index)
        rng = np.random.default_rng([self.seed, self.epoch if self.shuffle else 0, index, 1])
        images, quaternions = self.augmentation(self.images[chosen], self.quaternions[chosen], rng)
        weights = 1.0 - np.eye(len(chosen))
        if self.sampling == "fraction":
            weights *= self.pair_mask[np.ix_(chosen, chosen)]
        elif self.sampling == "flat":
            weights *= self.flat_weight(rotations.pairwise_geodesic_distances(quaternions))
        target = np.concatenate([quaternions, weights], axis=1).astype(np.float32)
        return images[..., None], target


def split_indices(n: int, fractions=None, seed: int = 0) -> dict:
    """Disjoint random train / validation / test image indices (sorted int arrays).

    ``fractions`` (train, validation) default to the paper's 2,512 / 838 of 5,000; the rest is
    test (1,650 of 5,000).
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


@dataclass
class TrainingConfig:
    """Settings of :func:`train` (all saved in the model's metadata)."""

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
    """Refresh the BatchNorm evaluation statistics with training-mode passes over ``batches``
    (no weight change): after ``passes`` batches the statistics from before weigh 0.9^passes."""
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
    """
    keras.utils.set_random_seed(int(seed))


class _EpochSync(keras.callbacks.Callback):
    """Tell the training batches which epoch runs, so shuffles and augmentations depend on the
    epoch number only and a resumed run (BackupAndRestore) draws exactly the same batches."""

    def __init__(self, batches: PairBatches):
        super().__init__()
        self.batches = batches

    def on_epoch_begin(self, epoch, logs=None):
        self.batches.epoch = epoch


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


class _TqdmEpochs(keras.callbacks.Callback):
    """One tqdm bar over epochs, showing the latest losses."""

    def __init__(self, epochs: int, enabled: bool):
        super().__init__()
        self.epochs = epochs
        self.enabled = enabled
        self.bar = None

    def on_train_begin(self, logs=None):
        if self.enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=self.epochs, desc="train-distance", unit="epoch")

    def on_epoch_end(self, epoch, logs=None):
        if self.bar is None:
            return
        self.bar.n = epoch + 1
        self.bar.set_postfix({key: f"{value:.4f}" for key, value in (logs or {}).items()
                              if key in ("loss", "val_loss")})
        self.bar.refresh()

    def on_train_end(self, logs=None):
        if self.bar is not None:
            self.bar.close()


def train(images, quaternions, split: dict | None = None, config: TrainingConfig | None = None,
          backup_dir=None, progress: bool = True, metadata: dict | None = None, initial=None):
    """Train a :class:`SiameseDistance` on the train images, validating on the validation ones.

    ``split`` maps "train"/"validation"/"test" to indices into ``images`` (default
    :func:`split_indices` with the seed). With ``backup_dir``, training resumes from the last
    finished epoch after an interruption (Keras ``BackupAndRestore``); the directory is
    kept (with the losses and the best weights so far) and is the caller's to remove. Training
    stops early after ``patience`` epochs without a lower validation loss (the count restarts
    on resume) and ends with the weights of the best epoch. Returns the model; its ``metadata``
    holds the config, split and loss history.

    ``initial`` (a model or a ``.keras`` path) starts from that model's weights instead of a
    random initialisation: fine-tuning, e.g. a network trained on clean images continued on
    noisy ones (a curriculum: it learns the poses first, then to see them through the noise).
    It must have the same architecture and have been trained on the same split of the same
    images, or its "test" images would not be unseen.
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
        _start_from(model, load(initial) if isinstance(initial, (str, os.PathLike)) else initial, split)
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
    validation_augmentation = Augmentation(**{**asdict(config.augmentation), "rotate": False})
    validation = PairBatches(images[split["validation"]], quaternions[split["validation"]],
                             config.batch_size, config.seed + 1, validation_augmentation,
                             shuffle=False)
    history = _History(backup_dir)
    callbacks = [
        keras.callbacks.EarlyStopping(patience=config.patience),
        _BestWeights(backup_dir),
        _EpochSync(training),
        history,
        _TqdmEpochs(config.epochs, progress),
    ]
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
        raise ValueError("the initial model has another architecture: "
                         + ", ".join(f"{name} {getattr(initial, name)} ≠ {getattr(model, name)}" for name in different))
    initial_split = initial.metadata.get("split")
    if initial_split is None or any(sorted(initial_split.get(key, [])) != sorted(np.asarray(value).tolist())
                                    for key, value in split.items()):
        raise ValueError("the initial model was trained on another image split: its test images would "
                         "not be unseen (train it on the same dataset with the same seed and split)")
    model.set_weights(initial.get_weights())
    model.metadata["initial"] = {key: initial.metadata.get(key) for key in ("config", "history")}


def load(path) -> SiameseDistance:
    """Load a model saved with ``model.save(path)`` (``.keras``)."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no distance model at {path}")
    return keras.models.load_model(path, compile=False)


def load_split(model_or_path) -> dict:
    """The train / validation / test image indices stored in a trained model (int arrays)."""
    model = load(model_or_path) if isinstance(model_or_path, (str, os.PathLike)) else model_or_path
    split = model.metadata.get("split")
    if split is None:
        raise ValueError("this distance model has no stored image split")
    return {key: np.asarray(value, dtype=int) for key, value in split.items()}


def test_indices(model_or_path, n_images: int) -> np.ndarray:
    """Indices of the test images (never trained or validated on) of the dataset the model was
    trained on, checked against that dataset's size ``n_images``: what ``cryoposes recover DIR
    --distance MODEL.keras`` recovers."""
    split = load_split(model_or_path)
    total = sum(len(indices) for indices in split.values())
    if total != n_images:
        raise ValueError(f"the distance model was trained on a dataset of {total} images, this one has "
                         f"{n_images}: give the dataset it was trained on")
    return split["test"]


def embed(model_or_path, images, batch_size: int = 256) -> np.ndarray:
    """Embeddings (N, K) float64 of images (N, L, L): one encoder pass per image."""
    model = load(model_or_path) if isinstance(model_or_path, (str, os.PathLike)) else model_or_path
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 3 or images.shape[1:] != (model.image_size, model.image_size):
        raise ValueError(f"the model takes images of {model.image_size}×{model.image_size} px, "
                         f"got an array shaped {images.shape}")
    chunks = [ops.convert_to_numpy(model.embed(images[start:start + batch_size]))
              for start in range(0, len(images), batch_size)]
    return np.concatenate(chunks).astype(np.float64) if chunks else np.empty((0, model.embedding))


def distance_matrix(model_or_path, images, batch_size: int = 256, turns: int = 1) -> np.ndarray:
    """Learned distances (N, N) float64 between all pairs of ``images`` (N, L, L).

    Each image is embedded once; the head is then evaluated on all pairs of embeddings
    (radians for the ``rotation`` and ``cosine`` heads). Symmetric; the diagonal is the head's
    value at identical embeddings (0, or its clip floor, below 3e-3 rad).

    ``turns`` = K > 1 averages K such matrices, of all images turned in their plane by
    2πk/K (k = 0 … K−1): turning *both* images of a pair by the same α changes their poses to
    ``R_i·Rz(α)`` and ``R_j·Rz(α)``, whose relative rotation ``Rz(−α)·R_iᵀR_j·Rz(α)`` has the
    same angle, so every one of the K matrices estimates the same d_q, while the network's
    errors differ between them and partly average out (test-time augmentation; K embeddings
    per image).
    """
    model = load(model_or_path) if isinstance(model_or_path, (str, os.PathLike)) else model_or_path
    if isinstance(turns, bool) or int(turns) != turns or turns < 1:
        raise ValueError(f"turns must be a positive integer, got {turns!r}")
    images = np.asarray(images, dtype=np.float32)
    distances = 0.0
    for k in range(int(turns)):
        turned = images if k == 0 else rotate_images(images, np.full(len(images), 2 * np.pi * k / turns))
        embeddings = embed(model, turned, batch_size)
        distances = distances + pairwise_head(embeddings, embeddings, model.head)
    distances = distances / turns
    return (distances + distances.T) / 2.0


def distance_errors(distances, quaternions) -> dict:
    """How far learned distances (N, N) are from the true d_q of ``quaternions`` (N, 4), over
    pairs i < j: mean, median and root-mean-square absolute error in degrees, and the Pearson
    correlation."""
    quaternions = np.asarray(quaternions, dtype=float)
    upper = np.triu_indices(len(quaternions), 1)
    predicted = np.asarray(distances, dtype=float)[upper]
    true = rotations.pairwise_geodesic_distances(quaternions)[upper]
    error = np.degrees(np.abs(predicted - true))
    return {
        "pairs": int(len(error)),
        "mean_deg": float(error.mean()),
        "median_deg": float(np.median(error)),
        "rms_deg": float(np.sqrt(np.mean(error ** 2))),
        "correlation": float(np.corrcoef(predicted, true)[0, 1]),
    }


def recover_from_distances(distances, true_quaternions, init: str = "spectral", symmetry: str = "C1",
                           seed: int = 0, progress: bool = False, **options) -> dict:
    """Recover poses from a distance matrix with :func:`cryoposes.recovery.fit_poses` and score
    them against the truth.

    Returns the recovered quaternions, the O(4) and physical alignments
    (:mod:`cryoposes.alignment`; median and mean errors in degrees), and the seed report's
    Table 1 losses before (at the start) and after recovery (``eq6`` recovery loss on the
    distances, ``eq7`` ground-truth loss, ``eq8`` rotation loss in radians).
    """
    from cryoposes import alignment, recovery

    true_quaternions = np.asarray(true_quaternions, dtype=float)
    result = recovery.fit_poses(distances, init=init, seed=seed, true_quaternions=true_quaternions,
                                progress=progress, **options)
    o4 = alignment.align_o4(true_quaternions, result.quaternions, symmetry=symmetry)
    physical = alignment.align_physical(true_quaternions, result.quaternions, symmetry=symmetry)
    return {
        "init": init,
        "quaternions": result.quaternions,
        "o4": o4,
        "physical": physical,
        "losses_before": alignment.seed_losses(true_quaternions, result.initial, distances, seed=seed),
        "losses_after": alignment.seed_losses(true_quaternions, result.quaternions, distances, seed=seed),
        "history": result.history,
        "seconds": float(result.history["time"][-1]) if result.history.get("time") else 0.0,
    }


def experiment(protein: str = "5j0n", n: int = 5000, size: int = 64, coverage: str = "full",
               snr_db: float | None = None, config: TrainingConfig | None = None,
               inits=("spectral",), recovery_steps: int = 3000, symmetry: str = "C1", seed: int = 0,
               zoom: float = 1.0, progress: bool = False, initial=None, turns: int = 1) -> dict:
    """The whole Phase 2.2 pipeline on simulated data, from a density map to scored poses.

    Projects ``protein`` (a :func:`cryoposes.volumes.load_protein` name) at ``n`` poses uniform
    in ``coverage``, in a box of ``size·zoom`` px cropped to its central ``size`` px (with
    ``zoom`` > 1 the molecule fills more of the image: :func:`load_protein` boxes the whole map
    with room to turn, so at zoom 1 the molecule spans well under half of the image); splits the images (paper proportions); trains the distance
    network on the clean training images, with noise at ``snr_db`` added on the fly if given
    (``config.augmentation.snr_db`` is set from it); adds one fixed noise draw at ``snr_db`` to
    the test images; computes their learned distance matrix; recovers their poses from it for
    each start in ``inits`` and scores them (:func:`recover_from_distances`). ``initial``: a
    model to fine-tune (see :func:`train`), e.g. the clean run's model for a noisy run on the
    same simulated images. ``turns``: in-plane turns averaged in every distance matrix (see
    :func:`distance_matrix`). Returns a dict of arrays, the model and timings (seconds).
    """
    from cryoposes import imaging, projection, volumes

    config = config or TrainingConfig()
    config = dataclasses.replace(config, augmentation=dataclasses.replace(config.augmentation, snr_db=snr_db))
    if config.augmentation.ctf:
        raise ValueError("experiment() simulates without CTF; train with the CLI on a CTF dataset instead")
    rng = np.random.default_rng([seed, 11])
    timings = {}
    start = time.perf_counter()
    if zoom < 1:
        raise ValueError(f"zoom must be at least 1, got {zoom}")
    box = int(round(size * zoom))
    corner = box // 2 - size // 2  # keeps the centre pixel at size // 2
    volume = volumes.load_protein(protein, box=box)
    quaternions = rotations.sample_coverage(n, coverage, rng)
    images = np.ascontiguousarray(projection.project(volume, quaternions)[:, corner:corner + size, corner:corner + size])
    timings["simulate"] = time.perf_counter() - start
    split = split_indices(n, seed=seed)
    start = time.perf_counter()
    model = train(images, quaternions, split, config, progress=progress, initial=initial,
                  metadata={"protein": protein, "size": size, "zoom": zoom, "coverage": coverage, "snr_db": snr_db})
    timings["train"] = time.perf_counter() - start
    test = split["test"]
    test_images = images[test] if snr_db is None else imaging.add_noise(images[test], snr_db, rng)
    start = time.perf_counter()
    distances = distance_matrix(model, test_images, turns=turns)
    timings["distance_matrix"] = time.perf_counter() - start
    subsets = {}
    for name in ("train", "validation"):
        chosen = split[name][:len(test)]
        subset_images = images[chosen] if snr_db is None else imaging.add_noise(images[chosen], snr_db, rng)
        subsets[name] = (distance_matrix(model, subset_images, turns=turns), quaternions[chosen])
    subsets["test"] = (distances, quaternions[test])
    recoveries = {}
    for init in inits:
        start = time.perf_counter()
        recoveries[init] = recover_from_distances(distances, quaternions[test], init=init, symmetry=symmetry,
                                                  seed=seed, steps=recovery_steps, progress=progress)
        timings[f"recover_{init}"] = time.perf_counter() - start
    return {
        "model": model,
        "quaternions": quaternions,
        "images": images,
        "split": split,
        "test_images": test_images,
        "distances": distances,
        "subsets": subsets,
        "distance_errors": {name: distance_errors(*pair) for name, pair in subsets.items()},
        "recoveries": recoveries,
        "timings": timings,
    }
