"""The learned distance d_p: a Siamese network, and its use on new images.

**The network.**

A shared CNN encoder ``G_w`` (optional central crop and anti-aliased downsampling of the input,
per-image standardisation, convolution blocks with BatchNorm, GroupNorm or no normalisation
(:data:`cryoposes.options.NORMALIZATIONS`) and ReLU, max pooling, global average pooling, a
dense layer) maps each image to an embedding of size ``K``; a parameter-free *head* turns two
embeddings into a distance. Three heads (:data:`cryoposes.options.HEADS`):

``rotation`` (default)
    ``d = acos((3c − 1) / 2)`` with ``c`` the cosine similarity of the two embeddings. If the
    embedding is ``vec(R)/√3`` (a unit vector for a rotation matrix ``R``), then
    ``c = tr(RᵢᵀRⱼ)/3 = (1 + 2 cos d_q)/3``, so this head is *exactly* the geodesic distance,
    and ``vec(R)`` is a continuous function of the pose that the encoder can learn. It covers
    [0, π] and has a gradient everywhere, including at the mean target of uniform rotations
    (126.5°). A plain ``acos(c)`` head, tried first, could not reach the targets' mean and
    never beat a constant prediction.
``cosine`` (the 2021 paper)
    ``d = 2·acos(clip(c, 0, 1))``, in [0, π]. It is exact when the embedding is the quaternion
    with ``⟨q_i, q_j⟩ ≥ 0``, but ``q`` and ``−q`` are one rotation and no continuous encoder can
    pick consistent signs over SO(3): pairs with ``c ≤ 0`` are pinned at π, with zero gradient.
``euclidean`` (the seed report)
    ``d = ‖e_i − e_j‖``, unbounded.

Training lives in :mod:`cryoposes.training`.

**Using a trained model.**

:func:`distance_matrix` embeds each image once and evaluates the head on all pairs of
embeddings (N×N, float64), averaged over in-plane turns of the images. The image split
(train / validation / test indices into the dataset trained on) is stored in the saved model
(``model.metadata["split"]``; read it with :func:`load_split`) so that recovery runs on the
test images (:func:`test_indices`).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from cryoposes.backend import keras, ops

from cryoposes import imaging
from cryoposes.errors import InputError
from cryoposes.recovery import DenseTargets, PairTargets, neighbour_count
from cryoposes.options import DENSE_LIMIT, HEADS, NORMALIZATIONS, TURNS

__all__ = [
    "pairwise_head",
    "SiameseDistance",
    "load",
    "as_model",
    "load_split",
    "test_indices",
    "embed",
    "distance_matrix",
    "paired_head",
    "turned_embeddings",
    "EmbeddingTargets",
    "learned_targets",
]

_COSINE_EPSILON = 1e-6


def pairwise_head(first, second, head: str = "rotation", xp=np):
    """Head distances between every row of ``first`` and every row of ``second``.

    One formula for NumPy arrays (``xp=numpy``) and tensors (``xp=keras.ops``), so that
    training and :func:`distance_matrix` agree.

    Parameters
    ----------
    first : array_like or tensor
        (M, K) embeddings.
    second : array_like or tensor
        (N, K) embeddings.
    head : str, optional
        One of :data:`cryoposes.options.HEADS`.
    xp : module, optional
        ``numpy`` or ``keras.ops``.

    Returns
    -------
    numpy.ndarray or tensor
        (M, N) distances: radians for the ``"rotation"`` and ``"cosine"`` heads (about 1e-3 at
        identical embeddings, kept off arccos' infinite slope), embedding units for
        ``"euclidean"``.

    Raises
    ------
    ValueError
        Unknown ``head``.

    Examples
    --------
    >>> from cryoposes.siamese import pairwise_head
    >>> first = np.array([[1.0, 0.0], [0.0, 1.0]])
    >>> pairwise_head(first, first[:1]).round(3).tolist()
    [[0.001], [2.094]]
    >>> pairwise_head(first, first, "euclidean").round(3).tolist()
    [[0.0, 1.414], [1.414, 0.0]]
    """
    if head not in HEADS:
        raise ValueError(f"unknown head {head!r}; choose one of {HEADS}")
    if head == "euclidean":
        squared = (
            xp.sum(first * first, axis=-1)[:, None]
            + xp.sum(second * second, axis=-1)[None, :]
            - 2.0 * xp.matmul(first, xp.transpose(second))
        )
        return _head_distance(squared, head, xp)
    cosine = xp.matmul(_unit(first, xp), xp.transpose(_unit(second, xp)))
    return _head_distance(cosine, head, xp)


def paired_head(first, second, head: str = "rotation", xp=np):
    """Head distances between row ``b`` of ``first`` and row ``b`` of ``second``, for every ``b``.

    The same values as the diagonal of :func:`pairwise_head` (one formula), for sampled pairs.

    Parameters
    ----------
    first, second : array_like or tensor
        (B, K) embeddings.
    head : str, optional
        One of :data:`cryoposes.options.HEADS`.
    xp : module, optional
        ``numpy`` or ``keras.ops``.

    Returns
    -------
    numpy.ndarray or tensor
        (B,) distances.

    Examples
    --------
    >>> from cryoposes.siamese import paired_head, pairwise_head
    >>> first, second = np.random.default_rng(0).standard_normal((2, 5, 8))
    >>> bool(np.allclose(paired_head(first, second), np.diag(pairwise_head(first, second))))
    True
    """
    if head not in HEADS:
        raise ValueError(f"unknown head {head!r}; choose one of {HEADS}")
    if head == "euclidean":
        difference = first - second
        return _head_distance(xp.sum(difference * difference, axis=-1), head, xp)
    return _head_distance(xp.sum(_unit(first, xp) * _unit(second, xp), axis=-1), head, xp)


def _unit(embeddings, xp):
    return embeddings / xp.sqrt(xp.maximum(xp.sum(embeddings * embeddings, axis=-1, keepdims=True), 1e-12))


def _head_distance(similarity, head, xp):
    """The head's distance from the squared embedding distance (``euclidean``) or the cosine."""
    if head == "euclidean":
        # The small floor keeps the gradient finite at zero distance (the diagonal).
        return xp.sqrt(xp.maximum(similarity, 0.0) + 1e-12)
    if head == "cosine":
        return 2.0 * xp.arccos(xp.clip(similarity, 0.0, 1.0 - _COSINE_EPSILON))
    return xp.arccos(xp.clip((3.0 * similarity - 1.0) / 2.0, -1.0 + _COSINE_EPSILON, 1.0 - _COSINE_EPSILON))


@keras.saving.register_keras_serializable(package="cryoposes")
class SiameseDistance(keras.Model):
    """Shared encoder and distance head: ``model(images)`` is the (B, B) matrix of pair distances.

    Each image (B, L, L, 1) is standardised (zero mean, unit variance: the distance must not
    depend on the image's scale or offset), encoded once into an embedding (``embed``: (B, K)),
    and :func:`pairwise_head` compares all pairs.

    Parameters
    ----------
    image_size : int
        Side L of the square input images.
    embedding : int, optional
        Size K of the embedding.
    head : str, optional
        One of :data:`cryoposes.options.HEADS`.
    filters : sequence of int, optional
        Channels of the convolution blocks; each block is two 3×3 convolutions, each normalised
        (``normalization``) and followed by ReLU, then 2×2 max pooling.
    normalization : str, optional
        One of :data:`cryoposes.options.NORMALIZATIONS`.
    metadata : dict, optional
        JSON-serialisable, saved with the model (split, training settings, history).
    crop : int, optional
        Side of the central square the encoder looks at (default: the whole image). The
        particle sits in the middle of a box large enough to turn it (the map's diagonal), so
        the outer ring is mostly background, or noise only.
    input_size : int, optional
        Side the cropped square is resized to (anti-aliased bilinear) before the convolutions
        (default: no resizing). Downsampling averages white noise away (binning by 2 divides
        its variance by 4) and makes each step cheaper; the images and their augmentations
        keep the full size L.
    **kwargs
        Passed to ``keras.Model``.

    Raises
    ------
    ValueError
        Unknown ``head`` or ``normalization``, ``embedding`` < 1, ``crop`` not in
        [1, ``image_size``], ``input_size`` not in [1, ``crop``], or ``input_size`` too small
        for one 2×2 pooling per block.

    Examples
    --------
    >>> from cryoposes.siamese import SiameseDistance
    >>> model = SiameseDistance(32, filters=(8, 16), embedding=8)
    >>> images = np.zeros((3, 32, 32, 1), np.float32)
    >>> tuple(model.embed(images).shape), tuple(model(images).shape)
    ((3, 8), (3, 3))
    """

    def __init__(self, image_size: int, embedding: int = 64, head: str = "rotation",
                 filters=(16, 32, 64, 128), normalization: str = "batch", metadata=None,
                 crop: int | None = None, input_size: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if head not in HEADS:
            raise ValueError(f"unknown head {head!r}; choose one of {HEADS}")
        if normalization not in NORMALIZATIONS:
            raise ValueError(f"unknown normalization {normalization!r}; choose one of {NORMALIZATIONS}")
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
                    # epoch the evaluation-mode statistics lagged far behind the weights and
                    # the embeddings collapsed; training also recomputes them at the end.
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
        """The model of a :meth:`get_config` dict (untrained: weights are loaded separately)."""
        return cls(**config)


def load(path) -> SiameseDistance:
    """Load a distance model saved with ``model.save(path)``.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.keras`` file written by :func:`cryoposes.training.train`'s caller or
        ``cryoposes train-distance``.

    Returns
    -------
    SiameseDistance
        The model, uncompiled (ready for :func:`embed` and :func:`distance_matrix`).

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    InputError
        The file is not a cryoposes distance model.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no distance model at {path}")
    try:
        model = keras.models.load_model(path, compile=False)
    except Exception as error:  # Keras raises assorted errors on files it cannot read
        raise InputError(f"{path} is not a readable Keras model ({error})") from error
    if not isinstance(model, SiameseDistance):
        raise InputError(f"{path} holds a {type(model).__name__}, not a cryoposes distance model")
    return model


def as_model(model_or_path) -> SiameseDistance:
    """The model itself, or the model loaded from a path (:func:`load`).

    Parameters
    ----------
    model_or_path : SiameseDistance or str or os.PathLike

    Returns
    -------
    SiameseDistance
    """
    return load(model_or_path) if isinstance(model_or_path, (str, os.PathLike)) else model_or_path


def load_split(model_or_path) -> dict:
    """The train / validation / test image indices stored in a trained model.

    Parameters
    ----------
    model_or_path : SiameseDistance or str or os.PathLike

    Returns
    -------
    dict
        ``"train"``, ``"validation"`` and ``"test"`` → sorted int arrays of indices into the
        dataset the model was trained on.

    Raises
    ------
    InputError
        The model holds no split (it was not made by :func:`cryoposes.training.train`).
    """
    split = as_model(model_or_path).metadata.get("split")
    if split is None:
        raise InputError("this distance model has no stored image split")
    return {key: np.asarray(value, dtype=int) for key, value in split.items()}


def test_indices(model_or_path, n_images: int) -> np.ndarray:
    """Indices of the test images of the dataset the model was trained on.

    These images were never trained or validated on: what ``cryoposes recover DIR --distance
    MODEL.keras`` recovers.

    Parameters
    ----------
    model_or_path : SiameseDistance or str or os.PathLike
    n_images : int
        Size of the dataset at hand, checked against the split's.

    Returns
    -------
    numpy.ndarray
        (T,) int, sorted.

    Raises
    ------
    InputError
        The model was trained on a dataset of another size.
    """
    split = load_split(model_or_path)
    total = sum(len(indices) for indices in split.values())
    if total != n_images:
        raise InputError(f"the distance model was trained on a dataset of {total} images, this one has "
                         f"{n_images}: give the dataset it was trained on")
    return split["test"]


def embed(model_or_path, images, batch_size: int = 256) -> np.ndarray:
    """Embeddings of images: one encoder pass per image.

    Parameters
    ----------
    model_or_path : SiameseDistance or str or os.PathLike
    images : array_like
        (N, L, L), L the model's ``image_size``.
    batch_size : int, optional
        Images per encoder call.

    Returns
    -------
    numpy.ndarray
        (N, K) float64, K the model's ``embedding``.

    Examples
    --------
    >>> import numpy as np
    >>> from cryoposes.siamese import SiameseDistance, embed
    >>> embed(SiameseDistance(32, embedding=12), np.zeros((5, 32, 32))).shape
    (5, 12)
    """
    model = as_model(model_or_path)
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 3 or images.shape[1:] != (model.image_size, model.image_size):
        raise ValueError(f"the model takes images of {model.image_size}×{model.image_size} px, "
                         f"got an array shaped {images.shape}")
    chunks = [ops.convert_to_numpy(model.embed(images[start:start + batch_size]))
              for start in range(0, len(images), batch_size)]
    return np.concatenate(chunks).astype(np.float64) if chunks else np.empty((0, model.embedding))


def distance_matrix(model_or_path, images, batch_size: int = 256, turns: int = TURNS) -> np.ndarray:
    """Learned distances between all pairs of images, averaged over in-plane turns.

    Each image is embedded once per turn; the head is then evaluated on all pairs of
    embeddings. With ``turns`` = K > 1, K such matrices are averaged, of all images turned in
    their plane by 2πk/K (k = 0 … K−1): turning *both* images of a pair by the same α changes
    their poses to ``R_i·Rz(α)`` and ``R_j·Rz(α)``, whose relative rotation
    ``Rz(−α)·R_iᵀR_j·Rz(α)`` has the same angle, so every one of the K matrices estimates the
    same d_q while the network's errors differ between them and partly average out.

    Parameters
    ----------
    model_or_path : SiameseDistance or str or os.PathLike
    images : array_like
        (N, L, L).
    batch_size : int, optional
        Images per encoder call.
    turns : int, optional
        K, the number of in-plane turns averaged (default :data:`cryoposes.options.TURNS`);
        costs K embeddings per image.

    Returns
    -------
    numpy.ndarray
        (N, N) float64, symmetric, in radians for the ``rotation`` and ``cosine`` heads; the
        diagonal is the head's value at identical embeddings (below 3e-3 rad).

    Examples
    --------
    >>> import numpy as np
    >>> from cryoposes.siamese import SiameseDistance, distance_matrix
    >>> images = np.random.default_rng(0).standard_normal((6, 32, 32))
    >>> distance_matrix(SiameseDistance(32, embedding=12), images, turns=2).shape
    (6, 6)
    """
    model = as_model(model_or_path)
    embeddings = turned_embeddings(model, images, batch_size, turns).astype(np.float64)
    distances = sum(pairwise_head(embeddings[:, k], embeddings[:, k], model.head) for k in range(embeddings.shape[1]))
    distances = distances / embeddings.shape[1]
    return (distances + distances.T) / 2.0


def turned_embeddings(model_or_path, images, batch_size: int = 256, turns: int = TURNS,
                      progress: bool = False, checkpoint=None) -> np.ndarray:
    """Embeddings of the images and of their in-plane turns: what :func:`distance_matrix` and
    :class:`EmbeddingTargets` compare, N × turns × K numbers instead of N².

    Parameters
    ----------
    model_or_path : SiameseDistance or str or os.PathLike
    images : array_like
        (N, L, L), L the model's ``image_size``.
    batch_size : int, optional
        Images per encoder call.
    turns : int, optional
        T, the in-plane turns ``2πk/T`` of each image.
    progress : bool, optional
        Show a progress bar over the images.
    checkpoint : str or os.PathLike, optional
        A ``.npy`` file the embeddings are written to as they are made (with a ``.json`` beside
        it saying how many images are done, for which images, model and turns): a run that
        stopped resumes there, a finished one is read back; one made for other images, another
        model or other turns is started again.

    Returns
    -------
    numpy.ndarray
        (N, T, K) float32.

    Examples
    --------
    >>> import numpy as np
    >>> from cryoposes.siamese import SiameseDistance, turned_embeddings
    >>> turned_embeddings(SiameseDistance(32, embedding=12), np.zeros((5, 32, 32)), turns=2).shape
    (5, 2, 12)
    """
    model = as_model(model_or_path)
    if isinstance(turns, bool) or int(turns) != turns or turns < 1:
        raise ValueError(f"turns must be a positive integer, got {turns!r}")
    images = np.asarray(images, dtype=np.float32)
    shape = (len(images), int(turns), model.embedding)
    done, record = 0, None
    if checkpoint is None:
        result = np.empty(shape, dtype=np.float32)
    else:
        result, done, record = _open_checkpoint(Path(checkpoint), shape, images, model)
    chunk = max(batch_size, 4096)  # rotations and encoder calls on bounded slices of the stack
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(images), initial=done, desc="embedding", unit="image")
    turns = int(turns)
    # With T a multiple of 4, turn k is turn k mod T/4 plus quarter turns, which are exact and
    # ~5× cheaper than interpolating (at 100,000 images the rotations took ~200 s of ~25 min).
    quarter = turns // 4 if turns % 4 == 0 else turns
    for start in range(done, len(images), chunk):
        block = images[start:start + chunk]
        interpolated = []
        for k in range(turns):
            if k < quarter:
                turned = block if k == 0 else imaging.rotate_images(block, np.full(len(block), 2 * np.pi * k / turns))
                interpolated.append(turned)
            else:
                turned = imaging.rotate_images(interpolated[k % quarter], np.full(len(block), (k // quarter) * np.pi / 2))
            result[start:start + len(block), k] = embed(model, turned, batch_size)
        if record is not None:
            result.flush()
            _write_json(record["path"], {**record["about"], "done": start + len(block)})
        if bar is not None:
            bar.update(len(block))
    if bar is not None:
        bar.close()
    return np.asarray(result)


def _write_json(path: Path, content: dict) -> None:
    """Replace a small JSON file atomically (a stop mid-write leaves the old one)."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(content, indent=1))
    partial.replace(path)


def _open_checkpoint(path: Path, shape, images, model):
    """The embeddings file to fill, how many images it already holds, and its progress record."""
    if path.suffix != ".npy":
        raise ValueError(f"the embeddings checkpoint must be a .npy file, got {path}")
    about = {
        "shape": list(shape),
        # What the embeddings are of: the images' bytes, the model's weights, the turns.
        "images_blake2b": hashlib.blake2b(np.ascontiguousarray(images).data, digest_size=16).hexdigest(),
        "model_blake2b": hashlib.blake2b(b"".join(np.asarray(w).tobytes() for w in model.get_weights()),
                                         digest_size=16).hexdigest(),
    }
    progress_path = path.with_suffix(".json")
    done = 0
    if path.is_file() and progress_path.is_file():
        previous = json.loads(progress_path.read_text())
        if {key: previous.get(key) for key in about} == about:
            done = int(previous["done"])
    if done:
        result = np.lib.format.open_memmap(path, mode="r+")
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        result = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=tuple(shape))
        _write_json(progress_path, {**about, "done": 0})
    return result, done, {"path": progress_path, "about": about}


class EmbeddingTargets(PairTargets):
    """Learned distances of image pairs computed from per-image embeddings, for recovery at scale.

    ``d(i, j)`` is the head's distance averaged over the T in-plane turns, exactly the entry
    ``(i, j)`` of :func:`distance_matrix`, but computed per sampled pair (in the compiled step
    of :func:`cryoposes.recovery.fit_poses`, and in NumPy for reseating): memory N·T·K numbers.

    Parameters
    ----------
    embeddings : array_like
        (N, T, K) of :func:`turned_embeddings`.
    head : str
        The model's head.

    Examples
    --------
    >>> import numpy as np
    >>> from cryoposes.siamese import EmbeddingTargets, SiameseDistance, distance_matrix, turned_embeddings
    >>> model, images = SiameseDistance(32, embedding=12), np.random.default_rng(0).standard_normal((6, 32, 32))
    >>> targets = EmbeddingTargets(turned_embeddings(model, images, turns=2), model.head)
    >>> i, j = np.array([0, 4]), np.array([3, 5])
    >>> bool(np.allclose(targets.lookup(i, j), distance_matrix(model, images, turns=2)[i, j], atol=1e-5))
    True
    """

    def __init__(self, embeddings, head: str):
        embeddings = np.asarray(embeddings, dtype=np.float32)
        if embeddings.ndim != 3 or not np.all(np.isfinite(embeddings)):
            raise ValueError(f"embeddings must be finite and shaped (N, turns, K), got {embeddings.shape}")
        if head not in HEADS:
            raise ValueError(f"unknown head {head!r}; choose one of {HEADS}")
        if head != "euclidean":
            # Unit length once here, not per pair in every step: the compiled step then reads
            # two rows and takes one dot product per turn (64 instead of 224 ms per 65,536
            # pairs at N = 100,000, T = 8, K = 64 on 2 cores).
            embeddings = _unit(embeddings, np)
        self.embeddings, self.head, self.n = embeddings, head, len(embeddings)

    def _mean_over_turns(self, first, second, xp):
        if self.head == "euclidean":
            return xp.mean(paired_head(first, second, self.head, xp=xp), axis=-1)
        return xp.mean(_head_distance(xp.sum(first * second, axis=-1), self.head, xp), axis=-1)

    def lookup(self, i, j):
        first, second = self.embeddings[i], self.embeddings[j]  # (B, T, K)
        return self._mean_over_turns(first, second, np).astype(np.float32)

    def block(self, rows, columns):
        """(R, C) targets of every particle of ``rows`` against every one of ``columns``."""
        turns = self.embeddings.shape[1]
        return sum(pairwise_head(self.embeddings[rows, k], self.embeddings[columns, k], self.head)
                   for k in range(turns)) / turns

    def tensors(self):
        return {"embeddings": self.embeddings}

    def neighbours(self, k: int, progress: bool = False, shortlist: int | None = None) -> np.ndarray:
        """Each particle's ``k`` nearest others under the learned distance, without the N×N matrix.

        Blocks of rows are compared with everyone by one matrix product of the embeddings (the
        sum over turns of their cosines, or minus their squared distance for the Euclidean
        head: the same order as the distance, up to the head's curvature); the ``shortlist``
        best of each row are then ranked by the exact distance (:meth:`lookup`). Time N²·T·K
        multiply-adds, memory N·T·K plus a block.

        Parameters
        ----------
        k : int
            Neighbours per particle (at most N − 1).
        progress : bool, optional
            Show a progress bar.
        shortlist : int, optional
            Candidates per particle ranked exactly (default ``max(4k, 32)``; with 40, the same
            lists as the full matrix gives on 3,000 images of 5j0n under a trained network).

        Returns
        -------
        numpy.ndarray
            (N·k, 2) int32 pairs ``(i, neighbour)``, k consecutive rows per particle, nearest
            first (as :func:`cryoposes.recovery.nearest_neighbours`).

        Raises
        ------
        ValueError
            Fewer than 2 particles, or ``k`` < 1.

        Examples
        --------
        >>> import numpy as np
        >>> from cryoposes.siamese import EmbeddingTargets
        >>> targets = EmbeddingTargets(np.random.default_rng(0).standard_normal((50, 2, 8)), "rotation")
        >>> targets.neighbours(3).shape
        (150, 2)
        """
        n = self.n
        k = neighbour_count(n, k)
        shortlist = int(min(n - 1, max(4 * k, 32) if shortlist is None else max(shortlist, k)))
        flat = self.embeddings.reshape(n, -1)
        squared = np.sum(flat * flat, axis=1)
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=n, desc="neighbours", unit="image")
        pairs = []
        for first in range(0, n, 512):  # a (512, N) float32 block at a time
            rows = np.arange(first, min(first + 512, n))
            score = flat[rows] @ flat.T
            if self.head == "euclidean":
                score = 2.0 * score - squared  # −‖eᵢ − eⱼ‖² up to a constant per row
            score[np.arange(len(rows)), rows] = -np.inf
            short = np.argpartition(score, n - shortlist, axis=1)[:, n - shortlist:]  # the largest
            exact = self.lookup(np.repeat(rows, shortlist), short.ravel()).reshape(len(rows), shortlist)
            nearest = np.take_along_axis(short, np.argsort(exact, axis=1, kind="stable")[:, :k], axis=1)
            pairs.append(np.stack([np.repeat(rows, k), nearest.ravel()], axis=1))
            if bar is not None:
                bar.update(len(rows))
        if bar is not None:
            bar.close()
        return np.concatenate(pairs).astype("int32")

    def pairs(self, held, i, j):
        embeddings = held["embeddings"]
        return self._mean_over_turns(ops.take(embeddings, i, axis=0), ops.take(embeddings, j, axis=0), ops)


