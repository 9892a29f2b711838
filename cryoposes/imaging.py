"""The imaging operators on projections: in-plane rotation, shift S_t and noise n.

y = C_φ S_t P_θ x + n, applied to stacks of images ``(N, L, L)`` indexed ``[y, x]`` (the
contrast transfer C_φ is :mod:`cryoposes.ctf`):

* :func:`rotate_images` turns each image in its plane about the centre pixel ``L // 2``; by the
  projection convention this is exactly the image of the pose ``q ⊗ q_z(α)``
  (:func:`rotate_in_plane` returns both).

* :func:`shift_images` moves each image by ``t = (t_x, t_y)`` pixels (sub-pixel, by a phase ramp
  in Fourier space): ``out(r) = in(r − t)``, so the particle's centre moves from ``L // 2`` to
  ``L // 2 + t``. Integer shifts equal :func:`numpy.roll`. (RELION's ``rlnOriginX/YAngst`` are
  the opposite: the origin offset that brings the particle back, ``−t`` times the pixel size;
  :mod:`cryoposes.particles` converts.) :func:`estimate_shifts` finds unknown shifts back by
  centring every particle on the stack's rotational average, as particles are centred before
  any pose is known.
* :func:`scale_images` magnifies each image about its centre pixel (a molecule that fills more
  or less of the box, or another pixel size) and :func:`blur_images` low-passes it with a
  Gaussian (a map of lower resolution): what differs between proteins and datasets, used to
  augment training so that a network cannot learn one molecule's size and detail.
* :func:`add_noise` adds white Gaussian noise at a target signal-to-noise ratio, the clean
  images' variance over the noise variance, given in decibels: ``snr_db = 10·log10(SNR)``. The
  2021 paper's σ² = 16 on unit-variance images is SNR 1/16 = −12.04 dB. :func:`standardize`
  brings a clean stack to mean 0 and variance 1 first (as the simulator does).

Every random draw comes from a seeded :class:`numpy.random.Generator`. Operations on whole
stacks work in blocks of images, so that their extra memory stays one block's however many
particles there are.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.fft
from scipy import ndimage

from cryoposes import rotations

__all__ = [
    "rotate_images",
    "rotate_in_plane",
    "shift_images",
    "estimate_shifts",
    "scale_images",
    "blur_images",
    "resample_images",
    "add_noise",
    "noise_variance",
    "stack_moments",
    "standardize",
    "snr_to_db",
    "db_to_snr",
]


def _check_images(images) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim != 3 or images.shape[1] != images.shape[2]:
        raise ValueError(f"images must be a stack of square images (N, L, L), got shape {images.shape}")
    if not np.all(np.isfinite(images)):
        raise ValueError("images contain NaN or infinite values")
    return images


def _positive(value, name: str) -> float:
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive number, got {value}")
    return value


def _frequency_grid(size: int, pixel_size: float = 1.0):
    """(k_y, k_x) of the ``rfft2`` grid of a ``size × size`` image, in cycles per Å."""
    ky = scipy.fft.fftfreq(size, d=pixel_size)[:, None]
    kx = scipy.fft.rfftfreq(size, d=pixel_size)[None, :]
    return ky, kx


def rotate_images(images, angles) -> np.ndarray:
    """Images turned in their plane: ``out(x, y) = in(Rz(α)·(x, y))`` about the centre pixel.

    Cubic-spline interpolation about the pixel ``L // 2`` (the projection centre), zeros
    outside. By the projection convention these are the images of the poses ``q ⊗ q_z(α)``
    (see :func:`rotate_in_plane`).

    Parameters
    ----------
    images : array_like
        (N, L, L), indexed ``[y, x]``.
    angles : array_like
        (N,) angles α in radians, one per image.

    Returns
    -------
    numpy.ndarray
        (N, L, L) float32.

    Examples
    --------
    >>> import numpy as np
    >>> from cryoposes.imaging import rotate_images
    >>> image = np.zeros((1, 5, 5)); image[0, 2, 3] = 1.0      # one pixel at x = 3, y = 2
    >>> turned = rotate_images(image, [np.pi / 2])
    >>> np.unravel_index(np.argmax(turned[0]), (5, 5))          # read at Rz(90°)·(x, y)
    (np.int64(1), np.int64(2))
    """
    images = np.asarray(images, dtype=np.float32)
    angles = np.asarray(angles, dtype=float)
    if images.ndim != 3 or images.shape[1] != images.shape[2]:
        raise ValueError(f"images must be a stack of square images (N, L, L), got shape {images.shape}")
    if angles.shape != (len(images),):
        raise ValueError(f"need one angle per image: got shape {angles.shape} for {len(images)} images")
    size = images.shape[-1]
    centre = np.array([size // 2, size // 2], dtype=float)
    rotated = np.empty_like(images)
    # Quarter turns move pixels onto pixels: exact index permutations, where the cubic spline
    # would return the same values ~30× slower.
    quarters = np.round(angles / (np.pi / 2))
    exact = np.abs(angles - quarters * (np.pi / 2)) < 1e-9
    for count in range(4):
        chosen = exact & (np.mod(quarters, 4) == count)
        rotated[chosen] = _quarter_turns(images[chosen], count)
    for index in np.flatnonzero(~exact):
        image, angle = images[index], angles[index]
        c, s = math.cos(angle), math.sin(angle)
        # Arrays are indexed [y, x]: (x, y) ↦ (c·x − s·y, s·x + c·y) reads as this matrix.
        matrix = np.array([[c, s], [-s, c]])
        rotated[index] = ndimage.affine_transform(image, matrix, offset=centre - matrix @ centre,
                                                  order=3, mode="constant", cval=0.0)
    return rotated


def _quarter_turns(images, count: int) -> np.ndarray:
    """``rotate_images`` by ``count`` × 90° for a stack, exactly: out[y, x] = in[x, 2c − y]
    per quarter turn about c = L // 2 (zeros where that falls outside the image)."""
    turned = np.array(images, dtype=np.float32)
    size = turned.shape[-1]
    double_centre = 2 * (size // 2)
    for _ in range(count):
        transposed = turned.swapaxes(1, 2)
        turned = np.zeros_like(transposed)
        first, end = max(0, double_centre - size + 1), min(size, double_centre + 1)
        turned[:, first:end] = transposed[:, double_centre - end + 1:double_centre - first + 1][:, ::-1]
    return turned


def rotate_in_plane(images, quaternions, angles):
    """Images turned in their plane (:func:`rotate_images`) and the poses they are images of.

    The projection at pose ``R·Rz(α)`` is ``Σ_z V(R·Rz(α)·(x, y, z))``, i.e. the old image read
    at ``Rz(α)·(x, y)``; so the turned image's pose is ``q ⊗ q_z(α)``, exactly.

    Parameters
    ----------
    images : array_like
        (N, L, L).
    quaternions : array_like
        (N, 4) poses of the images.
    angles : array_like
        (N,) angles in radians.

    Returns
    -------
    images : numpy.ndarray
        (N, L, L) float32.
    quaternions : numpy.ndarray
        (N, 4) float64, the poses of the turned images.
    """
    angles = np.asarray(angles, dtype=float)
    turns = rotations.axis_angle_to_quaternion(np.tile([0.0, 0.0, 1.0], (len(angles), 1)), angles)
    return rotate_images(images, angles), rotations.quaternion_multiply(np.asarray(quaternions, dtype=float), turns)


def shift_images(images, shifts) -> np.ndarray:
    """Images moved by sub-pixel shifts ``t``: ``out(r) = in(r − t)``, periodic.

    A phase ramp in Fourier space; integer shifts equal :func:`numpy.roll`.

    Parameters
    ----------
    images : array_like
        (N, L, L), indexed ``[y, x]``.
    shifts : array_like
        (N, 2) shifts ``(t_x, t_y)`` in pixels.

    Returns
    -------
    numpy.ndarray
        (N, L, L) float32.

    Raises
    ------
    ValueError
        If ``images`` is not a finite (N, L, L) stack or ``shifts`` not a finite (N, 2) array.

    Examples
    --------
    >>> import numpy as np
    >>> from cryoposes.imaging import shift_images
    >>> image = np.zeros((1, 8, 8)); image[0, 4, 4] = 1.0
    >>> np.argwhere(shift_images(image, [[1.0, 2.0]])[0] > 0.5).tolist()  # [y, x]
    [[6, 5]]
    """
    images = _check_images(images)
    shifts = np.asarray(shifts, dtype=float)
    if shifts.shape != (len(images), 2):
        raise ValueError(f"shifts must be shaped ({len(images)}, 2) as (x, y) pixels, got {shifts.shape}")
    if not np.all(np.isfinite(shifts)):
        raise ValueError("shifts contain NaN or infinite values")
    size = images.shape[-1]
    ky, kx = _frequency_grid(size)

    def ramp(rows):
        ramp_x = np.exp(-2j * np.pi * kx[None] * shifts[rows, 0, None, None])
        if size % 2 == 0:
            # A real image's Nyquist column cannot carry a phase: keep the real part of its ramp
            # (exact for integer shifts, and the same for +Nyquist and −Nyquist).
            ramp_x[..., -1] = ramp_x[..., -1].real
        return (ramp_x * np.exp(-2j * np.pi * ky[None] * shifts[rows, 1, None, None])).astype(np.complex64)

    return _filter_spectra(images, ramp)


def _filter_spectra(images, transfer, chunk: int = 2048) -> np.ndarray:
    """Each image's ``rfft2`` spectrum multiplied by ``transfer(rows)`` (for the images ``rows``,
    a slice), back in real space as float32.

    In blocks of ``chunk`` images: the transfers are made in double precision with temporaries
    of the spectra's size; on a whole stack of 100,000 images of 64 px (1.6 GB) they added
    9.9 GB to shifting it and 7.4 GB to phase-flipping it, in blocks 1.7 GB in all.
    """
    count, size = len(images), images.shape[-1]
    filtered = np.empty(images.shape, dtype=np.float32)
    for first in range(0, count, chunk):
        rows = slice(first, min(first + chunk, count))
        spectrum = scipy.fft.rfft2(images[rows].astype(np.float32))
        filtered[rows] = scipy.fft.irfft2(spectrum * transfer(rows), s=(size, size))
    return filtered


def _rotational_average(image) -> np.ndarray:
    """The image averaged over rings about the centre pixel ``L // 2`` (a round template)."""
    size = image.shape[-1]
    y, x = np.indices((size, size)) - size // 2
    ring = np.rint(np.hypot(y, x)).astype(int)
    return (np.bincount(ring.ravel(), image.ravel()) / np.bincount(ring.ravel()))[ring]


def estimate_shifts(images, max_shift: float, iterations: int = 3, low_pass: float = 0.08,
                    chunk: int = 2048) -> np.ndarray:
    """Shifts ``t`` of particles whose centres are unknown, found by centring them on a round template.

    Before any pose is known, each particle is centred on the rotational average of the
    centred stack: a round blob, so the result does not depend on the particle's unknown
    orientation. The template starts as the rotational average of the raw stack; each
    iteration cross-correlates every low-passed image with it, takes the peak within
    ``max_shift`` (refined to sub-pixel by a parabola through its neighbours), and rebuilds
    the template from the images so centred. What comes back is centred up to one 3-D
    offset common to all particles (the map's centre of mass need not be its box centre),
    which moves the reconstructed map but not the poses. Images with a CTF should be
    phase-flipped first (:func:`cryoposes.ctf.phase_flip`) so that all have the same contrast.

    Parameters
    ----------
    images : array_like
        (N, L, L) particle images, indexed ``[y, x]``.
    max_shift : float
        Largest shift searched, in pixels.
    iterations : int, optional
        Rounds of centring and rebuilding the template.
    low_pass : float, optional
        Gaussian low-pass of the cross-correlation, in cycles per pixel (its standard
        deviation): noise at high frequencies would move the peak.
    chunk : int, optional
        Images correlated at once (bounds the memory of the Fourier transforms).

    Returns
    -------
    numpy.ndarray
        (N, 2) shifts ``(t_x, t_y)`` in pixels, as :func:`shift_images` applies them: the
        particles are centred by ``shift_images(images, -shifts)``.

    Raises
    ------
    ValueError
        If ``images`` is not a finite (N, L, L) stack, ``max_shift`` is negative or not finite,
        or ``iterations`` is below 1.

    Examples
    --------
    >>> import numpy as np
    >>> from cryoposes.imaging import estimate_shifts, shift_images
    >>> y, x = np.indices((32, 32)) - 16
    >>> blob = np.exp(-(x**2 + 2 * y**2) / 20.0)[None].repeat(3, axis=0)
    >>> moved = shift_images(blob, [[3.0, -2.0], [0.0, 0.0], [-4.5, 1.5]])
    >>> np.round(estimate_shifts(moved, max_shift=6.0) - estimate_shifts(moved, 6.0)[1], 1).tolist()
    [[3.0, -2.0], [0.0, 0.0], [-4.5, 1.5]]
    """
    images = _check_images(images)
    max_shift = float(max_shift)
    if not math.isfinite(max_shift) or max_shift < 0:
        raise ValueError(f"max_shift must be a non-negative number of pixels, got {max_shift}")
    if int(iterations) < 1:
        raise ValueError(f"iterations must be at least 1, got {iterations}")
    size = images.shape[-1]
    y, x = np.indices((size, size)) - size // 2
    outside = np.hypot(y, x) > max_shift
    ky, kx = _frequency_grid(size)
    gaussian = np.exp(-(kx**2 + ky**2) / (2 * low_pass**2))
    # A ring of the background is subtracted and the template cut to the particle's disk, so
    # that the correlation sees the particle, not the box.
    radius = np.hypot(y, x)
    shifts = np.zeros((len(images), 2))
    for _ in range(int(iterations)):
        average = np.zeros((size, size))
        for first in range(0, len(images), chunk):
            block = images[first:first + chunk]
            average += (shift_images(block, -shifts[first:first + chunk]) if shifts.any() else block).sum(axis=0)
        template = _rotational_average(average / len(images))
        template -= template[radius.astype(int) == int(0.4 * size)].mean()
        template[radius > 0.35 * size] = 0.0
        filtered = np.conj(scipy.fft.rfft2(template)) * gaussian
        for first in range(0, len(images), chunk):
            block = images[first:first + chunk].astype(np.float32)
            correlation = scipy.fft.irfft2(scipy.fft.rfft2(block) * filtered, s=(size, size))
            correlation = np.fft.fftshift(correlation, axes=(1, 2))
            correlation[:, outside] = -np.inf
            peak_y, peak_x = np.unravel_index(correlation.reshape(len(block), -1).argmax(axis=1), (size, size))
            shifts[first:first + chunk] = np.stack(
                [peak_x - size // 2 + _parabola_peak(correlation, peak_y, peak_x, axis=1),
                 peak_y - size // 2 + _parabola_peak(correlation, peak_y, peak_x, axis=0)], axis=1)
    return shifts


def _parabola_peak(correlation, peak_y, peak_x, axis: int) -> np.ndarray:
    """Sub-pixel offset of each peak along ``axis`` (0: y, 1: x) from a parabola through the
    peak and its two neighbours; zero where a neighbour is outside the search disk."""
    size = correlation.shape[-1]
    index = np.arange(len(correlation))
    step = np.array([1, 0]) if axis == 0 else np.array([0, 1])
    values = [correlation[index, (peak_y + d * step[0]) % size, (peak_x + d * step[1]) % size] for d in (-1, 0, 1)]
    below, centre, above = values
    curvature = below - 2 * centre + above
    with np.errstate(invalid="ignore", divide="ignore"):
        offset = 0.5 * (below - above) / curvature
    usable = np.isfinite(offset) & (curvature < 0)
    return np.where(usable, np.clip(offset, -0.5, 0.5), 0.0)


def scale_images(images, factors) -> np.ndarray:
    """Images magnified by ``factors`` about the centre pixel ``L // 2`` (cubic spline, zero outside).

    ``out(c + r) = in(c + r / s)``: a factor above 1 makes the particle larger in the box. The
    pose is unchanged (a projection scaled about the rotation centre is the projection of the
    scaled map).

    Parameters
    ----------
    images : array_like
        (N, L, L), indexed ``[y, x]``.
    factors : array_like
        (N,) positive magnifications.

    Returns
    -------
    numpy.ndarray
        (N, L, L) float32.

    Raises
    ------
    ValueError
        If ``images`` is not a finite (N, L, L) stack or ``factors`` are not N positive numbers.

    Examples
    --------
    >>> import numpy as np
    >>> from cryoposes.imaging import scale_images
    >>> image = np.zeros((1, 9, 9)); image[0, 4, 6] = 1.0  # 2 px right of the centre
    >>> bigger = scale_images(image, [1.5])
    >>> int(np.argmax(bigger[0, 4])), bigger.shape  # now 3 px right of it
    (7, (1, 9, 9))
    """
    images = _check_images(images)
    factors = np.asarray(factors, dtype=float)
    if factors.shape != (len(images),) or not np.all(np.isfinite(factors)) or np.any(factors <= 0):
        raise ValueError(f"factors must be {len(images)} positive numbers, got shape {factors.shape}")
    centre = np.full(2, images.shape[-1] // 2, dtype=float)
    out = np.empty(images.shape, dtype=np.float32)
    for index, (image, factor) in enumerate(zip(images, factors)):
        # affine_transform maps output coordinates o to input coordinates M·o + offset.
        out[index] = ndimage.affine_transform(image, np.eye(2) / factor, offset=centre - centre / factor,
                                              order=3, mode="constant", cval=0.0)
    return out


def blur_images(images, sigmas) -> np.ndarray:
    """Images low-passed by Gaussians of standard deviation ``sigmas`` pixels (0: unchanged).

    Multiplies each spectrum by ``exp(−2π²σ²|k|²)`` (k in cycles per pixel): the blur of a map
    of lower resolution, seen in projection.

    Parameters
    ----------
    images : array_like
        (N, L, L), indexed ``[y, x]``.
    sigmas : array_like
        (N,) non-negative widths in pixels.

    Returns
    -------
    numpy.ndarray
        (N, L, L) float32.

    Raises
    ------
    ValueError
        If ``images`` is not a finite (N, L, L) stack or ``sigmas`` are not N non-negative numbers.

    Examples
    --------
    >>> import numpy as np
    >>> from cryoposes.imaging import blur_images
    >>> image = np.zeros((2, 16, 16)); image[:, 8, 8] = 1.0
    >>> out = blur_images(image, [0.0, 2.0])
    >>> bool(np.isclose(out[0, 8, 8], 1.0, atol=1e-6)), bool(out[1, 8, 8] < 0.1), bool(np.isclose(out[1].sum(), 1.0))
    (True, True, True)
    """
    images = _check_images(images)
    sigmas = np.asarray(sigmas, dtype=float)
    if sigmas.shape != (len(images),) or not np.all(np.isfinite(sigmas)) or np.any(sigmas < 0):
        raise ValueError(f"sigmas must be {len(images)} non-negative numbers, got shape {sigmas.shape}")
    ky, kx = _frequency_grid(images.shape[-1])
    return _filter_spectra(images, lambda rows: np.exp(
        -2.0 * np.pi ** 2 * sigmas[rows, None, None] ** 2 * (kx ** 2 + ky ** 2)[None]).astype(np.float32))


def resample_images(images, pixel_sizes, pixel_size: float) -> np.ndarray:
    """Images taken at ``pixel_sizes`` Å, brought to ``pixel_size`` Å in the same box of L pixels.

    Each image is magnified by ``pixel_sizes / pixel_size`` about its centre pixel
    (:func:`scale_images`); an image that shrinks is first low-passed at its new Nyquist
    frequency (a soft cosine edge over the outer 10%), so that nothing aliases. The box keeps
    its L pixels, so the field of view changes with the pixel size (particles are centred;
    what leaves or enters the box is background).

    Parameters
    ----------
    images : array_like
        (N, L, L), indexed ``[y, x]``.
    pixel_sizes : array_like
        (N,) their pixel sizes in Å (or one for all).
    pixel_size : float
        The pixel size to bring them to, in Å.

    Returns
    -------
    numpy.ndarray
        (N, L, L) float32; images already at ``pixel_size`` are returned unchanged.

    Raises
    ------
    ValueError
        Not a finite (N, L, L) stack, or pixel sizes that are not positive.

    Examples
    --------
    >>> import numpy as np
    >>> from cryoposes.imaging import resample_images
    >>> image = np.zeros((1, 33, 33)); image[0, 16, 20] = 1.0  # 4 px of 1.5 Å right of the centre
    >>> finer = resample_images(image, [1.5], 1.0)  # now 6 px of 1 Å
    >>> int(np.argmax(finer[0, 16])), finer.shape
    (22, (1, 33, 33))
    """
    images = _check_images(images)
    pixel_size = _positive(pixel_size, "pixel size (Å)")
    pixel_sizes = np.broadcast_to(np.asarray(pixel_sizes, dtype=float), (len(images),))
    if not np.all(np.isfinite(pixel_sizes)) or np.any(pixel_sizes <= 0):
        raise ValueError("pixel sizes must be positive numbers of Å")
    factors = pixel_sizes / pixel_size
    out = images.astype(np.float32, copy=True)
    changed = ~np.isclose(factors, 1.0, rtol=1e-6)
    shrinking = changed & (factors < 1)
    if np.any(shrinking):
        size = images.shape[-1]
        ky, kx = _frequency_grid(size)
        radius = np.sqrt(kx ** 2 + ky ** 2)[None]  # cycles per pixel
        cutoffs = 0.5 * factors[shrinking, None, None]

        def mask(rows):
            edge = np.clip((radius - 0.9 * cutoffs[rows]) / (0.1 * cutoffs[rows]), 0.0, 1.0)
            return (0.5 * (1 + np.cos(np.pi * edge))).astype(np.float32)

        out[shrinking] = _filter_spectra(out[shrinking], mask)
    if np.any(changed):
        out[changed] = scale_images(out[changed], factors[changed])
    return out


def snr_to_db(snr) -> np.ndarray | float:
    """Signal-to-noise ratio (a variance ratio) in decibels, ``10·log10(snr)``.

    Parameters
    ----------
    snr : float or array_like
        Signal variance over noise variance.

    Returns
    -------
    numpy.ndarray
        SNR in dB, shaped as ``snr``.

    Raises
    ------
    ValueError
        If any SNR is not positive.

    Examples
    --------
    >>> from cryoposes.imaging import snr_to_db
    >>> round(float(snr_to_db(1 / 16)), 2), snr_to_db([1.0, 10.0]).tolist()
    (-12.04, [0.0, 10.0])
    """
    snr = np.asarray(snr, dtype=float)
    if np.any(~(snr > 0)):
        raise ValueError(f"SNR must be positive, got {snr}")
    return 10.0 * np.log10(snr)


def db_to_snr(snr_db) -> np.ndarray | float:
    """Variance ratio of an SNR in decibels, ``10^(snr_db / 10)`` (−12 dB ≈ 1/16).

    Parameters
    ----------
    snr_db : float or array_like
        SNR in dB.

    Returns
    -------
    numpy.ndarray
        Signal variance over noise variance, shaped as ``snr_db``.

    Raises
    ------
    ValueError
        If any value is not finite.

    Examples
    --------
    >>> from cryoposes.imaging import db_to_snr
    >>> round(float(db_to_snr(-12.04)), 4), db_to_snr([0.0, 10.0]).tolist()
    (0.0625, [1.0, 10.0])
    """
    snr_db = np.asarray(snr_db, dtype=float)
    if not np.all(np.isfinite(snr_db)):
        raise ValueError(f"SNR in dB must be finite, got {snr_db}")
    return 10.0 ** (snr_db / 10.0)


def stack_moments(images, chunk: int = 2048) -> tuple[float, float]:
    """Mean and variance of every pixel of a stack, in double precision, in blocks of images.

    ``numpy.var(images, dtype=float64)`` makes a float64 copy of the whole stack (3.2 GB more for
    100,000 images of 64 px); blocks keep the extra memory to one block's.

    Parameters
    ----------
    images : numpy.ndarray
        (N, L, L) images (checked by the caller).
    chunk : int, optional
        Images per block.

    Returns
    -------
    tuple of float
        ``(mean, variance)``, the variance over all pixels (divided by their count).

    Examples
    --------
    >>> import numpy as np
    >>> from cryoposes.imaging import stack_moments
    >>> images = np.arange(5 * 4 * 4, dtype=np.float32).reshape(5, 4, 4)
    >>> mean, variance = stack_moments(images, chunk=2)
    >>> bool(np.isclose(mean, images.mean())), bool(np.isclose(variance, images.var()))
    (True, True)
    """
    blocks = [slice(first, first + chunk) for first in range(0, len(images), chunk)]
    count = images[0].size * len(images)
    mean = sum(float(np.sum(images[rows], dtype=np.float64)) for rows in blocks) / count
    # Two passes: squares of deviations, not the difference of two large sums.
    variance = sum(float(np.sum((images[rows].astype(np.float64) - mean) ** 2)) for rows in blocks) / count
    return mean, variance


def standardize(images, chunk: int = 2048) -> np.ndarray:
    """The stack shifted and scaled to mean 0 and variance 1 over all its pixels, as float32.

    Parameters
    ----------
    images : array_like
        (N, L, L) images.
    chunk : int, optional
        Images per block (the arithmetic is float64 within a block).

    Returns
    -------
    numpy.ndarray
        (N, L, L) float32.

    Raises
    ------
    ValueError
        If ``images`` is not a finite (N, L, L) stack, or is constant.

    Examples
    --------
    >>> import numpy as np
    >>> from cryoposes.imaging import standardize
    >>> scaled = standardize(np.arange(2 * 8 * 8).reshape(2, 8, 8) * 3.0 + 7.0)
    >>> scaled.dtype, bool(abs(scaled.mean()) < 1e-6), round(float(scaled.std()), 6)
    (dtype('float32'), True, 1.0)
    """
    images = _check_images(images)
    mean, variance = stack_moments(images, chunk)
    if variance == 0:
        raise ValueError("the images are constant: they cannot be scaled to unit variance")
    spread = math.sqrt(variance)
    scaled = np.empty(images.shape, dtype=np.float32)
    for first in range(0, len(images), chunk):
        rows = slice(first, first + chunk)
        scaled[rows] = (images[rows].astype(np.float64) - mean) / spread
    return scaled


def noise_variance(images, snr_db: float) -> float:
    """Noise variance giving ``snr_db``: the variance of the clean stack over the SNR.

    Parameters
    ----------
    images : array_like
        (N, L, L) clean images.
    snr_db : float
        Target SNR in dB.

    Returns
    -------
    float
        Noise variance σ².

    Raises
    ------
    ValueError
        If ``images`` is not a finite (N, L, L) stack, or is constant.

    Examples
    --------
    >>> import numpy as np
    >>> from cryoposes.imaging import noise_variance
    >>> images = np.ones((1, 4, 4)); images[:, :, :2] = -1.0  # unit variance
    >>> round(noise_variance(images, -12.04), 2)             # the 2021 paper's σ²
    16.0
    """
    images = _check_images(images)
    signal = stack_moments(images)[1]
    if signal == 0:
        raise ValueError("clean images are constant: the SNR is undefined")
    return signal / float(db_to_snr(snr_db))


def add_noise(images, snr_db: float, rng=None) -> np.ndarray:
    """Images plus white Gaussian noise of variance :func:`noise_variance` at ``snr_db``.

    Parameters
    ----------
    images : array_like
        (N, L, L) clean images.
    snr_db : float
        Target SNR in dB (clean-stack variance over noise variance).
    rng : int or numpy.random.Generator, optional
        Seed or generator of the noise.

    Returns
    -------
    numpy.ndarray
        (N, L, L) float32.

    Raises
    ------
    ValueError
        If ``images`` is not a finite (N, L, L) stack, or is constant.

    Examples
    --------
    >>> import numpy as np
    >>> from cryoposes.imaging import add_noise
    >>> images = np.ones((2, 8, 8)); images[:, :, :4] = -1.0
    >>> noisy = add_noise(images, snr_db=0.0, rng=0)
    >>> noisy.shape, bool(np.array_equal(noisy, add_noise(images, 0.0, rng=0)))
    ((2, 8, 8), True)
    """
    images = _check_images(images)
    sigma = math.sqrt(noise_variance(images, snr_db))
    rng = np.random.default_rng(rng)
    noise = rng.standard_normal(images.shape, dtype=np.float32) * np.float32(sigma)
    return (images + noise).astype(np.float32)
