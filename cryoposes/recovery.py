"""Orientation recovery: unit quaternions fitted to pairwise distances.

Given target distances ``d(i, j)`` between N particles (the true ``d_q``, the Euclidean
baseline, or a learned distance), find unit quaternions ``q̂₁ … q̂_N`` minimising the mean over
sampled pairs of ``(d(i, j) − d_q(q̂ᵢ, q̂ⱼ))²`` (the seed report's Eq. 6).

It is written as a Keras model, :class:`QuaternionModel`: the only trained weight is the N×4
matrix of quaternions (normalised in the forward pass), the input is a batch of index pairs and
the output their ``d_q``, so it trains with ``model.fit`` exactly like the distance network (the seed report
calls the two optimisations duals), with callbacks for progress, early stopping and
checkpoint/resume, and an XLA-compiled step.

Starts (``init``):

* ``"random"``: uniform on SO(3);
* ``"true"``: the true poses (the seed report's Table 1);
* ``"spectral"``: from the distance matrix alone (:func:`cryoposes.spectral.spectral_initialization`).

Pairs (``sampling``): ``"random"`` uniform pairs ``i ≠ j``; ``"knn"`` pairs of each particle and
its k nearest neighbours under the target distance; ``"mixed"`` half and half (the seed report's
Phase 2.1). A batch as large as all pairs uses all pairs every step. Pairs are drawn and their
targets looked up inside the compiled step (:class:`PairFit`), and one compiled loop runs a whole
epoch of steps, so the steps run at their compiled speed. Targets are a dense matrix
(:class:`DenseTargets`) or, at scale, computed per pair from per-image embeddings
(:class:`cryoposes.siamese.EmbeddingTargets`): N × K numbers instead of N².

Gradient steps alone leave some particles stranded in local minima from a random start (on
5,000 exact poses, the median error stayed at 15–40°); :class:`Reseat`, a callback that moves
each particle to a nearest neighbour's pose when that fits its distances better, removes them
(the same runs reach the float64 precision floor).
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field

import numpy as np

from cryoposes.backend import keras, ops

from cryoposes import rotations
from cryoposes.callbacks import ProgressBar
from cryoposes.options import INITS, RECOVERY_SAMPLINGS as SAMPLINGS
from cryoposes.spectral import spectral_initialization

__all__ = [
    "QuaternionModel",
    "PairTargets",
    "DenseTargets",
    "PairFit",
    "RecoveryConfig",
    "RecoveryResult",
    "nearest_neighbours",
    "Reseat",
    "fit_poses",
    "subset_start",
    "recover",
]


@keras.saving.register_keras_serializable(package="cryoposes")
class QuaternionModel(keras.Model):
    """One free quaternion per particle; maps index pairs (B, 2) to their distances ``d_q`` (B,).

    The weight is stored unnormalised and normalised in the forward pass, so the optimiser moves
    freely in R⁴ and the output only depends on the rotations.

    Parameters
    ----------
    n : int
        Number of particles N.
    initial : array_like, optional
        (N, 4) starting quaternions (default: random normal).

    Examples
    --------
    >>> from cryoposes.recovery import QuaternionModel
    >>> model = QuaternionModel(3, initial=[[1.0, 0, 0, 0], [0, 1, 0, 0], [0, 1, 0, 0]])
    >>> [round(float(d), 2) for d in model(np.array([[0, 1], [1, 2]]))], model.poses().shape
    ([3.14, 0.0], (3, 4))
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


