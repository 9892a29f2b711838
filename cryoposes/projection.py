"""The projector P_θ: line integrals of a density map at a batch of orientations.

Convention (the one of :mod:`cryoposes.rotations`, RELION's and ASPIRE's): the volume array is
indexed ``[z, y, x]`` with its centre at voxel ``L // 2``; the image at pose ``R`` is indexed
``[y, x]`` with the same centre, and its pixel ``(x, y)`` is the line integral

    p(x, y) = Σ_z V(R · (x, y, z))          (a sum with unit step: *not* ASPIRE's mean)

so the projection at the identity is ``volume.sum(axis=0)`` (up to the band limit below).

The volume is taken as band-limited to its **Nyquist sphere** (frequencies below half a cycle per
voxel in every direction). Unlike the Nyquist cube, the sphere turns into itself under every
rotation, so projecting a rotated volume is the same as projecting at the rotated pose, and every
projection's spectrum fits inside its image's Nyquist band (no aliasing). For maps with energy in
the corners of the cube the identity projection therefore differs from ``volume.sum(axis=0)`` by
that part: 3% for 5j0n at 64³ as :func:`cryoposes.volumes.load_protein` makes it (a Fourier crop,
with 2.5% of the energy outside the sphere), 0.3% at 128³; for smooth maps they agree.

Two projectors compute it:

* ``method="fourier"`` (CPU, the default without a GPU): the Fourier slice theorem. The 2-D
  spectrum of the projection at pose ``R`` is the volume's 3-D spectrum on the central plane
  ``R · (k_x, k_y, 0)``; finufft's type-2 non-uniform FFT evaluates it (on the half plane
  ``k_x ≥ 0``, since projections are real, and inside the Nyquist circle), then ``irfft2`` on a
  grid 1.25× the image size (so the density of a map that fits its box under rotation does not
  wrap around into the image) and a crop give the image. A whole batch of slices is one NUFFT,
  float32/complex64 throughout. Against the reference below: 0.5–0.75% relative error on 5j0n
  at 64³, < 0.1% at 128³.
* ``method="astra"``: ASTRA's ``parallel3d_vec`` GPU forward projector (a ray-driven line integral
  of the trilinear interpolant), used only when ``astra.use_cuda()`` is true — on a machine
  without a GPU every ASTRA 3-D call kills the process with SIGFPE, which no ``try``/``except``
  catches. Its discretisation differs from the band-limited one by a few percent.

``method="auto"`` picks ASTRA when CUDA is available, otherwise the Fourier projector.

:func:`project_reference` is the slow float64 brute force used to check both: it samples the
(band-limited) volume along every ray with :func:`scipy.ndimage.map_coordinates` and sums.
"""

from __future__ import annotations

import os

import numpy as np
import scipy.fft
import scipy.ndimage
from tqdm.auto import tqdm

from cryoposes.rotations import quaternion_to_matrix

__all__ = ["METHODS", "REFERENCES", "project", "project_reference", "bandlimited_grid", "cuda_available", "astra_geometry"]

#: Projector names accepted by :func:`project`.
METHODS = ("auto", "fourier", "astra")

#: Relative tolerance of the NUFFT evaluating the central slices (complex64).
TOLERANCE = 1e-3
#: finufft's oversampling of the volume's grid: 1.25 instead of its default 2 makes the FFT it
#: repeats on every call 4× smaller, for a slightly wider interpolation kernel.
NUFFT_UPSAMPLING = 1.25
#: Size of the inverse-FFT grid of each projection, in units of L (see ``_FourierProjector``).
OUTPUT_PADDING = 1.25
#: Slice points per NUFFT call when ``batch_size`` is not given (each call repeats one FFT of the
#: oversampled volume, so large batches pay it less often; ~250 MB of work arrays).
POINTS_PER_BATCH = 2**23


