"""The imaging operators on projections: in-plane rotation, shift S_t, contrast transfer C_φ, noise n.

y = C_φ S_t P_θ x + n, applied to stacks of images ``(N, L, L)`` indexed ``[y, x]``:

* :func:`rotate_images` turns each image in its plane about the centre pixel ``L // 2``; by the
  projection convention this is exactly the image of the pose ``q ⊗ q_z(α)``
  (:func:`rotate_in_plane` returns both).

* :func:`shift_images` moves each image by ``t = (t_x, t_y)`` pixels (sub-pixel, by a phase ramp
  in Fourier space): ``out(r) = in(r − t)``, so the particle's centre moves from ``L // 2`` to
  ``L // 2 + t``. Integer shifts equal :func:`numpy.roll`. (RELION's ``rlnOriginX/YAngst`` are
  the opposite: the origin offset that brings the particle back, ``−t`` times the pixel size;
  :mod:`cryoposes.particles` converts.)
* :func:`ctf` is the contrast transfer function of CTFFIND and RELION, with astigmatic defocus
  (``defocus_u``, ``defocus_v`` in Å, positive = underfocus, the angle of the u axis from the
  image x axis in degrees), voltage (kV), spherical aberration (mm) and amplitude contrast::

      λ = h / sqrt(2 m e U (1 + e U / (2 m c²)))            (relativistic wavelength, Å)
      Δf(α) = (Δf_u + Δf_v)/2 + (Δf_u − Δf_v)/2 · cos 2(α − α_ast)
      χ(k) = π λ Δf(α) k² − π/2 · C_s λ³ k⁴ + arctan(w / sqrt(1 − w²))
      CTF(k) = sin χ(k)

  so the CTF starts at +w (the amplitude contrast) at k = 0 and its first zero is where χ = π.
  :func:`apply_ctf` multiplies each image's spectrum by it.
* :func:`add_noise` adds white Gaussian noise at a target signal-to-noise ratio, the clean
  images' variance over the noise variance, given in decibels: ``snr_db = 10·log10(SNR)``. The
  2021 paper's σ² = 16 on unit-variance images is SNR 1/16 = −12.04 dB.

Every random draw comes from a seeded :class:`numpy.random.Generator`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np
import scipy.fft
from scipy import ndimage

from cryoposes import rotations

__all__ = [
    "rotate_images",
    "rotate_in_plane",
    "shift_images",
    "electron_wavelength",
    "CTFParameters",
    "ctf",
    "ctf_images",
    "apply_ctf",
    "add_noise",
    "noise_variance",
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
    for index, (image, angle) in enumerate(zip(images, angles)):
        c, s = math.cos(angle), math.sin(angle)
        # Arrays are indexed [y, x]: (x, y) ↦ (c·x − s·y, s·x + c·y) reads as this matrix.
        matrix = np.array([[c, s], [-s, c]])
        rotated[index] = ndimage.affine_transform(image, matrix, offset=centre - matrix @ centre,
                                                  order=3, mode="constant", cval=0.0)
    return rotated


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
    ramp_x = np.exp(-2j * np.pi * kx[None] * shifts[:, 0, None, None])
    if size % 2 == 0:
        # A real image's Nyquist column cannot carry a phase: keep the real part of its ramp
        # (exact for integer shifts, and the same for +Nyquist and −Nyquist).
        ramp_x[..., -1] = ramp_x[..., -1].real
    ramp = ramp_x * np.exp(-2j * np.pi * ky[None] * shifts[:, 1, None, None])
    spectrum = scipy.fft.rfft2(images.astype(np.float32))
    return scipy.fft.irfft2(spectrum * ramp.astype(np.complex64), s=(size, size)).astype(np.float32)


def _wavelength(voltage_kv):
    volts = np.asarray(voltage_kv, dtype=float) * 1e3
    # h / sqrt(2 m e U (1 + e U / 2 m c²)) with CODATA constants, in Å.
    return 12.2642598 / np.sqrt(volts * (1.0 + 0.97847573e-6 * volts))


def electron_wavelength(voltage_kv) -> float:
    """Relativistic electron wavelength in Å at an accelerating voltage in kV.

    Parameters
    ----------
    voltage_kv : float
        Accelerating voltage in kV.

    Returns
    -------
    float
        Wavelength in Å.

    Raises
    ------
    ValueError
        If the voltage is not positive.

    Examples
    --------
    >>> from cryoposes.imaging import electron_wavelength
    >>> round(electron_wavelength(300), 4)
    0.0197
    """
    return float(_wavelength(_positive(voltage_kv, "voltage (kV)")))


@dataclass
class CTFParameters:
    """CTF parameters, scalars shared by all particles or one value per particle.

    Each field is stored as a float array of shape () or (N,); ``len`` gives N.

    Attributes
    ----------
    defocus_u : numpy.ndarray
        Defocus along the major axis in Å, positive = underfocus.
    defocus_v : numpy.ndarray
        Defocus along the minor axis in Å.
    defocus_angle : numpy.ndarray
        Angle of the u axis from the image x axis, in degrees.
    voltage : numpy.ndarray
        Accelerating voltage in kV.
    spherical_aberration : numpy.ndarray
        C_s in mm.
    amplitude_contrast : numpy.ndarray
        A fraction in [0, 1).

    Raises
    ------
    ValueError
        If a value is not finite or out of range, or per-particle lengths differ.

    Examples
    --------
    >>> from cryoposes.imaging import CTFParameters
    >>> parameters = CTFParameters(defocus_u=[15000.0, 20000.0], defocus_v=[14000.0, 19000.0])
    >>> len(parameters), parameters.voltage.shape, parameters.defocus_u.shape
    (2, (), (2,))
    """

    defocus_u: np.ndarray | float
    defocus_v: np.ndarray | float
    defocus_angle: np.ndarray | float = 0.0
    voltage: np.ndarray | float = 300.0
    spherical_aberration: np.ndarray | float = 2.7
    amplitude_contrast: np.ndarray | float = 0.1

    def __post_init__(self):
        for field in fields(self):
            value = np.asarray(getattr(self, field.name), dtype=float)
            if value.ndim > 1:
                raise ValueError(f"CTF parameter {field.name} must be a scalar or 1-D, got shape {value.shape}")
            if not np.all(np.isfinite(value)):
                raise ValueError(f"CTF parameter {field.name} contains NaN or infinite values")
            setattr(self, field.name, value)
        if np.any(self.defocus_u <= 0) or np.any(self.defocus_v <= 0):
            raise ValueError("defocus_u and defocus_v must be positive (Å, underfocus)")
        if np.any(self.voltage <= 0):
            raise ValueError("voltage (kV) must be positive")
        if np.any(self.spherical_aberration < 0):
            raise ValueError("spherical_aberration (mm) must be non-negative")
        if np.any((self.amplitude_contrast < 0) | (self.amplitude_contrast >= 1)):
            raise ValueError("amplitude_contrast must be in [0, 1)")
        lengths = {np.size(getattr(self, f.name)) for f in fields(self) if np.ndim(getattr(self, f.name)) == 1}
        if len(lengths) > 1:
            raise ValueError(f"per-particle CTF parameters have different lengths: {sorted(lengths)}")

    def __len__(self) -> int:
        return max((np.size(getattr(self, f.name)) for f in fields(self) if np.ndim(getattr(self, f.name)) == 1),
                   default=1)

    def per_particle(self, count: int) -> dict[str, np.ndarray]:
        """Every parameter as an array of length ``count`` (scalars repeated)."""
        values = {}
        for field in fields(self):
            value = getattr(self, field.name)
            if value.ndim == 1 and len(value) != count:
                raise ValueError(f"CTF parameter {field.name} has {len(value)} values for {count} images")
            values[field.name] = np.broadcast_to(value, (count,)).astype(float)
        return values


def ctf(frequency_x, frequency_y, defocus_u, defocus_v, defocus_angle=0.0, voltage=300.0,
        spherical_aberration=2.7, amplitude_contrast=0.1) -> np.ndarray:
    """Contrast transfer function ``sin χ(k)`` at spatial frequencies ``(k_x, k_y)``.

    The module docstring's formula (CTFFIND's, RELION's); every argument broadcasts.


    Parameters
    ----------
    frequency_x, frequency_y : array_like
        Spatial frequencies in cycles per Å.
    defocus_u, defocus_v, defocus_angle, voltage, spherical_aberration, amplitude_contrast : array_like
        Defocus (Å), its angle (degrees), voltage (kV), C_s (mm) and amplitude contrast, as in
        :class:`CTFParameters`.


    Returns
    -------
    numpy.ndarray
        float64, of the broadcast shape of the arguments.

    Examples
    --------
    >>> from cryoposes.imaging import ctf
    >>> values = ctf([0.0, 0.05], [0.0, 0.0], defocus_u=15000.0, defocus_v=15000.0)
    >>> values.shape, round(float(values[0]), 3)
    ((2,), 0.1)
    """
    fx, fy = np.asarray(frequency_x, dtype=float), np.asarray(frequency_y, dtype=float)
    wavelength = _wavelength(voltage)
    k2 = fx**2 + fy**2
    defocus = 0.5 * (defocus_u + defocus_v) + 0.5 * (np.asarray(defocus_u) - defocus_v) * np.cos(
        2 * (np.arctan2(fy, fx) - np.radians(defocus_angle))
    )
    cs = np.asarray(spherical_aberration, dtype=float) * 1e7  # mm → Å
    w = np.asarray(amplitude_contrast, dtype=float)
    chi = (
        np.pi * wavelength * defocus * k2
        - 0.5 * np.pi * cs * wavelength**3 * k2**2
        + np.arctan(w / np.sqrt(1 - w**2))
    )
    return np.sin(chi)


def ctf_images(size: int, pixel_size: float, parameters: CTFParameters, count: int | None = None,
               half: bool = False) -> np.ndarray:
    """CTFs of ``count`` images of ``size × size`` pixels on a frequency grid.

    Parameters
    ----------
    size : int
        Image side in pixels.
    pixel_size : float
        Pixel size in Å.
    parameters : CTFParameters
        Scalars or one value per image.
    count : int, optional
        Number of images (default ``len(parameters)``).
    half : bool, optional
        Sample the ``rfft2`` grid (to multiply a spectrum) instead of the centred one.

    Returns
    -------
    numpy.ndarray
        (count, size, size) float32, zero frequency at ``[size // 2, size // 2]``; with
        ``half``, (count, size, size // 2 + 1).

    Raises
    ------
    ValueError
        If ``pixel_size`` is not positive or per-particle parameters lack ``count`` values.

    Examples
    --------
    >>> from cryoposes.imaging import CTFParameters, ctf_images
    >>> parameters = CTFParameters(defocus_u=15000.0, defocus_v=14000.0)
    >>> ctf_images(8, 1.0, parameters, count=3).shape, ctf_images(8, 1.0, parameters, half=True).shape
    ((3, 8, 8), (1, 8, 5))
    """
    pixel_size = _positive(pixel_size, "pixel size (Å)")
    count = len(parameters) if count is None else count
    if half:
        ky, kx = _frequency_grid(size, pixel_size)
    else:
        axis = (np.arange(size) - size // 2) / (size * pixel_size)
        ky, kx = axis[:, None], axis[None, :]
    columns = {name: value[:, None, None] for name, value in parameters.per_particle(count).items()}
    return ctf(kx[None], ky[None], **columns).astype(np.float32)


def apply_ctf(images, parameters: CTFParameters, pixel_size: float) -> np.ndarray:
    """Images convolved with their CTFs: each spectrum multiplied by its CTF.

    Parameters
    ----------
    images : array_like
        (N, L, L), indexed ``[y, x]``.
    parameters : CTFParameters
        One value per image, or scalars shared by all.
    pixel_size : float
        Pixel size in Å.

    Returns
    -------
    numpy.ndarray
        (N, L, L) float32.

    Raises
    ------
    ValueError
        If ``images`` is not a finite (N, L, L) stack, ``pixel_size`` is not positive, or
        per-particle parameters lack N values.

    Examples
    --------
    >>> import numpy as np
    >>> from cryoposes.imaging import CTFParameters, apply_ctf
    >>> apply_ctf(np.ones((2, 8, 8)), CTFParameters(15000.0, 14000.0), pixel_size=1.0).shape
    (2, 8, 8)
    """
    images = _check_images(images)
    size = images.shape[-1]
    transfer = ctf_images(size, pixel_size, parameters, count=len(images), half=True)
    spectrum = scipy.fft.rfft2(images.astype(np.float32))
    return scipy.fft.irfft2(spectrum * transfer, s=(size, size)).astype(np.float32)


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
    signal = float(np.var(images, dtype=np.float64))
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