class PairTargets:
    """Target distances of index pairs, wherever :func:`fit_poses` needs them.

    The compiled training step draws its pairs and looks their targets up itself
    (:meth:`pairs`, on tensors it holds: :meth:`tensors`), so no Python runs per step;
    :class:`Reseat` looks targets up in NumPy (:meth:`lookup`). Subclasses: :class:`DenseTargets`
    (an N×N matrix) and :class:`cryoposes.siamese.EmbeddingTargets` (a learned distance from
    per-image embeddings, N × K numbers: memory linear in N).

    Attributes
    ----------
    n : int
        Number of particles N.
    dense : numpy.ndarray or None
        (N, N) float32 targets when they exist as a matrix (the spectral start and kNN pairs
        need one).
    """

    n: int = 0
    dense: np.ndarray | None = None

    def lookup(self, i, j) -> np.ndarray:
        """Targets of index arrays ``i`` and ``j`` (NumPy), float32."""
        raise NotImplementedError

    def block(self, rows, columns) -> np.ndarray:
        """(R, C) targets of every particle of ``rows`` against every one of ``columns`` (NumPy)."""
        raise NotImplementedError

    def tensors(self) -> dict:
        """The arrays :meth:`pairs` reads, by name: the fit holds them as constant weights."""
        raise NotImplementedError

    def neighbours(self, k: int, progress: bool = False) -> np.ndarray:
        """(N·k, 2) int32 pairs of each particle and its ``k`` nearest others under the targets,
        laid out as :func:`nearest_neighbours` lays them out (kNN pairs, reseating candidates);
        ``progress`` shows a bar where the search is long."""
        raise NotImplementedError

    def pairs(self, held: dict, i, j):
        """Targets of index tensors ``i`` and ``j`` (``keras.ops``), from the held tensors."""
        raise NotImplementedError


class DenseTargets(PairTargets):
    """Targets from an (N, N) matrix of distances in radians.

    Parameters
    ----------
    matrix : array_like
        (N, N) finite distances.

    Raises
    ------
    ValueError
        Not square, not finite, or too large to index in int32 (N > 46,340; use embeddings).

    Examples
    --------
    >>> from cryoposes.recovery import DenseTargets
    >>> targets = DenseTargets([[0.0, 1.0], [1.0, 0.0]])
    >>> targets.n, targets.lookup(np.array([0]), np.array([1])).tolist()
    (2, [1.0])
    """

    def __init__(self, matrix):
        matrix = np.asarray(matrix)
        if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
            raise ValueError(f"target distances must be a square N×N matrix, got shape {matrix.shape}")
        if not np.all(np.isfinite(matrix)):
            raise ValueError("target distances contain NaN or infinite values")
        if matrix.shape[0] ** 2 >= 2**31:
            raise ValueError(f"an N×N matrix of N = {matrix.shape[0]} is too large; give per-image "
                             "embeddings instead (cryoposes.siamese.EmbeddingTargets)")
        self.dense = matrix.astype("float32", copy=False)
        self.n = matrix.shape[0]

    def lookup(self, i, j):
        return self.dense[i, j]

    def block(self, rows, columns):
        return self.dense[np.ix_(rows, columns)]

    def tensors(self):
        return {"matrix": self.dense.ravel()}

    def neighbours(self, k, progress=False):
        return nearest_neighbours(self.dense, k)

    def pairs(self, held, i, j):
        return ops.take(held["matrix"], i * self.n + j)


def _check_targets(targets) -> PairTargets:
    return targets if isinstance(targets, PairTargets) else DenseTargets(targets)


def neighbour_count(n: int, k: int) -> int:
    """``k`` neighbours per particle, at most N − 1 of N; refused below 1 (ValueError)."""
    k = int(min(k, n - 1))
    if k < 1:
        raise ValueError("nearest-neighbour pairs need at least 2 particles and k ≥ 1")
    return k


