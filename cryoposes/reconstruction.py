"""Reconstruction: a 3-D map from particle images and their poses, shifts and CTFs.

The map is the regularised least-squares solution of the forward model y = C·S·P·x + n,

    x̂ = argmin_x  Σ_i ‖C_i S_i P_i x − y_i‖² + λ‖x‖²,

solved in Fourier space as ASPIRE's mean estimator does: by the Fourier slice theorem each image
gives samples of the map's spectrum on a central plane, so the normal equations are
``(A + λ) x = b`` with

* ``b = Σ_i P_iᵀ S_iᵀ C_i y_i``, the back-projection: every image's spectrum (its shift undone,
  multiplied by its CTF) put back on its plane, summed into the volume by one type-1 NUFFT
  (finufft): the adjoint of sampling the map's spectrum on the planes, which is what
  :func:`cryoposes.projection.project` does with a type-2 NUFFT;
* ``A = Σ_i P_iᵀ C_i² P_i``, a convolution with the kernel ``K(d) = Σ_j C_j² e^{2πi ξ_j·d}``
  over the plane samples ``ξ_j``, computed once by a type-1 NUFFT on a 2L grid, and applied by
  zero-padded FFTs.

Conjugate gradients then solve the system, preconditioned by the circulant approximation of
``A`` (the sampling density on the Fourier grid), which brings the residual down in a few
iterations. ``λ`` is ``regularization`` times the mean of ``A``'s spectrum: a Wiener-like
floor where few planes pass (high frequencies, gaps in coverage).

Poses are those of :mod:`cryoposes.rotations` (a pose maps the image frame to the molecule
frame), shifts and CTFs those of :mod:`cryoposes.imaging` and :mod:`cryoposes.particles`, so a
dataset written by ``cryoposes simulate`` reconstructs to the map it was simulated from.
Symmetry (C_n, D_n) adds every symmetry copy of each pose. On a CUDA GPU, ``method="astra"``
runs ASTRA's CGLS instead (no CTF), as the 2021 paper did.

Half maps (:func:`half_maps`) come from a fixed random split of the images, for the
gold-standard FSC (:mod:`cryoposes.fsc`).
"""

from __future__ import annotations

import math
import os

import numpy as np
import scipy.fft

from cryoposes import imaging, projection, rotations
from cryoposes.ctf import ctf_images
from cryoposes.symmetry import symmetry_group
from cryoposes.volumes import Volume

__all__ = ["METHODS", "reconstruct", "half_maps"]

#: Reconstruction methods: ``auto`` (ASTRA on a CUDA GPU when the images have no CTF, else
#: ``fourier``), ``fourier`` (CPU, the least-squares solution above) and ``astra`` (ASTRA's CGLS).
METHODS = ("auto", "fourier", "astra")

#: Relative accuracy of the NUFFTs.
_TOLERANCE = 1e-5
#: Plane samples per NUFFT call (memory: ~40 bytes each).
_POINTS_PER_BATCH = 2**22


def _check_inputs(images, quaternions, shifts, ctf):
    images = imaging._check_images(images)
    quaternions = rotations._check_quaternions(quaternions)
    if len(quaternions) != len(images):
        raise ValueError(f"need one pose per image: {len(quaternions)} poses for {len(images)} images")
    shifts = np.zeros((len(images), 2)) if shifts is None else np.asarray(shifts, dtype=float)
    if shifts.shape != (len(images), 2) or not np.all(np.isfinite(shifts)):
        raise ValueError(f"shifts must be finite and shaped ({len(images)}, 2), got {shifts.shape}")
    if ctf is not None:
        ctf.per_particle(len(images))  # one value per image, or scalars
    return images, quaternions, shifts


