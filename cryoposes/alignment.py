"""Scoring recovered poses against the truth, up to what the data cannot determine.

Recovered poses are only defined up to a gauge, so they are aligned to the true poses before
errors are measured. Two gauges matter (see :mod:`cryoposes.rotations`):

* **physical** (:func:`align_physical`): what the images cannot see. Rotating the molecule by
  ``G`` and every pose to ``G·R`` leaves every image unchanged, and so does mirroring it (poses
  ``J·R·J``, ``J = diag(1, 1, −1)``). A reconstruction from recovered poses is right up to
  exactly this, so this is the error that matters for the volume.
* **O(4)** (:func:`align_o4`): what pairwise distances cannot see. ``d_q`` is unchanged by any
  ``q ↦ a ⊗ q ⊗ b`` and ``q ↦ a ⊗ q̄ ⊗ b`` (in matrices ``R ↦ A·R·B`` and ``A·Rᵀ·B``). The 2021
  paper scored over this group (with a 50-minute optimisation); it is the fair score of a
  recovery from distances alone, but a small O(4) error can hide a large physical one.

Both are solved in closed form on rotation matrices (orthogonal Procrustes; for O(4) the
least-squares 9×9 map ``vec(R) ≈ K·vec(R̂)`` and its nearest Kronecker product ``A ⊗ Bᵀ``, then
alternating Procrustes), followed by a few iteratively reweighted steps that lower the mean
geodesic error (the seed report's Eq. 8) when a few poses are far off. Errors are geodesic
angles in degrees, computed in float64.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cryoposes import rotations, symmetry as point_groups
from cryoposes.rotations import nearest_rotation

__all__ = [
    "Alignment",
    "align_physical",
    "align_o4",
    "seed_losses",
]

_IDENTITY = np.array([1.0, 0.0, 0.0, 0.0])


@dataclass(frozen=True)
class Alignment:
    """A gauge transform that maps estimated poses onto the true ones, and the errors left.

    The transform is ``q ↦ left ⊗ f(q) ⊗ right`` where ``f`` is the identity, or, if
    ``flipped``, the handedness flip :func:`cryoposes.rotations.mirror` (``kind="physical"``) or
    the conjugate ``q̄`` (``kind="o4"``). Made by :func:`align_physical` and :func:`align_o4`.

    Attributes
    ----------
    kind : str
        ``"physical"`` or ``"o4"``.
    left : numpy.ndarray
        (4,) unit quaternion ``(w, x, y, z)``.
    right : numpy.ndarray
        (4,) unit quaternion; the identity for physical alignments.
    flipped : bool
        Whether ``f`` is the flip rather than the identity.
    symmetry : str
        Point group the errors allow for, e.g. ``"C1"`` or ``"D2"``.
    aligned : numpy.ndarray
        (N, 4) the transformed estimates, in canonical form.
    errors : numpy.ndarray
        (N,) geodesic error of each aligned pose, in degrees.

    Examples
    --------
    >>> import numpy as np
    >>> from cryoposes.alignment import align_physical
    >>> from cryoposes.rotations import mirror, random_quaternions
    >>> truth = random_quaternions(20, rng=0)
    >>> result = align_physical(truth, mirror(truth))
    >>> result.kind, result.flipped, result.errors.shape, round(result.mean, 2)
    ('physical', True, (20,), 0.0)
    >>> bool(np.allclose(result.apply(mirror(truth)), result.aligned))
    True
    """

    kind: str
    left: np.ndarray
    right: np.ndarray
    flipped: bool
    symmetry: str
    aligned: np.ndarray
    errors: np.ndarray

    @property
    def mean(self) -> float:
        """Mean angular error in degrees."""
        return float(np.mean(self.errors))

    @property
    def median(self) -> float:
        """Median angular error in degrees (the 2021 paper's printed E_OR, there in radians)."""
        return float(np.median(self.errors))

    def apply(self, quaternions):
        """Map other estimates (in the frame of the aligned ones) through this transform.

        Parameters
        ----------
        quaternions : array_like
            (..., 4) unit quaternions ``(w, x, y, z)``.

        Returns
        -------
        numpy.ndarray
            (..., 4) transformed quaternions, in canonical form.
        """
        q = np.asarray(quaternions, dtype=float)
        if self.flipped:
            q = rotations.mirror(q) if self.kind == "physical" else rotations.quaternion_conjugate(q)
        moved = rotations.quaternion_multiply(rotations.quaternion_multiply(self.left, q), self.right)
        return rotations.canonical(moved)

    def summary(self) -> dict:
        """Plain numbers, for printing or JSON.

        Returns
        -------
        dict
            ``kind``, ``flipped``, ``symmetry``, ``mean_deg``, ``median_deg``, and ``left`` and
            ``right`` as lists of four floats.
        """
        return {
            "kind": self.kind,
            "flipped": bool(self.flipped),
            "symmetry": self.symmetry,
            "mean_deg": self.mean,
            "median_deg": self.median,
            "left": [float(x) for x in self.left],
            "right": [float(x) for x in self.right],
        }


def _errors_degrees(q_true, aligned, symmetry):
    if point_groups.symmetry_group(symmetry).shape[0] == 1:
        return np.degrees(rotations.geodesic_distance(q_true, aligned))
    return np.degrees(point_groups.symmetric_geodesic_distance(q_true, aligned, symmetry))


def _check_pair(q_true, q_est):
    q_true = rotations.canonical(rotations._check_quaternions(q_true))
    q_est = rotations.canonical(rotations._check_quaternions(q_est))
    if q_true.ndim != 2 or q_true.shape != q_est.shape:
        raise ValueError(
            f"true and estimated poses must both be shaped (N, 4) with the same N, "
            f"got {q_true.shape} and {q_est.shape}"
        )
    if len(q_true) == 0:
        raise ValueError("no poses to align")
    return q_true, q_est


def _fit_left(targets, estimates, weights):
    """``A`` in SO(3) minimising Σ wᵢ‖Tᵢ − A·Xᵢ‖² (Procrustes)."""
    return nearest_rotation(np.einsum("n,nij,nkj->ik", weights, targets, estimates, optimize=True))


def _fit_right(targets, estimates, weights):
    """``B`` in SO(3) minimising Σ wᵢ‖Tᵢ − Xᵢ·B‖² (Procrustes)."""
    return nearest_rotation(np.einsum("n,nji,njk->ik", weights, estimates, targets, optimize=True))


def _fit_kronecker(targets, estimates, weights):
    """Closed-form start for ``T ≈ A·X·B``: least-squares ``K`` with ``vec(T) ≈ K·vec(X)``
    (row-major vec, so ``K = A ⊗ Bᵀ``), then its nearest Kronecker product (Van Loan–Pitsianis:
    the rank-1 approximation of the rearranged ``K``)."""
    x = estimates.reshape(-1, 9)
    t = targets.reshape(-1, 9)
    weighted = x.T * weights
    # Normal equations of x·Kᵀ ≈ t, 9×9; least squares again, since fewer than 9 poses (or poses
    # in a plane) leave them singular and the minimum-norm K is still a fine start.
    k = np.linalg.lstsq(weighted @ x, weighted @ t, rcond=None)[0].T.reshape(3, 3, 3, 3)  # K[3a+b, 3c+d] = A[a,c]·Bᵀ[b,d]
    rearranged = k.transpose(0, 2, 1, 3).reshape(9, 9)
    u, s, vt = np.linalg.svd(rearranged)
    a = u[:, 0].reshape(3, 3) * np.sqrt(s[0])
    b_t = vt[0].reshape(3, 3) * np.sqrt(s[0])
    if np.linalg.det(a) < 0:  # (−A) ⊗ (−Bᵀ) is the same K
        a, b_t = -a, -b_t
    return nearest_rotation(a), nearest_rotation(b_t.T)


def _fit_both(targets, estimates, weights, start, iterations=200, tolerance=1e-14):
    """Alternating Procrustes for ``T ≈ A·X·B`` from ``start = (A, B)``.

    Both steps only need the 3×3×3×3 cross-moment ``C[i,j,k,l] = Σₙ wₙ·Tₙ[i,j]·Xₙ[k,l]``, so each
    iteration costs the same for any number of poses.
    """
    moment = np.einsum("n,nij,nkl->ijkl", weights, targets, estimates, optimize=True)
    a, b = start
    previous = -np.inf
    for _ in range(iterations):
        a = nearest_rotation(np.einsum("lj,ijkl->ik", b, moment))  # Σ wₙ Tₙ (Xₙ B)ᵀ
        b = nearest_rotation(np.einsum("lj,lkji->ik", a, moment))  # Σ wₙ (A Xₙ)ᵀ Tₙ
        agreement = np.einsum("ik,lj,ijkl->", a, b, moment)  # Σ wₙ tr(Tₙᵀ A Xₙ B)
        if agreement - previous <= tolerance * abs(agreement):
            break
        previous = agreement
    return a, b


def _chordal(targets, estimates, a, b):
    return np.sqrt(np.sum((targets - a @ estimates @ b) ** 2, axis=(-2, -1)))


def _mean_error(targets_q, estimates_q, a, b, symmetry):
    aligned = rotations.quaternion_multiply(rotations.quaternion_multiply(a, estimates_q), b)
    return float(np.mean(_errors_degrees(targets_q, aligned, symmetry)))


def _symmetric_targets(group_matrices, true_matrices, estimates, a, b):
    """Per pose, the symmetry copy ``S·T`` of the true pose nearest to ``A·X·B``."""
    moved = a @ estimates @ b
    copies = np.einsum("gij,njk->gnik", group_matrices, true_matrices)
    best = np.argmax(np.einsum("gnik,nik->gn", copies, moved), axis=0)
    return copies[best, np.arange(len(best))]


def _align(q_true, q_est, kind, symmetry, refine, seed):
    q_true, q_est = _check_pair(q_true, q_est)
    group = point_groups.symmetry_group(symmetry)
    group_matrices = rotations.quaternion_to_matrix(group)
    true_matrices = rotations.quaternion_to_matrix(q_true)
    best = None
    for flipped in (False, True):
        if kind == "physical":
            variant = rotations.mirror(q_est) if flipped else q_est
        else:
            variant = rotations.quaternion_conjugate(q_est) if flipped else q_est
        estimates = rotations.quaternion_to_matrix(variant)
        uniform = np.ones(len(q_true))

        def fit(targets, weights, start=None):
            if kind == "physical":
                return _fit_left(targets, estimates, weights), np.eye(3)
            if start is None:
                start = _fit_kronecker(targets, estimates, weights)
            return _fit_both(targets, estimates, weights, start)

        starts = [fit(true_matrices, uniform)]
        if len(group) > 1:
            # With a symmetric molecule each estimate may match any symmetry copy of its true
            # pose, and the plain fit averages the copies away. One pose pins the left rotation
            # down to a symmetry element, so try a few such candidates as starts too.
            rng = np.random.default_rng(seed)
            for i in rng.choice(len(q_true), size=min(8, len(q_true)), replace=False):
                for copy in group_matrices @ true_matrices[i]:
                    starts.append((copy @ estimates[i].T, np.eye(3)))
            scores = [_mean_error(q_true, variant, rotations.matrix_to_quaternion(a),
                                  rotations.matrix_to_quaternion(b), symmetry) for a, b in starts]
            starts = [starts[int(np.argmin(scores))], starts[0]]

        for a, b in starts:
            error = _mean_error(q_true, variant, rotations.matrix_to_quaternion(a),
                                rotations.matrix_to_quaternion(b), symmetry)
            for step in range(refine + 1):
                targets = true_matrices
                if len(group) > 1:
                    targets = _symmetric_targets(group_matrices, true_matrices, estimates, a, b)
                if step == 0:
                    if len(group) == 1:
                        continue  # the start already is the unweighted fit
                    weights = uniform
                else:
                    # Iteratively reweighted least squares for Σ‖T − A·X·B‖ (not squared):
                    # the chordal distance grows with the angle, so this lowers the mean angle
                    # and is not pulled around by a few far-off poses.
                    weights = 1.0 / np.maximum(_chordal(targets, estimates, a, b), 1e-9)
                new_a, new_b = fit(targets, weights, start=(a, b))
                new_error = _mean_error(q_true, variant, rotations.matrix_to_quaternion(new_a),
                                        rotations.matrix_to_quaternion(new_b), symmetry)
                if new_error >= error - 1e-12:
                    break
                a, b, error = new_a, new_b, new_error
            if best is None or error < best[0] - 1e-12:
                best = (error, flipped, a, b, variant)
    _, flipped, a, b, variant = best
    left, right = rotations.matrix_to_quaternion(a), rotations.matrix_to_quaternion(b)
    if kind == "physical":
        right = _IDENTITY.copy()
    aligned = rotations.canonical(
        rotations.quaternion_multiply(rotations.quaternion_multiply(left, variant), right)
    )
    return Alignment(
        kind=kind,
        left=left,
        right=right,
        flipped=flipped,
        symmetry=str(symmetry).upper(),
        aligned=aligned,
        errors=_errors_degrees(q_true, aligned, symmetry),
    )


def align_physical(q_true, q_est, symmetry: str = "C1", refine: int = 5, seed: int = 0) -> Alignment:
    """Align estimates to the truth by one rotation of the molecule, with or without a flip.

    The transform is ``q̂ ↦ g ⊗ q̂`` or ``g ⊗ mirror(q̂)`` (poses ``G·R̂`` or ``G·J·R̂·J``): the
    gauge that a reconstruction cannot see, so these errors are the ones that matter.

    Parameters
    ----------
    q_true, q_est : array_like
        (N, 4) true and estimated unit quaternions ``(w, x, y, z)``.
    symmetry : str, optional
        Point group, e.g. ``"D2"``: each pose may then match any symmetry copy ``s ⊗ q`` of its
        true pose, in the fit and in the errors. Default ``"C1"``.
    refine : int, optional
        Most reweighted steps after the closed form (0: closed form only).
    seed : int, optional
        Picks the poses tried as starts for symmetric molecules.

    Returns
    -------
    Alignment
        ``kind="physical"``, ``right`` the identity.

    Raises
    ------
    ValueError
        If the poses are not two (N, 4) arrays of unit quaternions with the same N ≥ 1.
    cryoposes.errors.InputError
        If ``symmetry`` is unknown.

    Examples
    --------
    >>> from cryoposes.alignment import align_physical
    >>> from cryoposes.rotations import quaternion_multiply, random_quaternions
    >>> truth = random_quaternions(100, rng=0)
    >>> estimate = quaternion_multiply(random_quaternions(1, rng=1), truth)  # molecule rotated
    >>> result = align_physical(truth, estimate)
    >>> result.errors.shape, result.flipped, round(result.mean, 2)
    ((100,), False, 0.0)
    """
    return _align(q_true, q_est, "physical", symmetry, refine, seed)


def align_o4(q_true, q_est, symmetry: str = "C1", refine: int = 5, seed: int = 0) -> Alignment:
    """Align estimates to the truth over all of O(4): ``a ⊗ q̂ ⊗ b`` or ``a ⊗ q̂̄ ⊗ b``.

    This is the gauge pairwise distances cannot see (the 2021 paper's scoring): the fair score
    of a recovery from distances alone, but a small O(4) error can hide a large physical one.

    Parameters
    ----------
    q_true, q_est : array_like
        (N, 4) true and estimated unit quaternions ``(w, x, y, z)``.
    symmetry, refine, seed
        As for :func:`align_physical`.

    Returns
    -------
    Alignment
        ``kind="o4"``; ``flipped`` means the estimates were conjugated.

    Raises
    ------
    ValueError
        If the poses are not two (N, 4) arrays of unit quaternions with the same N ≥ 1.
    cryoposes.errors.InputError
        If ``symmetry`` is unknown.

    Examples
    --------
    >>> from cryoposes.alignment import align_o4
    >>> from cryoposes.rotations import quaternion_conjugate, quaternion_multiply, random_quaternions
    >>> truth = random_quaternions(100, rng=0)
    >>> a, b = random_quaternions(2, rng=1)
    >>> estimate = quaternion_multiply(quaternion_multiply(a, quaternion_conjugate(truth)), b)
    >>> result = align_o4(truth, estimate)
    >>> result.errors.shape, result.flipped, round(result.mean, 2)
    ((100,), True, 0.0)
    """
    return _align(q_true, q_est, "o4", symmetry, refine, seed)


def _pair_sample(n, max_pairs, rng):
    total = n * (n - 1) // 2
    if total <= max_pairs:
        i, j = np.triu_indices(n, k=1)
        return i, j
    i = rng.integers(0, n, max_pairs)
    j = (i + rng.integers(1, n, max_pairs)) % n
    return i, j


def seed_losses(q_true, q_est, targets=None, max_pairs: int = 2_000_000, seed: int = 0) -> dict:
    """The seed report's losses (its Eqs. 6–8), as means, in radians.

    Its printed values are means. Pairs ``i ≠ j`` are all of them up to ``max_pairs``, else
    that many drawn at random.

    Parameters
    ----------
    q_true, q_est : array_like
        (N, 4) true and estimated unit quaternions ``(w, x, y, z)``.
    targets : array_like or callable, optional
        Target distances: an N×N matrix, or ``targets(i, j)`` for index arrays.
    max_pairs : int, optional
        Most pairs used.
    seed : int, optional
        Seed of the pair sample.

    Returns
    -------
    dict
        ``"eq7"``, the ground-truth loss: mean of (d_q(qᵢ, qⱼ) − d_q(q̂ᵢ, q̂ⱼ))² over pairs;
        ``"eq8"``, the rotation loss: mean d_q(qᵢ, g ⊗ q̂ᵢ) after the best global rotation ``g``
        (:func:`align_physical`); with ``targets``, ``"eq6"``, the recovery loss: mean of
        (d_target − d_q(q̂ᵢ, q̂ⱼ))² over pairs.

    Raises
    ------
    ValueError
        If the poses are not two (N, 4) arrays of unit quaternions with the same N ≥ 1.

    Examples
    --------
    >>> from cryoposes.alignment import seed_losses
    >>> from cryoposes.rotations import pairwise_geodesic_distances, random_quaternions
    >>> truth = random_quaternions(50, rng=0)
    >>> losses = seed_losses(truth, truth, targets=pairwise_geodesic_distances(truth))
    >>> sorted(losses), round(losses["eq7"], 6)
    (['eq6', 'eq7', 'eq8'], 0.0)
    """
    q_true, q_est = _check_pair(q_true, q_est)
    i, j = _pair_sample(len(q_true), max_pairs, np.random.default_rng(seed))
    d_est = rotations.geodesic_distance(q_est[i], q_est[j])
    d_true = rotations.geodesic_distance(q_true[i], q_true[j])
    losses = {"eq7": float(np.mean((d_true - d_est) ** 2))}
    if targets is not None:
        d_target = targets(i, j) if callable(targets) else np.asarray(targets)[i, j]
        losses["eq6"] = float(np.mean((np.asarray(d_target, dtype=float) - d_est) ** 2))
    losses["eq8"] = float(np.radians(align_physical(q_true, q_est).mean))
    return losses