def nearest_neighbours(distances, k: int) -> np.ndarray:
    """Index pairs of each particle and its ``k`` nearest others under ``distances``.

    Parameters
    ----------
    distances : array_like
        (N, N); read by blocks of rows, so a memory-mapped matrix stays on disk.
    k : int
        Neighbours per particle (at most N − 1).

    Returns
    -------
    numpy.ndarray
        (N·k, 2) int32 pairs ``(i, neighbour)``, k consecutive rows per particle ``i``.

    Raises
    ------
    ValueError
        Fewer than 2 particles, or ``k`` < 1.

    Examples
    --------
    >>> from cryoposes.recovery import nearest_neighbours
    >>> nearest_neighbours([[0, 1, 3], [1, 0, 2], [3, 2, 0]], 1).tolist()
    [[0, 1], [1, 0], [2, 1]]
    """
    distances = np.asarray(distances)
    n = distances.shape[0]
    k = neighbour_count(n, k)
    pairs = []
    for start in range(0, n, 1024):  # row blocks keep the temporary copy small
        block = np.array(distances[start : start + 1024], dtype="float64")
        rows = np.arange(start, start + len(block))
        block[np.arange(len(block)), rows] = np.inf
        neighbours = np.argpartition(block, k - 1, axis=1)[:, :k]
        pairs.append(np.stack([np.repeat(rows, k), neighbours.ravel()], axis=1))
    return np.concatenate(pairs).astype("int32")