def _volume_array(volume) -> np.ndarray:
    """The ``[z, y, x]`` array of a :class:`cryoposes.volumes.Volume` or an array, validated."""
    data = np.asarray(getattr(volume, "data", volume))
    if data.ndim != 3 or len(set(data.shape)) != 1:
        raise ValueError(f"volume must be a cube of shape (L, L, L), got shape {data.shape}")
    if data.shape[0] < 2:
        raise ValueError(f"volume must be at least 2 voxels wide, got {data.shape[0]}")
    if not np.all(np.isfinite(data)):
        raise ValueError("volume contains NaN or infinite values")
    return data


def _rotation_matrices(quaternions) -> np.ndarray:
    q = np.asarray(quaternions, dtype=float)
    if q.ndim != 2 or q.shape[1] != 4:
        raise ValueError(f"quaternions must be shaped (N, 4), got {q.shape}")
    return quaternion_to_matrix(q)


def cuda_available() -> bool:
    """Whether ASTRA is installed and can use a CUDA GPU.

    Checked before any ASTRA 3-D call: without a GPU those kill the process (see the module
    docstring).

    Returns
    -------
    bool
        True if ``astra`` imports and ``astra.use_cuda()`` is true.

    Examples
    --------
    >>> from cryoposes.projection import cuda_available
    >>> isinstance(cuda_available(), bool)
    True
    """
    try:
        import astra
    except ImportError:
        return False
    return bool(astra.use_cuda())