class ImageSpectra:
    """The Fourier samples of the images on their central planes, the shifts undone.

    Frequencies ``kx``, ``ky`` (M,) in cycles per pixel are those of an ``L``-point DFT about
    the pixel ``L // 2`` inside the Nyquist circle; ``values`` (N, M) complex128 are the images'
    spectra times ``e^{2πi k·t}`` times the CTF, ``weights`` (N, M) the squared CTF (ones
    without one). Shared by the reconstruction and :mod:`cryoposes.refinement`.
    """

    def __init__(self, images, shifts, ctf, pixel_size):
        count, size = images.shape[0], images.shape[-1]
        frequencies = (np.arange(size) - size // 2) / size  # cycles per pixel
        ky, kx = np.meshgrid(frequencies, frequencies, indexing="ij")
        inside = kx**2 + ky**2 < 0.25
        self.kx, self.ky = kx[inside], ky[inside]
        spectra = scipy.fft.fftshift(
            scipy.fft.fft2(scipy.fft.ifftshift(images.astype(np.float64), axes=(-2, -1))), axes=(-2, -1))
        values = spectra[:, inside]
        values *= np.exp(2j * np.pi * (shifts[:, :1] * self.kx + shifts[:, 1:] * self.ky))
        if ctf is None:
            self.weights = np.ones(values.shape)
        else:
            transfer = ctf_images(size, pixel_size, ctf, count=count)[:, inside].astype(np.float64)
            values *= transfer
            self.weights = transfer**2
        self.values = values
        self.size = size

    def points(self, matrices):
        """3-D sample points (z, y, x), radians per voxel, of the planes at poses ``matrices``."""
        return tuple(2 * np.pi * (matrices[:, axis, 0, None] * self.kx + matrices[:, axis, 1, None] * self.ky)
                     for axis in (2, 1, 0))


def _type1(points, strengths, modes):
    """Σ_j strengths_j · e^{+i (m · point_j)} on the centred grid of ``modes`` (finufft type 1)."""
    import finufft

    return finufft.nufft3d1(*(np.ascontiguousarray(p.ravel()) for p in points),
                            np.ascontiguousarray(strengths.ravel(), dtype=np.complex128), modes,
                            eps=_TOLERANCE, isign=1)


def _accumulate(planes, matrices, strengths, modes, group):
    """Σ over images and symmetry copies of the type-1 NUFFT of ``strengths`` (N, M) on the
    planes at poses ``g·R_i``, in batches of images that keep memory bounded."""
    per_batch = max(1, _POINTS_PER_BATCH // strengths.shape[1])
    total = np.zeros(modes, dtype=np.complex128)
    for copy in group:
        for start in range(0, len(matrices), per_batch):
            batch = slice(start, start + per_batch)
            total += _type1(planes.points(copy @ matrices[batch]), strengths[batch], modes)
    return total


def _group_matrices(symmetry):
    return rotations.quaternion_to_matrix(symmetry_group(symmetry))


class _NormalEquations:
    """``A = Σ P_iᵀ C_i² P_i`` applied as a convolution with its kernel (FFTs of size 2L), and
    its circulant approximation on the L grid as a preconditioner."""

    def __init__(self, planes, matrices, group):
        size = planes.size
        kernel = _accumulate(planes, matrices, planes.weights, (2 * size,) * 3, group).real
        # Circular layout (offset d at index d mod 2L): the kernel is real and even, as the
        # planes hold both k and −k with the same CTF².
        circular = scipy.fft.ifftshift(kernel)
        self.kernel_spectrum = scipy.fft.rfftn(circular, workers=_workers())
        # T. Chan's optimal circulant approximation: offsets d and d ∓ L share a diagonal of the
        # L-periodic matrix, weighted by how often each occurs in the Toeplitz one, (L − |d|)/L.
        offsets = np.abs(scipy.fft.ifftshift(np.arange(-size, size)))
        triangle = np.clip((size - offsets) / size, 0.0, None)
        weighted = circular * triangle[:, None, None] * triangle[None, :, None] * triangle[None, None, :]
        folded = sum(weighted[i * size:(i + 1) * size, j * size:(j + 1) * size, k * size:(k + 1) * size]
                     for i in range(2) for j in range(2) for k in range(2))
        self.density = np.maximum(scipy.fft.rfftn(folded, workers=_workers()).real, 0.0)
        frequency = np.sqrt(sum(np.meshgrid(scipy.fft.fftfreq(size) ** 2, scipy.fft.fftfreq(size) ** 2,
                                            scipy.fft.rfftfreq(size) ** 2, indexing="ij")))
        self.mean_density = float(self.density[frequency < 0.5].mean())
        self.size = size

    def apply(self, volume):
        size = self.size
        padded = scipy.fft.rfftn(volume, s=(2 * size,) * 3, workers=_workers())
        return scipy.fft.irfftn(padded * self.kernel_spectrum, s=(2 * size,) * 3,
                                workers=_workers())[:size, :size, :size]

    def precondition(self, volume, floor):
        spectrum = scipy.fft.rfftn(volume, workers=_workers())
        return scipy.fft.irfftn(spectrum / (self.density + floor), s=volume.shape, workers=_workers())


def _workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def _conjugate_gradients(operator, right_side, floor, iterations, tolerance):
    """Preconditioned CG on ``(A + floor)·x = right_side``; returns x and the relative residuals."""
    solution = np.zeros_like(right_side)
    residual = right_side.copy()
    direction = operator.precondition(residual, floor)
    product = float(np.vdot(residual, direction))
    scale = float(np.linalg.norm(right_side)) or 1.0
    history = []
    for _ in range(iterations):
        applied = operator.apply(direction) + floor * direction
        step = product / float(np.vdot(direction, applied))
        solution += step * direction
        residual -= step * applied
        history.append(float(np.linalg.norm(residual)) / scale)
        if history[-1] < tolerance:
            break
        preconditioned = operator.precondition(residual, floor)
        previous, product = product, float(np.vdot(residual, preconditioned))
        direction = preconditioned + (product / previous) * direction
    return solution, history


def reconstruct(images, quaternions, shifts=None, ctf=None, pixel_size: float = 1.0, symmetry: str = "C1",
                regularization: float = 0.1, iterations: int = 40, tolerance: float = 1e-3,
                method: str = "auto") -> Volume:
    """The map that best explains the images at their poses (see the module docstring).

    Parameters
    ----------
    images : array_like
        (N, L, L) particle images, indexed ``[y, x]``.
    quaternions : array_like
        (N, 4) poses, scalar first (:mod:`cryoposes.rotations`).
    shifts : array_like, optional
        (N, 2) shifts ``(t_x, t_y)`` in pixels that moved each particle off the centre.
    ctf : cryoposes.ctf.CTFParameters, optional
        Each image's CTF (scalars shared by all, or one value per image).
    pixel_size : float, optional
        Å per pixel; the map's voxel size.
    symmetry : str, optional
        Point group of the molecule (``"C1"``, ``"C4"``, ``"D2"``, …) imposed on the map.
    regularization : float, optional
        λ as a fraction of the mean sampling density: larger values damp the frequencies that
        few images sample (and the noise) more.
    iterations : int, optional
        Most conjugate-gradient iterations (``fourier``) or CGLS iterations (``astra``).
    tolerance : float, optional
        Stop once the relative residual of the normal equations is below it (``fourier``).
    method : str, optional
        One of :data:`METHODS`.

    Returns
    -------
    cryoposes.volumes.Volume
        (L, L, L) float32 map, indexed ``[z, y, x]``, centred on the voxel ``L // 2``, with voxel
        size ``pixel_size``.

    Raises
    ------
    ValueError
        Shapes that do not match, NaN values, an unknown method or symmetry; ``method="astra"``
        without a CUDA GPU, or with a CTF.

    Examples
    --------
    >>> import numpy as np
    >>> from cryoposes import projection, rotations
    >>> from cryoposes.reconstruction import reconstruct
    >>> x, y, z = np.meshgrid(*[np.arange(24) - 12] * 3, indexing="ij")
    >>> blob = np.exp(-((x - 3) ** 2 + y ** 2 + 2 * (z + 2) ** 2) / 8.0)
    >>> poses = rotations.random_quaternions(300, 0)
    >>> images = projection.project(blob, poses, method="fourier")
    >>> volume = reconstruct(images, poses, method="fourier")
    >>> volume.data.shape, bool(np.corrcoef(volume.data.ravel(), blob.ravel())[0, 1] > 0.99)
    ((24, 24, 24), True)
    """
    if method not in METHODS:
        raise ValueError(f"unknown reconstruction method {method!r}; choose one of {METHODS}")
    if not (regularization >= 0 and math.isfinite(regularization)):
        raise ValueError(f"regularization must be a non-negative number, got {regularization}")
    if iterations < 1:
        raise ValueError(f"iterations must be positive, got {iterations}")
    images, quaternions, shifts = _check_inputs(images, quaternions, shifts, ctf)
    pixel_size = float(pixel_size)
    if method == "auto":
        method = "astra" if ctf is None and projection.cuda_available() else "fourier"
    group = _group_matrices(symmetry)
    matrices = rotations.quaternion_to_matrix(quaternions)
    if method == "astra":
        if not projection.cuda_available():
            raise ValueError("method='astra' needs a CUDA GPU (astra.use_cuda() is False); use 'fourier'")
        if ctf is not None:
            raise ValueError("ASTRA's reconstruction has no CTF model; use method='fourier'")
        data = _astra_cgls(imaging.shift_images(images, -shifts), matrices, group, iterations)
    else:
        planes = ImageSpectra(images, shifts, ctf, pixel_size)
        right_side = _accumulate(planes, matrices, planes.values, (planes.size,) * 3, group).real
        operator = _NormalEquations(planes, matrices, group)
        data, _ = _conjugate_gradients(operator, right_side, regularization * operator.mean_density,
                                       iterations, tolerance)
    return Volume(np.ascontiguousarray(data, dtype=np.float32), pixel_size)


def half_maps(images, quaternions, shifts=None, ctf=None, pixel_size: float = 1.0, seed: int = 0,
              **options):
    """Two maps, each from one half of the images (a fixed random split), for the
    gold-standard FSC.

    Parameters
    ----------
    images, quaternions, shifts, ctf, pixel_size
        As :func:`reconstruct`.
    seed : int, optional
        Seed of the split: the same seed, the same halves.
    **options
        Passed to :func:`reconstruct` (``symmetry``, ``regularization``, ``method`` …).

    Returns
    -------
    first, second : cryoposes.volumes.Volume
        The half maps.
    halves : tuple of numpy.ndarray
        The sorted image indices of each half.
    """
    images, quaternions, shifts = _check_inputs(images, quaternions, shifts, ctf)
    if len(images) < 2:
        raise ValueError(f"half maps need at least 2 images, got {len(images)}")
    order = np.random.default_rng([seed, 17]).permutation(len(images))
    halves = (np.sort(order[: len(images) // 2]), np.sort(order[len(images) // 2:]))
    maps = []
    for half in halves:
        subset = None
        if ctf is not None:
            subset = ctf.take(half, len(images))
        maps.append(reconstruct(images[half], quaternions[half], shifts[half], subset, pixel_size, **options))
    return maps[0], maps[1], halves


def _astra_cgls(images, matrices, group, iterations):
    """ASTRA's CGLS3D_CUDA on the images at every symmetry copy of their poses (call only when
    :func:`cryoposes.projection.cuda_available`)."""
    import astra

    size = images.shape[-1]
    poses = np.concatenate([g @ matrices for g in group])
    stack = np.ascontiguousarray(np.transpose(np.tile(images, (len(group), 1, 1)), (1, 0, 2)), dtype=np.float32)
    geometry = projection.astra_geometry(poses, size)
    sinogram = astra.data3d.create("-sino", geometry, stack)
    volume = astra.data3d.create("-vol", astra.create_vol_geom(size, size, size), 0.0)
    configuration = astra.astra_dict("CGLS3D_CUDA")
    configuration["ProjectionDataId"], configuration["ReconstructionDataId"] = sinogram, volume
    algorithm = astra.algorithm.create(configuration)
    try:
        astra.algorithm.run(algorithm, iterations)
        return astra.data3d.get(volume)
    finally:
        astra.algorithm.delete(algorithm)
        astra.data3d.delete([sinogram, volume])