class PairFit(QuaternionModel):
    """:class:`QuaternionModel` that draws its own pairs and targets inside the compiled step.

    Called on anything (the fit feeds one dummy input per call), it returns the residuals
    ``d_q(q̂ᵢ, q̂ⱼ) − d(i, j)`` (B,) of a fresh batch of pairs; the loss is their mean square
    (the seed report's Eq. 6). Pairs are hashes of (seed, draw count, lane) (:func:`_hashed`):
    the count is a weight of the model, so a run resumed from a checkpoint draws what an
    uninterrupted one would, and the same seed gives the same poses. Keras' own generators cost
    more than the rest of the step on a CPU (measured: 244 against 317 steps/s at N = 5,000).

    Parameters
    ----------
    targets : PairTargets
        The target distances (their arrays become constant weights).
    batch_size : int
        Pairs per step; N(N−1)/2 or more gives all pairs ``i < j`` in every step.
    sampling : str, optional
        One of :data:`cryoposes.options.RECOVERY_SAMPLINGS`.
    neighbours : numpy.ndarray, optional
        Pairs of :func:`nearest_neighbours`, for ``"knn"`` and ``"mixed"`` sampling.
    initial : array_like, optional
        (N, 4) starting poses.
    seed : int, optional
    steps_per_call : int, optional
        Gradient steps in one compiled training step (:meth:`train_step`): ``model.fit`` sees
        one step per ``steps_per_call`` of them, so Keras' per-step machinery (iterator,
        optionals, dispatch) runs once for all. At N = 5,000 on 2 CPU cores that machinery
        cost as much as the step itself (measured: 241 steps/s one per call, ~500 in one loop).

    Raises
    ------
    ValueError
        Unknown ``sampling``, kNN sampling without ``neighbours``, fewer than 2 particles, or
        ``steps_per_call`` < 1.

    Examples
    --------
    >>> from cryoposes.recovery import DenseTargets, PairFit
    >>> fit = PairFit(DenseTargets(np.ones((10, 10))), batch_size=8, initial=np.tile([1.0, 0, 0, 0], (10, 1)))
    >>> residuals = fit(np.zeros((1, 1)))
    >>> tuple(residuals.shape), round(float(residuals[0]), 2)  # identical poses, targets 1 rad
    ((8,), -1.0)
    """

    def __init__(self, targets: PairTargets, batch_size: int, sampling: str = "random", neighbours=None,
                 initial=None, seed: int = 0, steps_per_call: int = 1, **kwargs):
        if sampling not in SAMPLINGS:
            raise ValueError(f"unknown sampling {sampling!r}; choose one of {', '.join(SAMPLINGS)}")
        if sampling != "random" and neighbours is None:
            raise ValueError(f"{sampling!r} sampling needs nearest-neighbour pairs")
        if targets.n < 2:
            raise ValueError("recovery needs at least 2 particles")
        if steps_per_call < 1:
            raise ValueError(f"steps per call must be at least 1, got {steps_per_call}")
        super().__init__(targets.n, initial=initial, **kwargs)
        self.steps_per_call = int(steps_per_call)
        self.targets = targets
        self.sampling = sampling
        total = self.n * (self.n - 1) // 2
        self.batch_size = int(min(batch_size, total))
        self.seed = int(seed)

        def constant(name, array):
            array = np.asarray(array)
            return self.add_weight(shape=array.shape, initializer=keras.initializers.Constant(array),
                                   dtype=str(array.dtype), trainable=False, name=name)

        self.held = {name: constant(name, array) for name, array in targets.tensors().items()}
        self.draws = self.add_weight(shape=(), initializer="zeros", dtype="int32", trainable=False, name="draws")
        self.all_pairs = None
        if batch_size >= total:
            i, j = np.triu_indices(self.n, k=1)
            self.all_pairs = constant("all_pairs", np.stack([i, j], axis=1).astype("int32"))
        self.neighbours = None if neighbours is None else constant("neighbours", np.asarray(neighbours, "int32"))

    @staticmethod
    def _below(hashes, bound):
        return ops.cast(hashes % ops.cast(bound, "uint32"), "int32")

    def _uniform(self, hashes):
        size = hashes.shape[0] // 2
        first = self._below(hashes[:size], self.n)
        return first, (first + 1 + self._below(hashes[size:], self.n - 1)) % self.n  # never i

    def _knn(self, hashes):
        chosen = ops.take(self.neighbours, self._below(hashes, self.neighbours.shape[0]), axis=0)
        return chosen[:, 0], chosen[:, 1]

    def sample(self):
        """A batch of index pairs ``(i, j)``: two (B,) int32 tensors; each call draws anew."""
        if self.all_pairs is not None:
            return self.all_pairs[:, 0], self.all_pairs[:, 1]
        draw = self.draws.value
        self.draws.assign_add(1)
        if self.sampling == "random":
            return self._uniform(_hashed(self.seed, draw, 2 * self.batch_size))
        if self.sampling == "knn":
            return self._knn(_hashed(self.seed, draw, self.batch_size))
        half = self.batch_size // 2
        hashes = _hashed(self.seed, draw, half + 2 * (self.batch_size - half))
        (i1, j1), (i2, j2) = self._knn(hashes[:half]), self._uniform(hashes[half:])
        return ops.concatenate([i1, i2]), ops.concatenate([j1, j2])

    def call(self, steps):
        i, j = self.sample()
        q = rotations.normalize(self.quaternions, xp=ops)
        fitted = rotations.geodesic_distance(ops.take(q, i, axis=0), ops.take(q, j, axis=0), xp=ops)
        return fitted - self.targets.pairs(self.held, i, j)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        return ops.mean(ops.square(y_pred))

    def train_step(self, *args):
        """Keras' own training step, run ``steps_per_call`` times in one compiled loop.

        The logged loss is Keras' running mean over the steps (its tracker is reset per epoch).
        JAX's step is stateless (``train_step(state, data)`` returns the new state), so there
        the state is carried through the loop; TensorFlow and PyTorch update in place.
        """
        step = super().train_step
        if self.steps_per_call == 1:
            return step(*args)
        if keras.backend.backend() == "jax":
            state, data = args
            return ops.fori_loop(1, self.steps_per_call, lambda _, carried: step(carried[1], data),
                                 step(state, data))
        return ops.fori_loop(1, self.steps_per_call, lambda _, logs: step(*args), step(*args))