def learned_targets(model_or_path, images, turns: int = TURNS, dense_limit: int = DENSE_LIMIT,
                    progress: bool = False, checkpoint=None) -> PairTargets:
    """Recovery targets from a distance network: the N×N matrix up to ``dense_limit`` images,
    embeddings compared per pair beyond it (memory linear in N).

    Parameters
    ----------
    model_or_path : SiameseDistance or str or os.PathLike
    images : array_like
        (N, L, L) images of the model's size.
    turns : int, optional
        In-plane turns averaged.
    dense_limit : int, optional
        Most images for which the matrix is built.
    progress : bool, optional
        Show a progress bar while embedding.
    checkpoint : str or os.PathLike, optional
        Where the embeddings are kept while they are made, to resume a stopped run
        (:func:`turned_embeddings`).

    Returns
    -------
    cryoposes.recovery.DenseTargets or EmbeddingTargets

    Examples
    --------
    >>> import numpy as np
    >>> from cryoposes.siamese import SiameseDistance, learned_targets
    >>> model, images = SiameseDistance(32, embedding=12), np.zeros((5, 32, 32))
    >>> type(learned_targets(model, images, turns=2)).__name__, type(learned_targets(model, images, 2, 4)).__name__
    ('DenseTargets', 'EmbeddingTargets')
    """
    model = as_model(model_or_path)
    embeddings = EmbeddingTargets(turned_embeddings(model, images, turns=turns, progress=progress, checkpoint=checkpoint),
                                    model.head)
    if len(embeddings.embeddings) > dense_limit:
        return embeddings
    everyone = np.arange(embeddings.n)
    # Row blocks into one float32 matrix: the whole matrix per turn in float64 took 9 GB at
    # N = 20,000 (several N² temporaries alive at once).
    matrix = np.empty((embeddings.n, embeddings.n), dtype=np.float32)
    for first in range(0, embeddings.n, 1024):
        rows = everyone[first:first + 1024]
        matrix[rows] = embeddings.block(rows, everyone)
    matrix += matrix.T
    matrix *= 0.5
    return DenseTargets(matrix)
