"""Training batches of the distance network: augmented images of known pose and their pair weights.

:class:`PairBatches` draws each batch on the fly, seeded by (seed, epoch, batch), so that a
batch is a pure function of its epoch and index and a resumed run draws exactly what an
uninterrupted one would. Images are corrupted with the simulator's own operators
(:class:`Augmentation`): in-plane rotation with the exact pose update, shifts, CTF and noise.
Pair weights implement the samplings of :data:`cryoposes.options.TRAINING_SAMPLINGS`: all pairs,
a fixed random fraction of pairs (the 2021 paper's 1%), or weights flattening the histogram of
d_q (:func:`flat_histogram_weights`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cryoposes.backend import keras

from cryoposes import imaging, rotations, simulation
from cryoposes.ctf import apply_ctf
from cryoposes.options import TRAINING_SAMPLINGS as SAMPLINGS

__all__ = ["Augmentation", "flat_histogram_weights", "PairBatches"]


@dataclass
class Augmentation:
    """On-the-fly corruption of training images, drawn with the simulator's own operators.

    Applied in the order of the forward model, each only when switched on:

    ``rotate``
        in-plane rotation by a uniform angle, pose updated to ``q ⊗ q_z(α)`` (exact; see
        :func:`cryoposes.imaging.rotate_in_plane`);
    ``scale``
        magnification uniform in [1 − ``scale``, 1 + ``scale``] about the centre
        (:func:`cryoposes.imaging.scale_images`): molecules of other sizes, or other pixel sizes;
    ``blur``
        Gaussian low-pass of width uniform in [0, ``blur``] pixels
        (:func:`cryoposes.imaging.blur_images`): maps of other resolutions;
    ``shift``
        shifts uniform in the disk of ``shift`` pixels
        (:func:`cryoposes.simulation.random_shifts`, :func:`cryoposes.imaging.shift_images`);
    ``ctf``
        a CTF drawn from :data:`cryoposes.simulation.CTF_RANGES` (:func:`~cryoposes.simulation.random_ctf`)
        at ``pixel_size`` Å;
    ``snr_db``
        white Gaussian noise at this SNR in dB (:func:`cryoposes.imaging.add_noise`).

    Calling it on images (B, L, L), poses (B, 4) and a :class:`numpy.random.Generator` returns
    the corrupted images (B, L, L) float32 and their poses (B, 4).

    Examples
    --------
    >>> import numpy as np
    >>> from cryoposes.batches import Augmentation
    >>> images, poses = np.ones((3, 16, 16), np.float32), np.tile([1.0, 0, 0, 0], (3, 1))
    >>> noisy, same = Augmentation(snr_db=0.0)(images + np.arange(16), poses, np.random.default_rng(0))
    >>> noisy.shape, bool(np.all(same == poses))
    ((3, 16, 16), True)
    >>> Augmentation(scale=0.2, blur=1.0)(images, poses, np.random.default_rng(0))[0].shape
    (3, 16, 16)
    """

    rotate: bool = False
    scale: float = 0.0
    blur: float = 0.0
    shift: float = 0.0
    ctf: bool = False
    pixel_size: float = 1.0
    snr_db: float | None = None

    def __post_init__(self):
        if not 0 <= self.scale < 1:
            raise ValueError(f"scale must be in [0, 1), got {self.scale}")
        for name in ("blur", "shift"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be non-negative, got {getattr(self, name)}")

    def __call__(self, images, quaternions, rng):
        images = np.asarray(images, dtype=np.float32)
        quaternions = np.asarray(quaternions, dtype=float)
        count = len(images)
        if self.rotate:
            images, quaternions = imaging.rotate_in_plane(images, quaternions, rng.uniform(0, 2 * np.pi, count))
        if self.scale > 0:
            images = imaging.scale_images(images, rng.uniform(1 - self.scale, 1 + self.scale, count))
        if self.blur > 0:
            images = imaging.blur_images(images, rng.uniform(0, self.blur, count))
        if self.shift > 0:
            images = imaging.shift_images(images, simulation.random_shifts(count, self.shift, rng))
        if self.ctf:
            images = apply_ctf(images, simulation.random_ctf(count, rng), self.pixel_size)
        if self.snr_db is not None:
            images = imaging.add_noise(images, self.snr_db, rng)
        return np.asarray(images, dtype=np.float32), quaternions


def flat_histogram_weights(quaternions, bins: int = 32, pairs: int = 200_000, seed: int = 0):
    """Function d_q ↦ weight that flattens the histogram of d_q over pairs of ``quaternions``.

    Weights are 1 / frequency of the bin, normalised to mean 1 over the pairs (empty bins get
    the largest weight seen).

    Parameters
    ----------
    quaternions : array_like
        (N, 4) poses.
    bins : int, optional
        Bins of the histogram over [0, π].
    pairs : int, optional
        Random pairs it is estimated from.
    seed : int, optional

    Returns
    -------
    callable
        ``weight(d)``: weights of the same shape as the distances ``d`` (radians).

    Examples
    --------
    >>> from cryoposes import rotations
    >>> from cryoposes.batches import flat_histogram_weights
    >>> weight = flat_histogram_weights(rotations.random_quaternions(100, np.random.default_rng(0)))
    >>> w = weight(np.array([0.2, 2.0])); w.shape, bool(w[0] > w[1])  # small d_q are rare
    ((2,), True)
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
    and index (``epoch`` is set by :func:`train` at the start of each epoch).

    Parameters
    ----------
    images : array_like
        (N, L, L).
    quaternions : array_like
        (N, 4) poses of the images.
    batch_size : int, optional
        Images per batch B (at most N).
    seed : int, optional
    augmentation : Augmentation, optional
        Applied to each batch (default: none).
    sampling : str, optional
        Pair weights W, one of :data:`cryoposes.options.TRAINING_SAMPLINGS`: ``"all"`` pairs
        i ≠ j; ``"fraction"``: a fixed random ``pair_fraction`` of the pairs of the whole set
        (the paper's 1%), restricted to each batch; ``"flat"``: :func:`flat_histogram_weights`.
    pair_fraction : float, optional
    shuffle : bool, optional
        False: the same batches and augmentation every epoch (validation).

    Raises
    ------
    ValueError
        Unknown ``sampling``, fewer than 2 images, or ``pair_fraction`` outside (0, 1].

    Examples
    --------
    >>> from cryoposes.batches import PairBatches
    >>> batches = PairBatches(np.random.default_rng(0).random((8, 16, 16)), np.eye(4)[[0] * 8], 4)
    >>> images, target = batches[0]; len(batches), images.shape, target.shape
    (2, (4, 16, 16, 1), (4, 8))
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