def _hashed(seed: int, draw, count: int):
    """``count`` pseudo-random uint32 of draw number ``draw``: lowbias32 (C. Wellons' integer
    hash) of a counter mixing seed, draw and lane; uniform enough for indices below 2³¹."""
    lanes = ops.cast(ops.arange(count, dtype="int32"), "uint32")
    x = (lanes * ops.cast(0x9E3779B1, "uint32") + ops.cast(draw, "uint32") * ops.cast(0x85EBCA77, "uint32")
         + ops.cast(seed * 0x27D4EB2F % 2**32, "uint32"))
    x = ops.bitwise_xor(x, ops.right_shift(x, 16)) * ops.cast(0x7FEB352D, "uint32")
    x = ops.bitwise_xor(x, ops.right_shift(x, 15)) * ops.cast(0x846CA68B, "uint32")
    return ops.bitwise_xor(x, ops.right_shift(x, 16))


class Reseat(keras.callbacks.Callback):
    """Callback moving each particle to a candidate's pose when that fits its distances better.

    A global move: gradient steps from a random start leave some particles in the wrong basin of
    their own little problem (the best pose given all others has several local minima). Their
    nearest neighbours under the target distance are posed almost where they belong, so trying
    those poses lifts them out. The number moved per run is appended to ``moves``.

    Parameters
    ----------
    lookup : callable
        ``lookup(i, j)``: target distances of index arrays ``i`` and ``j``.
    candidates : numpy.ndarray
        (N, C) indices of the particles whose poses each particle tries.
    every : int, optional
        Runs at the end of the first epoch and of every ``every``-th one after it.
    until : int, optional
        Last epoch it runs at (default: all).
    partners : int, optional
        Random particles each pose is scored against. 64 tell a misplaced pose from a right one
        as well as 256 did (measured at N = 1,650 with target noise of 0.15 and 0.4 rad: the
        same medians to 0.02°) at a quarter of the cost, which at N = 5,000 was a third of
        the recovery's time.
    seed : int, optional

    Examples
    --------
    >>> from cryoposes.recovery import QuaternionModel, Reseat
    >>> d = np.pi * np.array([[0, 0, 1], [0, 0, 1], [1, 1, 0]])  # particles 0 and 1 alike
    >>> reseat = Reseat(lambda i, j: d[i, j], candidates=np.array([[1], [0], [0]]), every=1)
    >>> reseat.set_model(QuaternionModel(3, initial=np.eye(4)[[1, 0, 1]]))  # 0 misplaced
    >>> reseat.on_epoch_end(0); reseat.moves
    [1]
    """

    def __init__(self, lookup, candidates, every=2, until=None, partners=64, seed=0):
        super().__init__()
        self.lookup = lookup
        self.candidates = candidates  # (N, C) particle indices
        self.every = every
        self.until = until
        self.partners = partners
        self.seed = seed
        self.moves = []

    def on_epoch_end(self, epoch, logs=None):
        """Reseat the particles, if this epoch is one of the ``every``-th up to ``until``."""
        if epoch % self.every or (self.until is not None and epoch + 1 > self.until):
            return
        q = rotations.normalize(np.asarray(ops.convert_to_numpy(self.model.quaternions), dtype="float32"))
        n = len(q)
        rng = np.random.default_rng([self.seed, epoch])
        partners = rng.integers(0, n, (n, self.partners))
        targets = self.lookup(np.repeat(np.arange(n), self.partners), partners.ravel()).reshape(n, -1)
        others = q[partners]  # (N, M, 4)
        # Poses tried for each particle: its own (column 0) and its candidates' current poses.
        trial = np.concatenate([q[:, None, :], q[self.candidates]], axis=1)  # (N, 1 + C, 4)
        fitted = rotations.pairwise_geodesic_distances(trial, others)  # (N, 1 + C, M)
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