def project(volume, quaternions, method: str = "auto", batch_size: int | None = None, progress: bool = False):
    """Projections of a volume at a batch of poses: ``p(x, y) = Σ_z V(R · (x, y, z))``.

    See the module docstring for the convention (centre ``L // 2``, Nyquist-sphere band limit)
    and the methods.

    Parameters
    ----------
    volume : Volume or array_like
        (L, L, L) density indexed ``[z, y, x]``.
    quaternions : array_like
        (N, 4) poses, scalar first.
    method : {"auto", "fourier", "astra"}, optional
        ``"auto"`` is ASTRA when :func:`cuda_available`, else the Fourier projector.
    batch_size : int, optional
        Images per batch (default: as many as fit ``POINTS_PER_BATCH`` slice points for the
        Fourier projector, 256 for ASTRA).
    progress : bool, optional
        Show a tqdm bar, updated after each batch.

    Returns
    -------
    numpy.ndarray
        (N, L, L) float32, indexed ``[y, x]``.

    Raises
    ------
    ValueError
        If ``method`` is unknown (or ``"astra"`` without CUDA), ``batch_size`` is not positive,
        the volume is not a finite cube, or ``quaternions`` is not (N, 4).

    Examples
    --------
    >>> import numpy as np
    >>> from cryoposes.projection import project
    >>> from cryoposes.volumes import load_protein
    >>> images = project(load_protein("5j0n", box=32), np.eye(4)[:2], method="fourier")
    >>> images.shape, images.dtype
    ((2, 32, 32), dtype('float32'))
    """
    if method not in METHODS:
        raise ValueError(f"unknown projection method {method!r}; choose one of {METHODS}")
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    data = _volume_array(volume)
    rotations = _rotation_matrices(quaternions)
    if method == "auto":
        method = "astra" if cuda_available() else "fourier"
    if method == "astra":
        if not cuda_available():
            raise ValueError("method='astra' needs a CUDA GPU (astra.use_cuda() is False); use 'fourier'")
        projector = _astra_projector(data)
        batch_size = batch_size or 256
    else:
        projector = _FourierProjector(data)
        batch_size = batch_size or max(1, POINTS_PER_BATCH // len(projector.slice_index))
    length = data.shape[0]
    images = np.empty((len(rotations), length, length), dtype=np.float32)
    with tqdm(total=len(rotations), desc=f"projecting ({method})", unit="image", disable=not progress) as bar:
        for start in range(0, len(rotations), batch_size):
            batch = rotations[start : start + batch_size]
            images[start : start + len(batch)] = projector(batch)
            bar.update(len(batch))
    return images


class _FourierProjector:
    """Central slices of the volume's spectrum, evaluated by a type-2 NUFFT (see module docstring)."""

    def __init__(self, data: np.ndarray, tolerance: float = TOLERANCE):
        import finufft

        length = data.shape[0]
        # Output grid: the inverse FFT is periodic with this size P, so density farther than
        # P − L/2 from the centre wraps around into the L×L image. At P = 1.25·L that is 0.75·L:
        # everything of a map that stays inside the box under rotation (as load_protein makes
        # them, within L/2) is safe, the box's corners (√3·L/2 ≈ 0.87·L) are not. The faint
        # ringing of the band limit does wrap in: 0.5–0.75% of the image on 5j0n at 64³ (0.45–0.6%
        # at P = 1.5·L, for a third more time), < 0.1% at 128³.
        size = scipy.fft.next_fast_len(2 * int(np.ceil(OUTPUT_PADDING * length / 2)), real=True)
        size += size % 2
        ky = scipy.fft.fftfreq(size, 1.0 / size)
        kx = np.arange(size // 2 + 1, dtype=float)
        ky_grid, kx_grid = np.meshgrid(ky, kx, indexing="ij")
        # Half-plane of the rfft grid (projections are real) inside the Nyquist circle; rotations
        # keep norms, so these are exactly the slice points inside the volume's Nyquist sphere.
        inside = ky_grid**2 + kx_grid**2 < (size / 2) ** 2
        self.slice_index = np.flatnonzero(inside)
        self.kx = (2 * np.pi / size * kx_grid[inside]).astype(np.float32)  # radians per voxel
        self.ky = (2 * np.pi / size * ky_grid[inside]).astype(np.float32)
        self.size = size
        # Multiplying the spectrum by (−1)^(k_x + k_y) moves the image centre from index 0 to
        # size // 2, so the L×L image is the plain slice starting at this corner.
        self.recentre = np.where((kx_grid[inside] + ky_grid[inside]) % 2 == 0, 1, -1).astype(np.float32)
        self.corner = size // 2 - length // 2
        self.length = length
        # Modes ordered −L//2 … so that voxel L//2 is the origin of the phases (modeord=0).
        self.coefficients = np.ascontiguousarray(data, dtype=np.complex64)
        # Slice points arrive in raster order, already local in the spectrum: finufft's sorting
        # costs more than it saves. One thread: the NUFFT is a small part of the work, and
        # OpenMP threads spin-wait badly on a busy machine.
        self.plan = finufft.Plan(2, data.shape, eps=tolerance, isign=-1, dtype="complex64",
                                 upsampfac=NUFFT_UPSAMPLING, spread_sort=0, nthreads=1)

    def __call__(self, rotations: np.ndarray) -> np.ndarray:
        size, count = self.size, len(rotations)
        r = rotations.astype(np.float32)
        # Frequencies k_x·R e_x + k_y·R e_y in the molecule frame, one contiguous (count, points)
        # array per axis; finufft's first axis is the array's first axis: z, then y, then x.
        self.plan.setpts(*(
            (r[:, axis, 0, None] * self.kx + r[:, axis, 1, None] * self.ky).ravel() for axis in (2, 1, 0)
        ))
        values = self.plan.execute(self.coefficients).reshape(count, -1)
        half = np.zeros((count, size * (size // 2 + 1)), dtype=np.complex64)
        half[:, self.slice_index] = values * self.recentre
        images = scipy.fft.irfft2(half.reshape(count, size, size // 2 + 1), s=(size, size), workers=_workers())
        return images[:, self.corner : self.corner + self.length, self.corner : self.corner + self.length]


def _workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def astra_geometry(rotations: np.ndarray, length: int) -> dict:
    """ASTRA's ``parallel3d_vec`` geometry of images ``length`` pixels wide at the poses
    ``rotations`` (N, 3, 3), in the convention of this module (shared with
    :mod:`cryoposes.reconstruction`; create nothing on the GPU).

    Parameters
    ----------
    rotations : numpy.ndarray
        (N, 3, 3) pose matrices.
    length : int
        Image and volume side L.

    Returns
    -------
    dict
        The projection geometry, for ``astra.create_sino3d_gpu`` or ``astra.data3d.create``.
    """
    import astra

    # ASTRA puts the origin at the middle of the array, index (L − 1)/2; ours is at index L // 2.
    origin = np.full(3, length // 2 - (length - 1) / 2)
    # ASTRA's detector pixel (row, col) sits at d + (col − L/2 + 0.5)·u + (row − L/2 + 0.5)·v;
    # ours, (iy, ix), at origin + (ix − L//2)·R e_x + (iy − L//2)·R e_y.
    pixel_shift = length // 2 - length / 2 + 0.5
    # Columns of R in (x, y, z) order, as ASTRA wants them.
    ray, u, v = rotations[:, :, 2], rotations[:, :, 0], rotations[:, :, 1]
    detector = origin - pixel_shift * (u + v)
    return astra.create_proj_geom("parallel3d_vec", length, length, np.concatenate([ray, detector, u, v], axis=1))


def _astra_projector(data: np.ndarray):
    """ASTRA ``parallel3d_vec`` projector (call only when :func:`cuda_available`)."""
    import astra

    length = data.shape[0]
    volume_geometry = astra.create_vol_geom(length, length, length)  # rows (y), columns (x), slices (z)
    volume = np.ascontiguousarray(data, dtype=np.float32)

    def projector(rotations: np.ndarray) -> np.ndarray:
        sinogram_id, sinogram = astra.create_sino3d_gpu(volume, astra_geometry(rotations, length), volume_geometry)
        astra.data3d.delete(sinogram_id)
        return np.transpose(sinogram, (1, 0, 2))  # (rows, angles, columns) → (angles, rows, columns)

    return projector


#: Kinds of brute-force reference computed by :func:`project_reference`.
REFERENCES = ("bandlimited", "trilinear")


def bandlimited_grid(data: np.ndarray, padding: float = 2.0, factor: int = 2):
    """Samples, on a grid ``factor`` times finer, of the volume band-limited to its Nyquist sphere.

    The function is ``Σ_r V(r)·h(x − r)`` with ``h`` the inverse Fourier transform of the Nyquist
    ball (the object the Fourier projector projects). It is not periodic, so the volume is first
    zero-padded to ``padding·L`` (its tails beyond get cut off), cut to the sphere in Fourier space,
    and interpolated by zero-padding the spectrum.

    Parameters
    ----------
    data : array_like
        (L, L, L) volume.
    padding : float, optional
        Side of the zero-padded volume, in units of L.
    factor : int, optional
        Fine samples per voxel.

    Returns
    -------
    samples : numpy.ndarray
        (M, M, M) float64, ``M = factor · P`` with ``P`` the even padded side.
    centre : int
        Index in ``samples`` (on every axis) of the volume's centre voxel ``L // 2``.

    Examples
    --------
    >>> import numpy as np
    >>> from cryoposes.projection import bandlimited_grid
    >>> samples, centre = bandlimited_grid(np.ones((8, 8, 8)))
    >>> samples.shape, centre
    ((32, 32, 32), 16)
    """
    data = np.asarray(data, dtype=np.float64)
    length = data.shape[0]
    size = 2 * int(np.ceil(padding * length / 2))  # even, so the centre stays at size // 2
    offset = size // 2 - length // 2
    padded = np.zeros((size,) * 3)
    padded[offset : offset + length, offset : offset + length, offset : offset + length] = data
    spectrum = scipy.fft.rfftn(padded)
    full, half = scipy.fft.fftfreq(size), scipy.fft.rfftfreq(size)
    spectrum *= full[:, None, None] ** 2 + full[:, None] ** 2 + half**2 < 0.25
    fine = factor * size
    # The sphere has removed the Nyquist planes, so zero-padding the spectrum is unambiguous.
    rows = np.where(full >= 0, np.arange(size), np.arange(size) + fine - size)
    spread = np.zeros((fine, fine, fine // 2 + 1), dtype=complex)
    spread[np.ix_(rows, rows, np.arange(size // 2 + 1))] = spectrum
    del spectrum
    samples = scipy.fft.irfftn(spread, s=(fine,) * 3) * factor**3
    return samples, factor * (size // 2)


def project_reference(volume, quaternions, kind: str = "bandlimited"):
    """Brute-force float64 projections: sample the volume along each ray and sum.

    For pixel ``(x, y)`` at pose ``R`` the points ``R · (x, y, z)`` are sampled with
    :func:`scipy.ndimage.map_coordinates` (zero outside the grid) in constant steps of ``z``
    along the whole ray, and summed times the step. Slow: for checking :func:`project`.

    Parameters
    ----------
    volume : Volume or array_like
        (L, L, L) density indexed ``[z, y, x]``.
    quaternions : array_like
        (N, 4) poses, scalar first.
    kind : {"bandlimited", "trilinear"}, optional
        ``"bandlimited"`` (what the projectors are checked against, within 1% at 64³) is the line
        integral of the volume band-limited to its Nyquist sphere, as the Fourier projector:
        cubic splines through :func:`bandlimited_grid` (twice padded, twice finer) at steps of
        half a voxel. ``"trilinear"`` is the ray sum through the trilinear interpolant of the
        voxels, a different discretisation (a few percent off on 5j0n).

    Returns
    -------
    numpy.ndarray
        (N, L, L) float64.

    Raises
    ------
    ValueError
        If ``kind`` is unknown, the volume is not a finite cube, or ``quaternions`` is not (N, 4).

    Examples
    --------
    >>> import numpy as np
    >>> from cryoposes.projection import project, project_reference
    >>> from cryoposes.volumes import load_protein, resample
    >>> volume = resample(load_protein("5j0n", box=32), 16)
    >>> reference = project_reference(volume, np.eye(4)[:1])
    >>> error = np.linalg.norm(project(volume, np.eye(4)[:1], method="fourier") - reference)
    >>> reference.shape, reference.dtype, bool(error < 0.05 * np.linalg.norm(reference))
    ((1, 16, 16), dtype('float64'), True)
    """

    if kind not in REFERENCES:
        raise ValueError(f"unknown reference {kind!r}; choose one of {REFERENCES}")
    data = _volume_array(volume).astype(np.float64)
    rotations = _rotation_matrices(quaternions)
    length = data.shape[0]
    if kind == "bandlimited":
        factor, order = 2, 3
        samples, centre = bandlimited_grid(data, factor=factor)
        samples = scipy.ndimage.spline_filter(samples, order=order, mode="constant", output=samples)
    else:
        factor, order = 1, 1
        samples, centre = data, length // 2
    # The grid's half-diagonal bounds how far a ray can meet nonzero samples from the centre.
    reach = int(np.ceil(np.sqrt(3) * samples.shape[0] / 2 / factor)) + 1
    depth = np.arange(-reach * factor, reach * factor + 1) / factor
    pixels = np.arange(length) - length // 2
    y, x = np.meshgrid(pixels, pixels, indexing="ij")
    images = np.empty((len(rotations), length, length))
    for i, r in enumerate(rotations):
        # Ray points in the molecule frame, (xyz, y, x, depth), centred at the origin.
        points = (
            x[None, :, :, None] * r[:, 0, None, None, None]
            + y[None, :, :, None] * r[:, 1, None, None, None]
            + depth * r[:, 2, None, None, None]
        )
        indices = points[::-1] * factor + centre  # array order z, y, x
        values = scipy.ndimage.map_coordinates(
            samples, indices.reshape(3, -1), order=order, mode="constant", cval=0.0, prefilter=False
        )
        images[i] = values.reshape(length, length, -1).sum(axis=-1) / factor
    return images
