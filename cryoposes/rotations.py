"""Rotations: unit quaternions, ZYZ Euler angles, rotation matrices, distances and sampling.

**The one convention of cryoposes.**

* **Quaternions** are scalar first, ``q = (w, x, y, z)``, unit norm; ``q`` and ``-q`` are the same
  rotation. The Hamilton product ``quaternion_multiply(a, b)`` is the rotation ``b`` followed by
  ``a`` (matrices multiply the same way: ``R(a ⊗ b) = R(a) @ R(b)``).
* **Euler angles** are RELION's ``(rot, tilt, psi)``, intrinsic Z-Y-Z, in radians unless a
  function says degrees::

      R(rot, tilt, psi) = Rz(rot) @ Ry(tilt) @ Rz(psi)
      q(rot, tilt, psi) = qz(rot) ⊗ qy(tilt) ⊗ qz(psi)

  This is ``scipy.spatial.transform.Rotation.from_euler("ZYZ", [rot, tilt, psi])``.
* **A pose R maps the image frame to the molecule frame**: the pixel ``(x, y)`` of the
  projection at pose ``R`` is ``Σ_z V(R @ (x, y, z))`` (RELION's and ASPIRE's convention). The
  viewing direction of an image, in the molecule frame, is ``R @ e_z`` (the third column), so
  ``tilt`` is its polar angle and ``rot`` its azimuth.
* **Gauges**: rotating the molecule by ``G`` (``V'(x) = V(Gᵀx)``) and every pose to ``G @ R``
  leaves every image unchanged; so does mirroring it (``V'(x) = V(Jx)``, ``J = diag(1, 1, -1)``)
  with poses ``J @ R @ J``. Pairwise distances are blind to more: any ``q ↦ a ⊗ q ⊗ b`` and
  ``q ↦ a ⊗ q̄ ⊗ b``.
* **Distance** between rotations is the geodesic angle ``d_q = 2·acos(|⟨q1, q2⟩|)`` in ``[0, π]``.

Functions taking ``xp`` run on NumPy arrays (``xp=numpy``, the default) or on Keras tensors
(``xp=keras.ops``), from the same definition, so the losses trained on and the numbers reported
agree.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "ACOS_EPSILON",
    "quaternion_multiply",
    "quaternion_conjugate",
    "quaternion_inverse",
    "normalize",
    "canonical",
    "euler_to_quaternion",
    "quaternion_to_euler",
    "quaternion_to_matrix",
    "matrix_to_quaternion",
    "euler_to_matrix",
    "matrix_to_euler",
    "nearest_rotation",
    "axis_angle_to_quaternion",
    "geodesic_distance",
    "geodesic_distance_degrees",
    "pairwise_geodesic_distances",
    "mirror",
    "random_quaternions",
    "COVERAGES",
    "sample_coverage",
    "in_coverage",
]

#: Distance to 1 at which the acos argument is clipped, per float width. Without it float32
#: self-pairs give NaN values and infinite gradients; the clip costs a floor of
#: 2·acos(1 − ε) ≈ 2·sqrt(2ε) (0.16° in float32, 1.6e-4° in float64).
ACOS_EPSILON = {4: 1e-6, 8: 1e-12}


def _dtype_size(array) -> int:
    """Bytes per element of a NumPy array or a backend tensor (TensorFlow, JAX)."""
    dtype = array.dtype
    return np.dtype(getattr(dtype, "name", dtype)).itemsize


def quaternion_multiply(a, b, xp=np):
    """Hamilton product ``a ⊗ b``: the rotation ``b`` followed by ``a``.

    Parameters
    ----------
    a, b : array
        (..., 4) quaternions ``(w, x, y, z)``; leading dimensions broadcast.
    xp : module, optional
        ``numpy`` (default) or ``keras.ops``.

    Returns
    -------
    array
        (..., 4) products, with ``R(a ⊗ b) = R(a) @ R(b)``.

    Examples
    --------
    >>> import numpy as np
    >>> from cryoposes.rotations import quaternion_multiply
    >>> quaternion_multiply(np.array([0.0, 1, 0, 0]), np.array([0.0, 0, 1, 0]))  # i ⊗ j = k
    array([0., 0., 0., 1.])
    """
    aw, ax, ay, az = (a[..., i] for i in range(4))
    bw, bx, by, bz = (b[..., i] for i in range(4))
    return xp.stack(
        [
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ],
        axis=-1,
    )


def quaternion_conjugate(q):
    """Conjugate ``q̄ = (w, -x, -y, -z)``: for unit quaternions, the inverse rotation.

    Parameters
    ----------
    q : array
        (..., 4) quaternions ``(w, x, y, z)``, NumPy or backend tensor.

    Returns
    -------
    array
        (..., 4) conjugates, of the dtype of ``q``.

    Examples
    --------
    >>> import numpy as np
    >>> from cryoposes.rotations import quaternion_conjugate
    >>> quaternion_conjugate(np.array([0.5, 0.5, 0.5, 0.5]))
    array([ 0.5, -0.5, -0.5, -0.5])
    """
    return q * np.array([1.0, -1.0, -1.0, -1.0], dtype=np.dtype(getattr(q.dtype, "name", q.dtype)))


def quaternion_inverse(q):
    """Inverse ``q̄ / |q|²`` of quaternions, unit or not.

    Parameters
    ----------
    q : array_like
        (..., 4) nonzero quaternions ``(w, x, y, z)``.

    Returns
    -------
    numpy.ndarray
        (..., 4) float64 inverses.

    Examples
    --------
    >>> from cryoposes.rotations import quaternion_inverse
    >>> quaternion_inverse([1.0, 1.0, 1.0, 1.0])
    array([ 0.25, -0.25, -0.25, -0.25])
    """
    q = np.asarray(q, dtype=float)
    return quaternion_conjugate(q) / np.sum(q * q, axis=-1, keepdims=True)


def normalize(q, xp=np):
    """Quaternions scaled to unit norm (same rotations, signs kept).

    Parameters
    ----------
    q : array
        (..., 4) nonzero quaternions.
    xp : module, optional
        ``numpy`` (default) or ``keras.ops``.

    Returns
    -------
    array
        (..., 4) unit quaternions.

    Examples
    --------
    >>> import numpy as np
    >>> from cryoposes.rotations import normalize
    >>> normalize(np.array([2.0, 2.0, 2.0, 2.0]))
    array([0.5, 0.5, 0.5, 0.5])
    """
    return q / xp.sqrt(xp.sum(q * q, axis=-1, keepdims=True))


def canonical(q):
    """The representative with ``w ≥ 0`` of each ±q pair (both are the same rotation).

    Ties (``w = 0``) are broken by the sign of the next nonzero part.

    Parameters
    ----------
    q : array_like
        (..., 4) quaternions ``(w, x, y, z)``.

    Returns
    -------
    numpy.ndarray
        (..., 4) float64 copy of ``q``, each quaternion multiplied by ±1.

    Examples
    --------
    >>> from cryoposes.rotations import canonical
    >>> canonical([-0.5, 0.5, 0.5, 0.5])
    array([ 0.5, -0.5, -0.5, -0.5])
    """
    q = np.array(q, dtype=float)
    flat = q.reshape(-1, 4)
    first = np.argmax(np.abs(flat) > 1e-12, axis=1)
    sign = np.sign(flat[np.arange(len(flat)), first])
    sign[sign == 0] = 1.0
    return (flat * sign[:, None]).reshape(q.shape)


def _check_quaternions(q):
    q = np.asarray(q, dtype=float)
    if q.shape[-1:] != (4,):
        raise ValueError(f"quaternions must have a last axis of length 4, got shape {q.shape}")
    if not np.all(np.isfinite(q)):
        raise ValueError("quaternions contain NaN or infinite values")
    norm = np.linalg.norm(q, axis=-1)
    if np.any(np.abs(norm - 1.0) > 1e-3):
        raise ValueError(
            f"quaternions must have unit norm (found norms from {norm.min():.4g} to {norm.max():.4g})"
        )
    return q / norm[..., None]


def axis_angle_to_quaternion(axis, angle):
    """Quaternions ``(cos(θ/2), sin(θ/2)·n)`` of rotations by an angle θ about an axis n.

    Parameters
    ----------
    axis : array_like
        (..., 3) axes, of any nonzero length.
    angle : array_like
        (...) angles in radians (right-handed about ``axis``).

    Returns
    -------
    numpy.ndarray
        (..., 4) unit quaternions ``(w, x, y, z)``.

    Examples
    --------
    >>> import numpy as np
    >>> from cryoposes.rotations import axis_angle_to_quaternion
    >>> axis_angle_to_quaternion([0.0, 0.0, 2.0], np.pi).round(6)  # half turn about z
    array([0., 0., 0., 1.])
    >>> axis_angle_to_quaternion(np.ones((5, 3)), np.zeros(5)).shape
    (5, 4)
    """
    axis = np.asarray(axis, dtype=float)
    angle = np.asarray(angle, dtype=float)
    axis = axis / np.linalg.norm(axis, axis=-1, keepdims=True)
    half = angle[..., None] / 2.0
    return np.concatenate([np.cos(half), np.sin(half) * axis], axis=-1)


def euler_to_quaternion(rot, tilt, psi):
    """Quaternions of RELION Euler angles: ``qz(rot) ⊗ qy(tilt) ⊗ qz(psi)`` (intrinsic ZYZ).

    Parameters
    ----------
    rot, tilt, psi : array_like
        Angles in radians; they broadcast against each other.

    Returns
    -------
    numpy.ndarray
        (..., 4) unit quaternions ``(w, x, y, z)``, ``...`` the broadcast shape of the angles.

    Examples
    --------
    >>> import numpy as np
    >>> from cryoposes.rotations import euler_to_quaternion
    >>> euler_to_quaternion(np.pi / 2, np.pi / 2, 0.0).round(6)
    array([ 0.5, -0.5,  0.5,  0.5])
    >>> euler_to_quaternion(np.zeros(5), 1.0, 0.0).shape
    (5, 4)
    """
    rot, tilt, psi = np.broadcast_arrays(*(np.asarray(a, dtype=float) for a in (rot, tilt, psi)))
    c, s = np.cos(tilt / 2), np.sin(tilt / 2)
    plus, minus = (rot + psi) / 2, (rot - psi) / 2
    # Multiplying out the three elementary quaternions (the seed report's appendix).
    return np.stack([c * np.cos(plus), -s * np.sin(minus), s * np.cos(minus), c * np.sin(plus)], axis=-1)


def quaternion_to_matrix(q):
    """Rotation matrices of unit quaternions.

    Parameters
    ----------
    q : array_like
        (..., 4) unit quaternions ``(w, x, y, z)``; norms within 1e-3 of 1 are renormalised.

    Returns
    -------
    numpy.ndarray
        (..., 3, 3) rotation matrices; ``q`` and ``-q`` give the same one.

    Raises
    ------
    ValueError
        If the last axis is not of length 4, or values are not finite or not of unit norm.

    Examples
    --------
    >>> from cryoposes.rotations import quaternion_to_matrix, random_quaternions
    >>> quaternion_to_matrix(random_quaternions(10, rng=0)).shape
    (10, 3, 3)
    >>> quaternion_to_matrix([0.0, 0.0, 0.0, 1.0])  # half turn about z
    array([[-1.,  0.,  0.],
           [ 0., -1.,  0.],
           [ 0.,  0.,  1.]])
    """
    q = _check_quaternions(q)
    w, x, y, z = (q[..., i] for i in range(4))
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
            np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
            np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
        ],
        axis=-2,
    )


def matrix_to_quaternion(matrix):
    """Unit quaternions ``(w, x, y, z)``, ``w ≥ 0``, of rotation matrices.

    Uses the eigenvector of Bar-Itzhack's symmetric 4×4 matrix, which is exact for rotations and
    gives the nearest rotation's quaternion for slightly non-orthogonal input.

    Parameters
    ----------
    matrix : array_like
        (..., 3, 3) rotation matrices.

    Returns
    -------
    numpy.ndarray
        (..., 4) unit quaternions in :func:`canonical` form.

    Raises
    ------
    ValueError
        If ``matrix`` is not shaped (..., 3, 3).

    Examples
    --------
    >>> import numpy as np
    >>> from cryoposes.rotations import matrix_to_quaternion, quaternion_to_matrix, random_quaternions
    >>> q = random_quaternions(10, rng=0)
    >>> matrix_to_quaternion(quaternion_to_matrix(q)).shape
    (10, 4)
    >>> bool(np.allclose(matrix_to_quaternion(quaternion_to_matrix(q)), q))
    True
    """
    m = np.asarray(matrix, dtype=float)
    if m.shape[-2:] != (3, 3):
        raise ValueError(f"rotation matrices must be shaped (..., 3, 3), got {m.shape}")
    flat = m.reshape(-1, 3, 3)
    k = np.empty((len(flat), 4, 4))
    m00, m01, m02 = flat[:, 0, 0], flat[:, 0, 1], flat[:, 0, 2]
    m10, m11, m12 = flat[:, 1, 0], flat[:, 1, 1], flat[:, 1, 2]
    m20, m21, m22 = flat[:, 2, 0], flat[:, 2, 1], flat[:, 2, 2]
    k[:, 0, 0] = m00 + m11 + m22
    k[:, 1, 1] = m00 - m11 - m22
    k[:, 2, 2] = m11 - m00 - m22
    k[:, 3, 3] = m22 - m00 - m11
    k[:, 0, 1] = k[:, 1, 0] = m21 - m12
    k[:, 0, 2] = k[:, 2, 0] = m02 - m20
    k[:, 0, 3] = k[:, 3, 0] = m10 - m01
    k[:, 1, 2] = k[:, 2, 1] = m01 + m10
    k[:, 1, 3] = k[:, 3, 1] = m02 + m20
    k[:, 2, 3] = k[:, 3, 2] = m12 + m21
    _, vectors = np.linalg.eigh(k / 3.0)
    q = canonical(vectors[:, :, -1])
    return q.reshape(m.shape[:-2] + (4,))


def nearest_rotation(matrix):
    """The rotations closest in Frobenius norm to arbitrary 3×3 matrices.

    ``U·diag(1, 1, det(U·Vᵀ))·Vᵀ`` from the SVD ``U·S·Vᵀ``: the orthogonal Procrustes solution
    restricted to SO(3).

    Parameters
    ----------
    matrix : array_like
        (..., 3, 3).

    Returns
    -------
    numpy.ndarray
        (..., 3, 3) float64 rotation matrices (determinant +1).

    Examples
    --------
    >>> import numpy as np
    >>> from cryoposes.rotations import nearest_rotation
    >>> nearest_rotation(np.diag([2.0, 1.0, -0.5])).round(12)
    array([[1., 0., 0.],
           [0., 1., 0.],
           [0., 0., 1.]])
    """
    m = np.asarray(matrix, dtype=float)
    u, _, vt = np.linalg.svd(m)
    sign = np.where(np.linalg.det(u @ vt) < 0, -1.0, 1.0)
    u = u.copy()
    u[..., :, -1] *= sign[..., None]
    return u @ vt


def quaternion_to_euler(q):
    """RELION Euler angles ``(rot, tilt, psi)`` (intrinsic ZYZ, radians) of unit quaternions.

    At gimbal lock (tilt 0 or π) only ``rot + psi`` (tilt 0) or ``rot - psi`` (tilt π) is
    defined; ``psi`` is then set to 0.

    Parameters
    ----------
    q : array_like
        (..., 4) unit quaternions ``(w, x, y, z)``.

    Returns
    -------
    rot, tilt, psi : numpy.ndarray
        (...) angles in radians: ``tilt`` in [0, π], ``rot`` and ``psi`` in (-π, π].

    Raises
    ------
    ValueError
        If ``q`` is not (..., 4) finite unit quaternions.

    Examples
    --------
    >>> from cryoposes.rotations import euler_to_quaternion, quaternion_to_euler
    >>> rot, tilt, psi = quaternion_to_euler(euler_to_quaternion([0.5, 0.5], 1.0, -2.0))
    >>> rot.shape, round(float(tilt[0]), 6), round(float(psi[0]), 6)
    ((2,), 1.0, -2.0)
    """
    return matrix_to_euler(quaternion_to_matrix(q))


def euler_to_matrix(rot, tilt, psi):
    """Rotation matrices ``Rz(rot) @ Ry(tilt) @ Rz(psi)`` of RELION Euler angles (intrinsic ZYZ).

    Parameters
    ----------
    rot, tilt, psi : array_like
        Angles in radians; they broadcast against each other.

    Returns
    -------
    numpy.ndarray
        (..., 3, 3) rotation matrices; the third column is the viewing direction.

    Raises
    ------
    ValueError
        If an angle is not finite.

    Examples
    --------
    >>> import numpy as np
    >>> from cryoposes.rotations import euler_to_matrix
    >>> euler_to_matrix(np.zeros(5), np.linspace(0.0, 1.0, 5), 0.0).shape
    (5, 3, 3)
    """
    return quaternion_to_matrix(euler_to_quaternion(rot, tilt, psi))


def matrix_to_euler(matrix, gimbal_tolerance: float = 1e-9):
    """RELION Euler angles ``(rot, tilt, psi)`` of rotation matrices (the seed report's Table 2).

    Parameters
    ----------
    matrix : array_like
        (..., 3, 3) rotation matrices.
    gimbal_tolerance : float, optional
        ``matrix[..., 2, 2]`` within this of ±1 counts as gimbal lock: tilt is set to 0 or π,
        ``psi`` to 0 and the whole in-plane turn goes into ``rot``.

    Returns
    -------
    rot, tilt, psi : numpy.ndarray
        (...) angles in radians: ``tilt`` in [0, π], ``rot`` and ``psi`` in (-π, π].

    Examples
    --------
    >>> import numpy as np
    >>> from cryoposes.rotations import euler_to_matrix, matrix_to_euler
    >>> rot, tilt, psi = matrix_to_euler(euler_to_matrix(np.full(5, 0.5), 1.0, -2.0))
    >>> tilt.shape, round(float(psi[0]), 6)
    ((5,), -2.0)
    """
    m = np.asarray(matrix, dtype=float)
    a22 = np.clip(m[..., 2, 2], -1.0, 1.0)
    tilt = np.arccos(a22)
    rot = np.arctan2(m[..., 1, 2], m[..., 0, 2])
    psi = np.arctan2(m[..., 2, 1], -m[..., 2, 0])
    # At tilt 0, R = Rz(rot + psi); at tilt π, R = Rz(rot - psi)·Ry(π). Put it all in rot.
    top = a22 > 1.0 - gimbal_tolerance
    bottom = a22 < -1.0 + gimbal_tolerance
    rot = np.where(top, np.arctan2(m[..., 1, 0], m[..., 0, 0]), rot)
    rot = np.where(bottom, np.arctan2(-m[..., 1, 0], -m[..., 0, 0]), rot)
    psi = np.where(top | bottom, 0.0, psi)
    tilt = np.where(top, 0.0, np.where(bottom, np.pi, tilt))
    return rot, tilt, psi


def geodesic_distance(q1, q2, xp=np):
    """Geodesic angle ``2·acos(|⟨q1, q2⟩|)`` in radians between unit quaternions.

    The acos argument is clipped to ``1 − ε`` (:data:`ACOS_EPSILON`), so values and gradients
    stay finite at d = 0, also in float32 and under ``xp=keras.ops``.

    Parameters
    ----------
    q1, q2 : array
        (..., 4) unit quaternions ``(w, x, y, z)``; leading dimensions broadcast.
    xp : module, optional
        ``numpy`` (default) or ``keras.ops``.

    Returns
    -------
    array
        (...) distances in [0, π].

    Examples
    --------
    >>> import numpy as np
    >>> from cryoposes.rotations import geodesic_distance, random_quaternions
    >>> identity = np.array([1.0, 0.0, 0.0, 0.0])
    >>> geodesic_distance(random_quaternions(10, rng=0), identity).shape
    (10,)
    >>> round(float(geodesic_distance(identity, np.array([0.0, 0.0, 0.0, 1.0]))), 6)
    3.141593
    """
    dot = xp.abs(xp.sum(q1 * q2, axis=-1))
    epsilon = ACOS_EPSILON.get(_dtype_size(dot), 1e-6)
    return 2.0 * xp.arccos(xp.clip(dot, 0.0, 1.0 - epsilon))


def geodesic_distance_degrees(q1, q2):
    """:func:`geodesic_distance` in degrees, on NumPy arrays.

    Parameters
    ----------
    q1, q2 : array_like
        (..., 4) unit quaternions ``(w, x, y, z)``; leading dimensions broadcast.

    Returns
    -------
    numpy.ndarray
        (...) distances in degrees, in [0, 180].

    Examples
    --------
    >>> from cryoposes.rotations import geodesic_distance_degrees
    >>> round(float(geodesic_distance_degrees([1.0, 0.0, 0.0, 0.0], [0.5, 0.5, 0.5, 0.5])), 6)
    120.0
    """
    return np.degrees(geodesic_distance(np.asarray(q1, float), np.asarray(q2, float)))


def pairwise_geodesic_distances(q, other=None, xp=np):
    """Geodesic distances (radians) between every row of ``q`` and every row of ``other``.

    Parameters
    ----------
    q : array_like
        (..., M, 4) unit quaternions.
    other : array_like, optional
        (..., N, 4) unit quaternions (default: ``q``); leading dimensions broadcast, so a stack
        of small distance matrices is one call.
    xp : module, optional
        ``numpy`` (default) or ``keras.ops``.

    Returns
    -------
    array
        (..., M, N) distances ``2·acos(|⟨q_i, other_j⟩|)`` in [0, π].

    Examples
    --------
    >>> import numpy as np
    >>> from cryoposes.rotations import pairwise_geodesic_distances, random_quaternions
    >>> pairwise_geodesic_distances(random_quaternions(5, 0)).shape
    (5, 5)
    >>> pairwise_geodesic_distances(np.ones((7, 2, 4)) / 2, np.ones((7, 3, 4)) / 2).shape
    (7, 2, 3)
    """
    other = q if other is None else other
    dot = xp.abs(xp.matmul(q, xp.swapaxes(other, -1, -2)))
    epsilon = ACOS_EPSILON.get(_dtype_size(dot), 1e-6)
    return 2.0 * xp.arccos(xp.clip(dot, 0.0, 1.0 - epsilon))


def mirror(q):
    """Quaternions of the mirrored poses ``J @ R @ J``, ``J = diag(1, 1, -1)`` (handedness flip).

    Parameters
    ----------
    q : array_like
        (..., 4) quaternions ``(w, x, y, z)``.

    Returns
    -------
    numpy.ndarray
        (..., 4) float64 ``(w, -x, -y, z)``.

    Examples
    --------
    >>> from cryoposes.rotations import mirror
    >>> mirror([0.5, 0.5, 0.5, 0.5])
    array([ 0.5, -0.5, -0.5,  0.5])
    """
    return np.asarray(q, dtype=float) * np.array([1.0, -1.0, -1.0, 1.0])


def random_quaternions(n: int, rng=None):
    """Rotations uniform on SO(3) (Haar measure): normalised 4-D Gaussians, ``w ≥ 0``.

    Parameters
    ----------
    n : int
        Number of rotations.
    rng : None, int or numpy.random.Generator, optional
        Seed or generator, as for ``numpy.random.default_rng``.

    Returns
    -------
    numpy.ndarray
        (n, 4) unit quaternions ``(w, x, y, z)`` in :func:`canonical` form.

    Raises
    ------
    ValueError
        If ``n`` is negative.

    Examples
    --------
    >>> from cryoposes.rotations import random_quaternions
    >>> q = random_quaternions(1000, rng=0)
    >>> q.shape, bool((q[:, 0] >= 0).all())
    ((1000, 4), True)
    """
    if n < 0:
        raise ValueError(f"number of rotations must be non-negative, got {n}")
    rng = np.random.default_rng(rng)
    return canonical(normalize(rng.standard_normal((n, 4))))


#: Coverages of the viewing sphere, as limits on (rot, tilt, psi) in radians.
#: ``half`` is the upper hemisphere of viewing directions (tilt ≤ 90°), the seed report's setting;
#: ``quarter`` is the 2021 paper's code for 5a1a: tilt in [0, π/2] and the *azimuth of the
#: viewing direction* in [0, 0.4π]. The paper's code names that azimuth its "third Euler angle"
#: (its ray direction is a function of its second and third angles only); in RELION's convention
#: it is ``rot``, the angle about the molecule's z axis. Restricting it is what avoids
#: β-galactosidase's D2 symmetry: symmetry copies of a pose are ``g·R`` (a rotation of the
#: molecule, on the left), the half turn about z adds π to ``rot`` and the half turns about x
#: and y send tilt to π − tilt, so no two poses of this coverage give the same image.
#: Restricting ``psi`` instead (an in-plane turn, on the right) would keep every half-turn-about-z
#: copy inside the coverage: identical images with targets 180° apart.
COVERAGES = {
    "full": None,
    "half": {"tilt": (0.0, np.pi / 2)},
    "quarter": {"rot": (0.0, 0.4 * np.pi), "tilt": (0.0, np.pi / 2)},
}


def in_coverage(q, coverage: str):
    """Which quaternions have RELION Euler angles inside a coverage of :data:`COVERAGES`.

    Parameters
    ----------
    q : array_like
        (..., 4) unit quaternions ``(w, x, y, z)``.
    coverage : str
        ``"full"``, ``"half"`` or ``"quarter"``.

    Returns
    -------
    numpy.ndarray
        (...) boolean mask.

    Raises
    ------
    ValueError
        If ``coverage`` is not a key of :data:`COVERAGES`.

    Examples
    --------
    >>> from cryoposes.rotations import in_coverage, random_quaternions
    >>> inside = in_coverage(random_quaternions(1000, rng=0), "half")
    >>> inside.shape, bool(0.4 < inside.mean() < 0.6)
    ((1000,), True)
    """
    if coverage not in COVERAGES:
        raise ValueError(f"unknown coverage {coverage!r}; choose one of {sorted(COVERAGES)}")
    q = np.asarray(q, dtype=float)
    limits = COVERAGES[coverage]
    if limits is None:
        return np.ones(q.shape[:-1], dtype=bool)
    angles = dict(zip(("rot", "tilt", "psi"), quaternion_to_euler(q)))
    inside = np.ones(q.shape[:-1], dtype=bool)
    for name, (low, high) in limits.items():
        value = np.mod(angles[name], 2 * np.pi) if name != "tilt" else angles[name]
        inside &= (value >= low) & (value <= high)
    return inside


def sample_coverage(n: int, coverage: str = "full", rng=None):
    """Rotations uniform on SO(3) restricted to a coverage of :data:`COVERAGES`, by rejection.

    Parameters
    ----------
    n : int
        Number of rotations.
    coverage : str, optional
        ``"full"`` (default), ``"half"`` or ``"quarter"``.
    rng : None, int or numpy.random.Generator, optional
        Seed or generator, as for ``numpy.random.default_rng``.

    Returns
    -------
    numpy.ndarray
        (n, 4) unit quaternions ``(w, x, y, z)``, ``w ≥ 0``.

    Raises
    ------
    ValueError
        If ``coverage`` is unknown or ``n`` is negative.

    Examples
    --------
    >>> from cryoposes.rotations import in_coverage, sample_coverage
    >>> q = sample_coverage(100, "quarter", rng=0)
    >>> q.shape, bool(in_coverage(q, "quarter").all())
    ((100, 4), True)
    """
    if coverage not in COVERAGES:
        raise ValueError(f"unknown coverage {coverage!r}; choose one of {sorted(COVERAGES)}")
    if n < 0:
        raise ValueError(f"number of rotations must be non-negative, got {n}")
    rng = np.random.default_rng(rng)
    kept = []
    count = 0
    while count < n:
        batch = random_quaternions(max(2 * (n - count), 64), rng)
        batch = batch[in_coverage(batch, coverage)]
        kept.append(batch)
        count += len(batch)
    return np.concatenate(kept)[:n] if kept else np.empty((0, 4))