@dataclass
class RecoveryResult:
    """Recovered poses and how the fit went: what :func:`fit_poses` returns.

    Attributes
    ----------
    quaternions, initial : numpy.ndarray
        (N, 4) recovered poses (float64 unit quaternions, ``w ≥ 0``) and starting poses.
    history : dict
        ``"step"``, ``"loss"`` and ``"time"`` (seconds of training): one value per epoch.
    snapshots : list of numpy.ndarray
        (N, 4) poses at the end of each epoch, if asked for.

    Examples
    --------
    >>> from cryoposes.recovery import RecoveryResult
    >>> RecoveryResult(np.eye(4), np.eye(4)).history
    {}
    """

    quaternions: np.ndarray
    initial: np.ndarray
    history: dict = field(default_factory=dict)  # per epoch: step, loss, time (s of training)
    snapshots: list = field(default_factory=list)  # per epoch poses, if asked for


@dataclass
class RecoveryConfig:
    """Settings of :func:`fit_poses`.

    Attributes
    ----------
    init : str
        Starting poses, one of :data:`cryoposes.options.INITS` (default ``"spectral"``;
        ``"true"`` needs the true poses; the spectral start needs a dense distance matrix).
    sampling : str
        Pairs per step, one of :data:`cryoposes.options.RECOVERY_SAMPLINGS`.
    steps : int
        Optimisation steps.
    batch_size : int
        Pairs per step; at least all pairs means all pairs every step.
    learning_rate, final_learning_rate : float
        Adam's learning rate decays exponentially from the first to the second over ``steps``.
    k : int
        Nearest neighbours per particle (kNN pairs and reseating candidates).
    seed : int
        Same seed, same poses (on CPU).
    reseat : bool
        During the first three quarters, every other epoch, move particles to a neighbour's pose when
        that fits better (:class:`Reseat`).
    steps_per_epoch : int
        Steps between callbacks (reseating, snapshots, progress, checkpoints).
    stop_below : float or None
        Stop once an epoch's mean loss is below it.
    patience : int or None
        Stop after that many epochs without improvement, keeping the best poses.
    jit_compile : bool
        Compile the training step with XLA.
    """

    init: str = INITS[0]
    sampling: str = SAMPLINGS[0]
    steps: int = 3000
    batch_size: int = 65536
    learning_rate: float = 0.05
    final_learning_rate: float = 1e-4
    k: int = 10
    seed: int = 0
    reseat: bool = True
    steps_per_epoch: int = 50
    stop_below: float | None = None
    patience: int | None = None
    jit_compile: bool = True

    def __post_init__(self):
        if self.init not in INITS:
            raise ValueError(f"unknown init {self.init!r}; choose one of {', '.join(INITS)}")
        if self.sampling not in SAMPLINGS:
            raise ValueError(f"unknown sampling {self.sampling!r}; choose one of {', '.join(SAMPLINGS)}")
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError(f"steps and batch size must be positive, got {self.steps} and {self.batch_size}")
        if not (self.learning_rate > 0 and self.final_learning_rate > 0):
            raise ValueError("learning rates must be positive")


