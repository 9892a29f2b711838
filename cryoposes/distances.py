"""Distances between particle images: the Euclidean baseline of the seed report (Phase 2.1).

``d_p(pᵢ, pⱼ) = ‖pᵢ − pⱼ‖`` over pixels. The seed report asked whether ``d_p ≈ C·d_q`` for
a constant ``C`` (its section 3.2); :func:`fit_scale` is that least-squares ``C``, and
:func:`scale_to_rotations` a scale that needs no true poses. The learned distance lives in
:mod:`cryoposes.siamese`.
"""

from __future__ import annotations

import numpy as np

__all__ = ["euclidean_distances", "euclidean_pair_distances", "fit_scale", "scale_to_rotations",
           "MEAN_UNIFORM_DISTANCE"]

#: Mean geodesic distance between two rotations drawn uniformly from SO(3): π/2 + 2/π
#: (≈ 126.5°; the angle θ of a uniform rotation has density (1 − cos θ)/π).
MEAN_UNIFORM_DISTANCE = np.pi / 2 + 2 / np.pi


def _flatten(images):
    images = np.asarray(images)
    if images.ndim < 2:
        raise ValueError(f"images must be shaped (N, ...) with N ≥ 1, got {images.shape}")
    flat = images.reshape(len(images), -1)
    if not np.all(np.isfinite(flat)):
        raise ValueError("images contain NaN or infinite values")
    return flat


def euclidean_distances(images, block: int = 512) -> np.ndarray:
    """Dense matrix of the distances ``‖pᵢ − pⱼ‖`` between all pairs of images.

    Computed in row blocks as ``‖pᵢ‖² + ‖pⱼ‖² − 2⟨pᵢ, pⱼ⟩`` in float64, so the small distances
    that matter most do not drown in float32 round-off, and only one block of products is held
    at a time beside the result.

    Parameters
    ----------
    images : array_like
        (N, ...) images, any number of pixel axes.
    block : int, optional
        Rows per block.

    Returns
    -------
    numpy.ndarray
        (N, N) float64 distances, zero on the diagonal.

    Raises
    ------
    ValueError
        If ``images`` has fewer than 2 axes or values that are not finite.

    Examples
    --------
    >>> import numpy as np
    >>> from cryoposes.distances import euclidean_distances
    >>> images = np.arange(3.0)[:, None, None] * np.ones((3, 4, 4))  # three 4×4 images
    >>> euclidean_distances(images)
    array([[0., 4., 8.],
           [4., 0., 4.],
           [8., 4., 0.]])
    """
    flat = _flatten(images).astype("float64")
    norms = np.einsum("ij,ij->i", flat, flat)
    n = len(flat)
    result = np.empty((n, n))
    for start in range(0, n, block):
        stop = min(start + block, n)
        squared = norms[start:stop, None] + norms[None, :] - 2.0 * (flat[start:stop] @ flat.T)
        result[start:stop] = np.sqrt(np.maximum(squared, 0.0))
    np.fill_diagonal(result, 0.0)
    return result


def euclidean_pair_distances(images, i, j) -> np.ndarray:
    """Distances ``‖p_i − p_j‖`` for given pairs: the baseline as a callable target.

    Parameters
    ----------
    images : array_like
        (N, ...) images, any number of pixel axes.
    i, j : array_like
        (K,) indices of the pairs' images.

    Returns
    -------
    numpy.ndarray
        (K,) float64 distances.

    Raises
    ------
    ValueError
        If ``images`` has fewer than 2 axes or values that are not finite.

    Examples
    --------
    >>> import numpy as np
    >>> from cryoposes.distances import euclidean_pair_distances
    >>> images = np.arange(3.0)[:, None, None] * np.ones((3, 4, 4))
    >>> euclidean_pair_distances(images, [0, 1], [2, 2])
    array([8., 4.])
    """
    flat = _flatten(images)
    difference = flat[np.asarray(i)].astype("float64") - flat[np.asarray(j)]
    return np.sqrt(np.einsum("ij,ij->i", difference, difference))


def fit_scale(d_p, d_q) -> float:
    """Least-squares ``C`` in ``d_p ≈ C·d_q`` (a line through the origin): ``Σ d_p·d_q / Σ d_q²``.

    Uses the true poses (through ``d_q``), so it is a diagnostic, not something recovery may use.

    Parameters
    ----------
    d_p, d_q : array_like
        Image and rotation distances of the same pairs, of any shapes with the same size.

    Returns
    -------
    float
        The scale ``C``.

    Raises
    ------
    ValueError
        If the sizes differ or every ``d_q`` is zero.

    Examples
    --------
    >>> from cryoposes.distances import fit_scale
    >>> fit_scale([2.0, 4.0, 6.0], [1.0, 2.0, 3.0])
    2.0
    """
    d_p = np.asarray(d_p, dtype=float).ravel()
    d_q = np.asarray(d_q, dtype=float).ravel()
    if d_p.shape != d_q.shape:
        raise ValueError(f"d_p and d_q must have the same size, got {d_p.size} and {d_q.size}")
    denominator = float(d_q @ d_q)
    if denominator == 0.0:
        raise ValueError("all d_q are zero: no scale can be fitted")
    return float(d_p @ d_q) / denominator


def scale_to_rotations(d_p) -> np.ndarray:
    """Distances rescaled so that their mean is that of uniform rotations.

    The mean off-diagonal value becomes :data:`MEAN_UNIFORM_DISTANCE`: a scale for recovery that
    needs no true poses, right when the poses cover SO(3) uniformly.

    Parameters
    ----------
    d_p : array_like
        (N, N) distances, N ≥ 2.

    Returns
    -------
    numpy.ndarray
        (N, N) float64 ``d_p`` times one constant.

    Raises
    ------
    ValueError
        If ``d_p`` is not square with N ≥ 2, or all its distances are zero.

    Examples
    --------
    >>> import numpy as np
    >>> from cryoposes.distances import MEAN_UNIFORM_DISTANCE, scale_to_rotations
    >>> scaled = scale_to_rotations(np.ones((4, 4)) - np.eye(4))
    >>> scaled.shape, bool(np.isclose(scaled[0, 1], MEAN_UNIFORM_DISTANCE))
    ((4, 4), True)
    """
    d_p = np.asarray(d_p, dtype=float)
    n = d_p.shape[0]
    if d_p.ndim != 2 or d_p.shape[1] != n or n < 2:
        raise ValueError(f"distances must be a square N×N matrix with N ≥ 2, got {d_p.shape}")
    mean = (d_p.sum() - np.trace(d_p)) / (n * (n - 1))
    if mean <= 0:
        raise ValueError("all distances are zero: nothing to scale")
    return d_p * (MEAN_UNIFORM_DISTANCE / mean)
