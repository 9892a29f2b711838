"""Point groups of symmetric molecules (C_n, D_n on RELION's axes) and distances up to them.

A molecule with point group G looks the same from the poses ``R`` and ``g·R`` for every ``g`` in G,
so no image can tell them apart: poses are compared up to G (:func:`symmetric_geodesic_distance`),
and one representative per class is chosen in an asymmetric unit (:func:`asymmetric_unit`).
"""

from __future__ import annotations

import numpy as np

from cryoposes.errors import InputError
from cryoposes.rotations import (
    axis_angle_to_quaternion,
    canonical,
    geodesic_distance,
    quaternion_multiply,
    quaternion_to_matrix,
)

__all__ = ["symmetry_group", "symmetric_geodesic_distance", "asymmetric_unit"]


def symmetry_group(name: str):
    """Quaternions of the point group ``C<n>`` or ``D<n>``, on RELION's axes.

    The n-fold axis is z; D's two-fold axes are x and its images under the turns about z.

    Parameters
    ----------
    name : str
        ``"C<n>"`` or ``"D<n>"`` with n ≥ 1, in either case (``"C1"``: no symmetry).

    Returns
    -------
    numpy.ndarray
        (n, 4) for C, (2n, 4) for D: unit quaternions ``(w, x, y, z)``, the identity first.

    Raises
    ------
    cryoposes.errors.InputError
        If ``name`` is not of the form ``C<n>`` or ``D<n>``.

    Examples
    --------
    >>> from cryoposes.symmetry import symmetry_group
    >>> symmetry_group("C4").shape, symmetry_group("d2").shape
    ((4, 4), (4, 4))
    """
    label = str(name).strip().upper()
    try:
        order = int(label[1:])
    except ValueError:
        order = 0
    if label[:1] not in ("C", "D") or order < 1:
        raise InputError(f"unknown symmetry {name!r}: give C<n> or D<n>, e.g. C1, C4, D2")
    angles = 2 * np.pi * np.arange(order) / order
    cyclic = axis_angle_to_quaternion(np.tile([0.0, 0.0, 1.0], (order, 1)), angles)
    if label[0] == "C":
        return canonical(cyclic)
    flip = axis_angle_to_quaternion([1.0, 0.0, 0.0], np.pi)
    return canonical(np.concatenate([cyclic, quaternion_multiply(cyclic, flip)]))


def symmetric_geodesic_distance(q1, q2, symmetry: str = "C1"):
    """Symmetry-aware distance ``min_g d_q(q1, g ⊗ q2)`` in radians, over the group elements g.

    Symmetry operators act on the molecule, i.e. on the left of the pose.

    Parameters
    ----------
    q1, q2 : array_like
        (N, 4) unit quaternions ``(w, x, y, z)``.
    symmetry : str, optional
        Point group, as for :func:`symmetry_group` (default ``"C1"``: the plain distance).

    Returns
    -------
    numpy.ndarray
        (N,) distances in [0, π].

    Raises
    ------
    cryoposes.errors.InputError
        If ``symmetry`` is unknown.

    Examples
    --------
    >>> import numpy as np
    >>> from cryoposes.symmetry import symmetric_geodesic_distance
    >>> q = np.array([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]])  # identity, half turn about z
    >>> symmetric_geodesic_distance(q, q[::-1]).round(4)
    array([3.1416, 3.1416])
    >>> symmetric_geodesic_distance(q, q[::-1], "C2").round(4)
    array([0., 0.])
    """
    group = symmetry_group(symmetry)
    q1 = np.asarray(q1, dtype=float)
    q2 = np.asarray(q2, dtype=float)
    moved = quaternion_multiply(group[:, None, :], q2[None, ...] if q2.ndim > 1 else q2[None, None, :])
    return np.min(geodesic_distance(q1[None, ...], moved), axis=0)


def asymmetric_unit(q, symmetry: str):
    """One representative ``g ⊗ q`` of each pose's symmetry copies.

    The representative is the copy whose viewing direction has the largest z, then the smallest
    azimuth, so symmetry-related poses map to the same quaternion.

    Parameters
    ----------
    q : array_like
        (N, 4) unit quaternions ``(w, x, y, z)``.
    symmetry : str
        Point group, as for :func:`symmetry_group`.

    Returns
    -------
    numpy.ndarray
        (N, 4) unit quaternions in :func:`canonical` form.

    Raises
    ------
    cryoposes.errors.InputError
        If ``symmetry`` is unknown.

    Examples
    --------
    >>> import numpy as np
    >>> from cryoposes import rotations
    >>> q = rotations.random_quaternions(5, rng=0)
    >>> copies = rotations.quaternion_multiply(symmetry_group("D2")[2], q)
    >>> asymmetric_unit(q, "D2").shape
    (5, 4)
    >>> bool(np.allclose(asymmetric_unit(copies, "D2"), asymmetric_unit(q, "D2")))
    True
    """
    group = symmetry_group(symmetry)
    q = np.asarray(q, dtype=float)
    candidates = quaternion_multiply(group[:, None, :], q[None, :, :])
    view = quaternion_to_matrix(candidates)[..., :, 2]
    azimuth = np.mod(np.arctan2(view[..., 1], view[..., 0]), 2 * np.pi)
    # Lexicographic: the highest copies (equal up to rounding), then the smallest azimuth among
    # them. A weighted sum of the two mixes units and fails near the equator.
    highest = view[..., 2] >= view[..., 2].max(axis=0) - 1e-9
    best = np.argmin(np.where(highest, azimuth, np.inf), axis=0)
    return canonical(candidates[best, np.arange(len(q))])