def fit_poses(targets, config: RecoveryConfig | None = None, *, true_quaternions=None,
              initial=None, backup_dir=None, snapshots: bool = False, progress: bool = True,
              callbacks=()) -> RecoveryResult:
    """Fit N unit quaternions to target distances (the seed report's Eq. 6).

    See the module docstring for the method.

    Parameters
    ----------
    targets : array_like or PairTargets
        (N, N) distances in radians, or targets without a matrix (e.g.
        :class:`cryoposes.siamese.EmbeddingTargets`: then a random or given start; kNN pairs
        from their :meth:`~PairTargets.neighbours`).
    config : RecoveryConfig, optional
        The settings (defaults: ``RecoveryConfig()``).
    true_quaternions : array_like, optional
        (N, 4) true poses, for ``init="true"``.
    initial : array_like, optional
        (N, 4) starting poses; overrides ``config.init``.
    backup_dir : str or os.PathLike, optional
        Resume an interrupted run exactly where it stopped (``keras.callbacks.BackupAndRestore``).
    snapshots : bool, optional
        Keep the poses at the end of every epoch (``RecoveryResult.snapshots``).
    progress : bool, optional
        Show a tqdm bar.
    callbacks : sequence of keras.callbacks.Callback, optional
        More callbacks for ``model.fit``.

    Returns
    -------
    RecoveryResult
        ``quaternions`` (N, 4) float64 with ``w ≥ 0``, the start, and the history.

    Examples
    --------
    >>> import numpy as np
    >>> from cryoposes import rotations
    >>> from cryoposes.recovery import RecoveryConfig, fit_poses
    >>> truth = rotations.random_quaternions(50, np.random.default_rng(0))
    >>> result = fit_poses(rotations.pairwise_geodesic_distances(truth), RecoveryConfig(steps=50), progress=False)
    >>> result.quaternions.shape
    (50, 4)
    """
    config = config or RecoveryConfig()
    targets = _check_targets(targets)
    matrix, n = targets.dense, targets.n
    if matrix is None and config.init == "spectral" and initial is None:
        raise ValueError("the spectral start needs the targets as a dense matrix; give initial poses "
                         "(e.g. subset_start) or another start")

    # A stream of its own: poses drawn with the same seed elsewhere (say, the simulated truth)
    # must not come back as the "random" start.
    rng = np.random.default_rng(np.random.SeedSequence(config.seed, spawn_key=(1,)))
    if initial is not None:
        start = rotations.canonical(rotations._check_quaternions(initial))
    elif config.init == "true":
        if true_quaternions is None:
            raise ValueError("init='true' needs the true quaternions")
        start = rotations.canonical(rotations._check_quaternions(true_quaternions))
    elif config.init == "spectral":
        start = spectral_initialization(matrix, seed=config.seed)
    else:
        start = rotations.random_quaternions(n, rng)
    if start.shape != (n, 4):
        raise ValueError(f"initial poses must be shaped ({n}, 4), got {start.shape}")

    # Without a matrix (embeddings at scale) neighbours cost a search: only made for kNN pairs.
    neighbours = None
    if matrix is not None or config.sampling != "random":
        try:
            neighbours = targets.neighbours(config.k, progress=progress)
        except NotImplementedError:
            raise ValueError(f"{config.sampling!r} sampling needs nearest neighbours, which "
                             f"{type(targets).__name__} cannot give") from None
    steps_per_epoch = int(min(config.steps_per_epoch, config.steps))
    epochs = math.ceil(config.steps / steps_per_epoch)
    model = PairFit(targets, config.batch_size, config.sampling, neighbours if config.sampling != "random" else None,
                    initial=start, seed=config.seed, steps_per_call=steps_per_epoch)
    model(np.zeros((1, 1), dtype="float32"))  # built before fit, as BackupAndRestore requires
    decay = (config.final_learning_rate / config.learning_rate) ** (1.0 / max(epochs * steps_per_epoch, 1))
    schedule = keras.optimizers.schedules.ExponentialDecay(config.learning_rate, 1, decay)
    # One compiled call runs a whole epoch of steps (PairFit.train_step): nothing in between.
    model.compile(optimizer=keras.optimizers.Adam(schedule), jit_compile=config.jit_compile)

    timer = _Timer(steps_per_epoch)
    used = [timer, *callbacks]
    keeper = _Snapshots() if snapshots else None
    if keeper is not None:
        used.append(keeper)
    if config.stop_below is not None:
        used.append(_StopBelow(config.stop_below))
    if config.patience is not None:
        used.append(keras.callbacks.EarlyStopping("loss", patience=config.patience, min_delta=0.0,
                                                  restore_best_weights=True))
    if config.reseat:
        candidates = (
            neighbours[:, 1].reshape(n, -1)
            if neighbours is not None
            else rng.integers(0, n, (n, 4 * config.k))  # no neighbour lists made (random pairs at scale)
        )
        # Every other epoch: as accurate as every epoch (measured: the same medians to 0.01° at
        # N = 1,650 with target noise 0.15 and 0.4 rad, random and spectral starts, and at
        # N = 5,000 and 10,000 exact), and at N = 5,000 a tenth of the time instead of a fifth.
        used.append(Reseat(targets.lookup, candidates, every=2, until=max(3 * epochs // 4, 1), seed=config.seed))
    if backup_dir is not None:
        used.append(keras.callbacks.BackupAndRestore(str(backup_dir), delete_checkpoint=True))
    if progress:
        used.append(ProgressBar(epochs, "recovery", steps_per_epoch, unit="step", shown=("loss",)))
    epoch = np.zeros((1, 1), dtype="float32")  # one dummy input per epoch
    model.fit(epoch, epoch[:, 0], batch_size=1, epochs=epochs, callbacks=used, verbose=0, shuffle=False)
    return RecoveryResult(
        quaternions=model.poses(),
        initial=start,
        history=timer.records,
        snapshots=keeper.poses if keeper is not None else [],
    )


def subset_start(targets: PairTargets, size: int, config: RecoveryConfig | None = None,
                 progress: bool = False) -> np.ndarray:
    """Starting poses for many particles without their N×N matrix: a subset fitted, the rest placed.

    ``size`` random particles get the dense matrix of their targets, a spectral start and a fit
    (:func:`fit_poses`); every other particle then starts at the pose of the subset particle it
    is nearest to under the targets (a few degrees off with thousands in the subset). A fit of
    all particles from there (random pairs) refines them. Time and memory grow as N·size.

    Parameters
    ----------
    targets : PairTargets
        The N particles' targets (their :meth:`~PairTargets.block` is used).
    size : int
        Particles in the subset (all of them if N is smaller).
    config : RecoveryConfig, optional
        Settings of the subset's fit (``init`` is set to ``"spectral"``); ``seed`` also picks
        the subset.
    progress : bool, optional
        Show progress bars.

    Returns
    -------
    numpy.ndarray
        (N, 4) starting poses.

    Examples
    --------
    >>> from cryoposes import alignment, rotations
    >>> from cryoposes.recovery import DenseTargets, RecoveryConfig, subset_start
    >>> truth = rotations.random_quaternions(400, 0)
    >>> targets = DenseTargets(rotations.pairwise_geodesic_distances(truth))
    >>> start = subset_start(targets, 200, RecoveryConfig(steps=300))
    >>> start.shape, bool(alignment.align_o4(truth, start).median < 15.0)
    ((400, 4), True)
    """
    config = dataclasses.replace(config or RecoveryConfig(), init="spectral")
    if size < 3:
        raise ValueError(f"the subset needs at least 3 particles, got {size}")
    n = targets.n
    rng = np.random.default_rng(np.random.SeedSequence(config.seed, spawn_key=(2,)))
    subset = np.arange(n) if n <= size else np.sort(rng.choice(n, size, replace=False))
    dense = targets.block(subset, subset)
    fitted = fit_poses((dense + dense.T) / 2.0, config, progress=progress).quaternions
    start = np.empty((n, 4))
    start[subset] = fitted
    rest = np.setdiff1d(np.arange(n), subset)
    for first in range(0, len(rest), 2048):
        rows = rest[first:first + 2048]
        start[rows] = fitted[np.argmin(targets.block(rows, subset), axis=1)]
    return start


def recover(targets, config: RecoveryConfig | None = None, **options) -> np.ndarray:
    """Recovered poses fitted to ``targets``: :func:`fit_poses`' quaternions.

    Parameters
    ----------
    targets : array_like or PairTargets
        As :func:`fit_poses`.
    config : RecoveryConfig, optional
    **options
        The keyword arguments of :func:`fit_poses`.

    Returns
    -------
    numpy.ndarray
        (N, 4) float64 unit quaternions, ``w ≥ 0``.
    """
    return fit_poses(targets, config, **options).quaternions
