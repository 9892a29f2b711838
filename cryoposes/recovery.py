"""Orientation recovery: unit quaternions fitted to pairwise distances.

Given target distances ``d(i, j)`` between N particles (the true ``d_q``, the Euclidean
baseline, or a learned distance), find unit quaternions ``q̂₁ … q̂_N`` minimising the mean over
sampled pairs of ``(d(i, j) − d_q(q̂ᵢ, q̂ⱼ))²`` (the seed report's Eq. 6).

It is written as a Keras model, :class:`QuaternionModel`: the only weight is the N×4 matrix of
quaternions (normalised in the forward pass), the input is a batch of index pairs and the output
their ``d_q``, so it trains with ``model.fit`` exactly like the distance network (the seed report
calls the two optimisations duals), with callbacks for progress, early stopping and
checkpoint/resume, and an XLA-compiled step.

Starts (``init``):

* ``"random"``: uniform on SO(3);
* ``"true"``: the true poses (the seed report's Table 1);
* ``"spectral"``: from the distance matrix alone. ``Gᵢⱼ = 1 + 2·cos dᵢⱼ = tr(Rᵢᵀ·Rⱼ) =
  vec(Rᵢ)·vec(Rⱼ)`` is a Gram matrix of rank ≤ 9; its top 9 eigenvectors give the stacked
  ``vec(Rᵢ)`` up to an orthogonal 9×9 map ``O``, found by alternating projection: round each
  3×3 block of ``Y·O`` to the nearest rotation, then refit ``O`` by Procrustes
  (:func:`spectral_initialization`).

Pairs (``sampling``): ``"random"`` uniform pairs ``i ≠ j``; ``"knn"`` pairs of each particle and
its k nearest neighbours under the target distance; ``"mixed"`` half and half (the seed report's
Phase 2.1). A batch as large as all pairs uses all pairs every step.

Gradient steps alone leave some particles stranded in local minima from a random start (on
5,000 exact poses, the median error stayed at 15–40°); :class:`Reseat`, a callback that moves
each particle to a nearest neighbour's pose when that fits its distances better, removes them
(the same runs reach the float64 precision floor).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import scipy.linalg
import scipy.sparse.linalg

import cryoposes  # noqa: F401  (sets TensorFlow's log level before Keras imports it)
import keras
from keras import ops

from cryoposes import rotations
from cryoposes.alignment import nearest_rotation

__all__ = [
    "INITS",
    "SAMPLINGS",
    "QuaternionModel",
    "PairSampler",
    "RecoveryResult",
    "spectral_initialization",
    "nearest_neighbours",
    "fit_poses",
    "recover",
]

INITS = ("random", "spectral", "true")
SAMPLINGS = ("random", "knn", "mixed")


@keras.saving.register_keras_serializable(package="cryoposes")
class QuaternionModel(keras.Model):
    """One free quaternion per particle; maps index pairs (B, 2) to their distances ``d_q`` (B,).

    The weight is stored unnormalised and normalised in the forward pass, so the optimiser moves
    freely in R⁴ and the output only depends on the rotations.
    """

    def __init__(self, n: int, initial=None, **kwargs):
        super().__init__(**kwargs)
        self.n = int(n)
        initializer = (
            keras.initializers.Constant(np.asarray(initial, dtype="float32"))
            if initial is not None
            else "random_normal"
        )
        self.quaternions = self.add_weight(
            shape=(self.n, 4), initializer=initializer, name="quaternions", trainable=True
        )

    def call(self, pairs):
        pairs = ops.cast(pairs, "int32")
        q = rotations.normalize(self.quaternions, xp=ops)
        first = ops.take(q, pairs[:, 0], axis=0)
        second = ops.take(q, pairs[:, 1], axis=0)
        return rotations.geodesic_distance(first, second, xp=ops)

    def get_config(self):
        return {"name": self.name, "n": self.n}

    def poses(self) -> np.ndarray:
        """Current estimates as unit quaternions (N, 4), float64, ``w ≥ 0``."""
        q = np.asarray(ops.convert_to_numpy(self.quaternions), dtype=float)
        return rotations.canonical(rotations.normalize(q))


def _check_targets(targets, n):
    """Return ``(lookup(i, j) -> float32 distances, dense matrix or None, n)``."""
    if callable(targets):
        if n is None:
            raise ValueError("give the number of particles n when the targets are a callable")

        def lookup(i, j):
            return np.asarray(targets(i, j), dtype="float32")

        return lookup, None, int(n)
    matrix = np.asarray(targets)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"target distances must be a square N×N matrix, got shape {matrix.shape}")
    if n is not None and n != matrix.shape[0]:
        raise ValueError(f"n = {n} but the distance matrix is {matrix.shape[0]}×{matrix.shape[0]}")
    if not np.all(np.isfinite(matrix)):
        raise ValueError("target distances contain NaN or infinite values")
    matrix = matrix.astype("float32", copy=False)

    def lookup(i, j):
        return matrix[i, j]

    return lookup, matrix, matrix.shape[0]


def nearest_neighbours(distances, k: int) -> np.ndarray:
    """Index pairs (N·k, 2) of each particle and its ``k`` nearest others under ``distances``."""
    distances = np.asarray(distances)
    n = distances.shape[0]
    k = int(min(k, n - 1))
    if k < 1:
        raise ValueError("nearest-neighbour pairs need at least 2 particles and k ≥ 1")
    pairs = []
    for start in range(0, n, 1024):  # row blocks keep the temporary copy small
        block = np.array(distances[start : start + 1024], dtype="float64")
        rows = np.arange(start, start + len(block))
        block[np.arange(len(block)), rows] = np.inf
        neighbours = np.argpartition(block, k - 1, axis=1)[:, :k]
        pairs.append(np.stack([np.repeat(rows, k), neighbours.ravel()], axis=1))
    return np.concatenate(pairs).astype("int32")


class PairSampler(keras.utils.PyDataset):
    """Batches of index pairs and their target distances, one per training step.

    Batch ``index`` of epoch ``e`` is drawn from a generator seeded with ``(seed, e, index)``, so
    a run is reproducible whatever order Keras asks for batches in; ``fit_poses`` sets ``epoch``
    at the start of each epoch (also after a resume).
    """

    def __init__(self, lookup, n, batch_size, sampling="random", neighbours=None, steps_per_epoch=100,
                 seed=0):
        super().__init__(workers=1, use_multiprocessing=False)
        if sampling not in SAMPLINGS:
            raise ValueError(f"unknown sampling {sampling!r}; choose one of {', '.join(SAMPLINGS)}")
        if sampling != "random" and neighbours is None:
            raise ValueError(f"{sampling!r} sampling needs nearest-neighbour pairs")
        if n < 2:
            raise ValueError("recovery needs at least 2 particles")
        self.lookup = lookup
        self.n = int(n)
        self.sampling = sampling
        self.neighbours = neighbours
        self.steps_per_epoch = int(steps_per_epoch)
        self.seed = int(seed)
        self.epoch = 0
        total = self.n * (self.n - 1) // 2
        self.all_pairs = None
        if batch_size >= total:
            i, j = np.triu_indices(self.n, k=1)
            pairs = np.stack([i, j], axis=1).astype("int32")
            self.all_pairs = (pairs, lookup(pairs[:, 0], pairs[:, 1]))
        self.batch_size = int(min(batch_size, total))

    def __len__(self):
        return self.steps_per_epoch

    def _uniform(self, rng, size):
        i = rng.integers(0, self.n, size)
        j = (i + rng.integers(1, self.n, size)) % self.n  # never i
        return np.stack([i, j], axis=1).astype("int32")

    def _knn(self, rng, size):
        return self.neighbours[rng.integers(0, len(self.neighbours), size)]

    def __getitem__(self, index):
        if self.all_pairs is not None:
            return self.all_pairs
        rng = np.random.default_rng([self.seed, self.epoch, int(index)])
        if self.sampling == "random":
            pairs = self._uniform(rng, self.batch_size)
        elif self.sampling == "knn":
            pairs = self._knn(rng, self.batch_size)
        else:
            half = self.batch_size // 2
            pairs = np.concatenate([self._knn(rng, half), self._uniform(rng, self.batch_size - half)])
        return pairs, self.lookup(pairs[:, 0], pairs[:, 1])


def spectral_initialization(distances, restarts: int = 32, iterations: int = 100, subset: int = 300,
                            seed=0) -> np.ndarray:
    """Poses (N, 4) from a distance matrix alone, up to the gauges distances cannot see.

    ``G = 1 + 2·cos(D)`` equals ``V·Vᵀ`` with ``V`` the N×9 stack of ``vec(Rᵢ)``; its top 9
    eigenpairs give ``Y = U·√Λ = V·Oᵀ`` for an unknown orthogonal ``O``. Alternating projection
    finds ``O``: round the 3×3 blocks of ``Y·O`` to rotations, refit ``O`` by Procrustes.
    ``O`` is one 9×9 matrix, so it is searched on ``subset`` random rows, from up to ``restarts``
    random orthogonal starts (the smallest residual wins), then polished on all rows. The
    alternation has local minima: on exact distances 10–60% of the starts reach the exact
    ``O`` (measured on 2,000 poses), so 32 starts all fail with odds below 10⁻⁵.
    """
    distances = np.asarray(distances)
    n = distances.shape[0]
    if distances.ndim != 2 or distances.shape[1] != n or n < 3:
        raise ValueError(f"spectral initialisation needs a square N×N distance matrix, N ≥ 3; got {distances.shape}")
    gram = 1.0 + 2.0 * np.cos(distances.astype("float64"))
    values, vectors = _top_eigenpairs(gram, 9)
    embedding = vectors * np.sqrt(np.maximum(values, 0.0))
    rng = np.random.default_rng(seed)
    rows = embedding[np.sort(rng.choice(n, size=min(n, subset), replace=False))]
    best = None
    for _ in range(restarts):
        orthogonal, _ = np.linalg.qr(rng.standard_normal((9, 9)))
        orthogonal, residual = _round_to_rotations(rows, orthogonal, iterations)
        if best is None or residual < best[0]:
            best = (residual, orthogonal)
        if residual < 1e-6 * len(rows):  # exact up to float32 round-off: nothing left to find
            break
    orthogonal, _ = _round_to_rotations(embedding, best[1], iterations)
    return rotations.matrix_to_quaternion(nearest_rotation((embedding @ orthogonal).reshape(n, 3, 3)))


def _round_to_rotations(embedding, orthogonal, iterations):
    """Alternate: blocks of ``Y·O`` → nearest rotations ``Rᵢ``; ``O`` ← Procrustes(Y, vec(R))."""
    previous = np.inf
    for _ in range(iterations):
        matrices = nearest_rotation((embedding @ orthogonal).reshape(-1, 3, 3)).reshape(-1, 9)
        u, _, vt = np.linalg.svd(embedding.T @ matrices)
        orthogonal = u @ vt
        residual = float(np.sum((embedding @ orthogonal - matrices) ** 2))
        if previous - residual <= 1e-10 * max(residual, 1.0):
            break
        previous = residual
    return orthogonal, residual


def _top_eigenpairs(matrix, k):
    """The ``k`` largest eigenpairs of a symmetric matrix, ascending (Lanczos for large N)."""
    n = matrix.shape[0]
    if n <= 1500:
        return scipy.linalg.eigh(matrix, subset_by_index=[n - k, n - 1])
    values, vectors = scipy.sparse.linalg.eigsh(matrix, k=k, which="LA", v0=np.ones(n))
    order = np.argsort(values)
    return values[order], vectors[:, order]


class Reseat(keras.callbacks.Callback):
    """Moves each particle to the current pose of one of its candidate neighbours when that fits
    its target distances better: a global move that gradient steps cannot make.

    From a random start, gradient descent leaves some particles stranded in the wrong basin of
    their own little problem (the best pose given all the others has several local minima), and
    they stay there however long it runs. A particle's nearest neighbours under the target
    distance are posed almost where it belongs, so trying their poses, scored against the same
    ``partners`` random particles, lifts it out. Runs every ``every`` epochs until ``until``.
    """

    def __init__(self, lookup, candidates, every=2, until=None, partners=256, seed=0):
        super().__init__()
        self.lookup = lookup
        self.candidates = candidates  # (N, C) particle indices
        self.every = every
        self.until = until
        self.partners = partners
        self.seed = seed
        self.moves = []

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every or (self.until is not None and epoch + 1 > self.until):
            return
        q = rotations.normalize(np.asarray(ops.convert_to_numpy(self.model.quaternions), dtype="float32"))
        n = len(q)
        rng = np.random.default_rng([self.seed, epoch])
        partners = rng.integers(0, n, (n, self.partners))
        targets = self.lookup(np.repeat(np.arange(n), self.partners), partners.ravel()).reshape(n, -1)
        others = q[partners]  # (N, M, 4)
        # Poses tried for each particle: its own (column 0) and its candidates' current poses.
        trial = np.concatenate([q[:, None, :], q[self.candidates]], axis=1)  # (N, 1 + C, 4)
        dots = np.abs(trial @ others.transpose(0, 2, 1))  # (N, 1 + C, M)
        fitted = 2.0 * np.arccos(np.clip(dots, 0.0, 1.0 - rotations.ACOS_EPSILON[4]))
        loss = np.mean((fitted - targets[:, None, :]) ** 2, axis=2)
        best = np.argmin(loss, axis=1)
        moved = best > 0
        self.moves.append(int(moved.sum()))
        if moved.any():
            q[moved] = trial[moved, best[moved]]
            self.model.quaternions.assign(q)


class _Timer(keras.callbacks.Callback):
    """Records the loss, the step count and the training time at the end of each epoch."""

    def __init__(self, steps_per_epoch):
        super().__init__()
        self.steps_per_epoch = steps_per_epoch
        self.records = {"step": [], "loss": [], "time": []}
        self.snapshots = []

    def on_train_begin(self, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.records["step"].append((epoch + 1) * self.steps_per_epoch)
        self.records["loss"].append(float(logs["loss"]))
        self.records["time"].append(time.perf_counter() - self.start)


class _SyncSampling(keras.callbacks.Callback):
    """Tells the sampler which epoch is starting: the epoch number Keras passes counts from
    where ``BackupAndRestore`` resumed, so a resumed run equals an uninterrupted one."""

    def __init__(self, sampler):
        super().__init__()
        self.sampler = sampler

    def on_epoch_begin(self, epoch, logs=None):
        self.sampler.epoch = epoch


class _Snapshots(keras.callbacks.Callback):
    """Keeps the poses at the end of each epoch (for error-versus-time curves)."""

    def __init__(self):
        super().__init__()
        self.poses = []

    def on_epoch_end(self, epoch, logs=None):
        self.poses.append(self.model.poses())


class _StopBelow(keras.callbacks.Callback):
    """Stops training once the epoch loss is below ``threshold``."""

    def __init__(self, threshold):
        super().__init__()
        self.threshold = threshold

    def on_epoch_end(self, epoch, logs=None):
        if logs and logs.get("loss", np.inf) < self.threshold:
            self.model.stop_training = True


class _Progress(keras.callbacks.Callback):
    """A tqdm bar over steps, showing the loss."""

    def __init__(self, total_steps, steps_per_epoch):
        super().__init__()
        self.total_steps = total_steps
        self.steps_per_epoch = steps_per_epoch

    def on_train_begin(self, logs=None):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=self.total_steps, desc="recovery", unit="step")

    def on_epoch_end(self, epoch, logs=None):
        self.bar.update(self.steps_per_epoch)
        self.bar.set_postfix(loss=f"{logs['loss']:.3g}")

    def on_train_end(self, logs=None):
        self.bar.close()


@dataclass
class RecoveryResult:
    """Recovered poses and how the fit went."""

    quaternions: np.ndarray
    initial: np.ndarray
    history: dict = field(default_factory=dict)  # per epoch: step, loss, time (s of training)
    snapshots: list = field(default_factory=list)  # per epoch poses, if asked for


def fit_poses(
    targets,
    n: int | None = None,
    init: str = "random",
    sampling: str = "random",
    steps: int = 3000,
    batch_size: int = 65536,
    learning_rate: float = 0.05,
    final_learning_rate: float = 1e-4,
    k: int = 10,
    seed: int = 0,
    reseat: bool = True,
    true_quaternions=None,
    initial=None,
    steps_per_epoch: int = 50,
    stop_below: float | None = None,
    patience: int | None = None,
    backup_dir=None,
    snapshots: bool = False,
    progress: bool = True,
    jit_compile: bool = True,
    callbacks=(),
) -> RecoveryResult:
    """Fit N unit quaternions to target distances; see the module docstring.

    ``targets``: an N×N matrix of distances in radians, or a callable ``targets(i, j)`` over
    index arrays (then give ``n``; only random sampling, no spectral start). ``init``: one of
    :data:`INITS` (``"true"`` needs ``true_quaternions``), or pass ``initial`` poses directly.
    Adam, learning rate decaying exponentially from ``learning_rate`` to
    ``final_learning_rate`` over ``steps``. ``stop_below``: stop once an epoch's mean loss is
    below it; ``patience``: early stopping after that many epochs without improvement;
    ``reseat``: during the first three quarters, every epoch, move particles to a neighbour's
    pose when that fits better (:class:`Reseat`); ``backup_dir``: resume an interrupted run
    (``keras.callbacks.BackupAndRestore``), exactly where it stopped. Same
    ``seed`` → same result on CPU.
    """
    lookup, matrix, n = _check_targets(targets, n)
    if init not in INITS:
        raise ValueError(f"unknown init {init!r}; choose one of {', '.join(INITS)}")
    if sampling not in SAMPLINGS:
        raise ValueError(f"unknown sampling {sampling!r}; choose one of {', '.join(SAMPLINGS)}")
    if steps < 1 or batch_size < 1:
        raise ValueError(f"steps and batch size must be positive, got {steps} and {batch_size}")
    if matrix is None and (sampling != "random" or (init == "spectral" and initial is None)):
        raise ValueError("kNN sampling and the spectral start need the targets as a dense matrix")

    # A stream of its own: poses drawn with the same seed elsewhere (say, the simulated truth)
    # must not come back as the "random" start.
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1,)))
    if initial is not None:
        start = rotations.canonical(rotations._check_quaternions(initial))
    elif init == "true":
        if true_quaternions is None:
            raise ValueError("init='true' needs the true quaternions")
        start = rotations.canonical(rotations._check_quaternions(true_quaternions))
    elif init == "spectral":
        start = spectral_initialization(matrix, seed=seed)
    else:
        start = rotations.random_quaternions(n, rng)
    if start.shape != (n, 4):
        raise ValueError(f"initial poses must be shaped ({n}, 4), got {start.shape}")

    neighbours = nearest_neighbours(matrix, k) if matrix is not None else None
    steps_per_epoch = int(min(steps_per_epoch, steps))
    epochs = math.ceil(steps / steps_per_epoch)
    sampler = PairSampler(lookup, n, batch_size, sampling, neighbours, steps_per_epoch, seed)

    model = QuaternionModel(n, initial=start)
    model(np.zeros((1, 2), dtype="int32"))  # built before fit, as BackupAndRestore requires
    decay = (final_learning_rate / learning_rate) ** (1.0 / max(epochs * steps_per_epoch, 1))
    schedule = keras.optimizers.schedules.ExponentialDecay(learning_rate, 1, decay)
    model.compile(optimizer=keras.optimizers.Adam(schedule), loss="mse", jit_compile=jit_compile)

    timer = _Timer(steps_per_epoch)
    used = [_SyncSampling(sampler), timer, *callbacks]
    keeper = _Snapshots() if snapshots else None
    if keeper is not None:
        used.append(keeper)
    if stop_below is not None:
        used.append(_StopBelow(stop_below))
    if patience is not None:
        used.append(keras.callbacks.EarlyStopping("loss", patience=patience, min_delta=0.0,
                                                  restore_best_weights=True))
    if reseat:
        candidates = (
            neighbours[:, 1].reshape(n, -1)
            if neighbours is not None
            else rng.integers(0, n, (n, 4 * k))  # no neighbour lists without a dense matrix
        )
        used.append(Reseat(lookup, candidates, every=1, until=max(3 * epochs // 4, 1), seed=seed))
    if backup_dir is not None:
        used.append(keras.callbacks.BackupAndRestore(str(backup_dir), delete_checkpoint=True))
    if progress:
        used.append(_Progress(epochs * steps_per_epoch, steps_per_epoch))
    model.fit(sampler, epochs=epochs, callbacks=used, verbose=0, shuffle=False)
    return RecoveryResult(
        quaternions=model.poses(),
        initial=start,
        history=timer.records,
        snapshots=keeper.poses if keeper is not None else [],
    )


def recover(targets, n: int | None = None, **options) -> np.ndarray:
    """Recovered poses (N, 4) fitted to ``targets``; options as :func:`fit_poses`."""
    return fit_poses(targets, n, **options).quaternions
