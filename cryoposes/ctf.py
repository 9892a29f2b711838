"""The contrast transfer function C_φ of the microscope, per particle.

:func:`ctf` is the contrast transfer function of CTFFIND and RELION, with astigmatic defocus
(``defocus_u``, ``defocus_v`` in Å, positive = underfocus, the angle of the u axis from the
image x axis in degrees), voltage (kV), spherical aberration (mm) and amplitude contrast::

    λ = h / sqrt(2 m e U (1 + e U / (2 m c²)))            (relativistic wavelength, Å)
    Δf(α) = (Δf_u + Δf_v)/2 + (Δf_u − Δf_v)/2 · cos 2(α − α_ast)
    χ(k) = π λ Δf(α) k² − π/2 · C_s λ³ k⁴ + arctan(w / sqrt(1 − w²))
    CTF(k) = sin χ(k)

so the CTF starts at +w (the amplitude contrast) at k = 0 and its first zero is where χ = π.
:func:`apply_ctf` multiplies each image's spectrum by it.

Frequencies are in cycles per Å; images are stacks ``(N, L, L)`` indexed ``[y, x]`` with the
zero frequency at the pixel ``L // 2`` (the convention of :mod:`cryoposes.imaging`).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from cryoposes.imaging import _check_images, _filter_spectra, _frequency_grid, _positive

__all__ = ["electron_wavelength", "CTFParameters", "ctf", "ctf_images", "apply_ctf", "phase_flip"]


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
    >>> from cryoposes.ctf import electron_wavelength
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
    >>> from cryoposes.ctf import CTFParameters
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

    def take(self, rows, count: int) -> CTFParameters:
        """The parameters of the images ``rows`` of a stack of ``count``, one value per image.

        Parameters
        ----------
        rows : array_like of int or bool
            Which images, as NumPy indexes them.
        count : int
            Images in the stack the parameters belong to (scalars are repeated to it).

        Returns
        -------
        CTFParameters
            Every field of length ``len(rows)`` (the number of True values for a mask).

        Raises
        ------
        ValueError
            If per-particle parameters do not have ``count`` values.

        Examples
        --------
        >>> from cryoposes.ctf import CTFParameters
        >>> parameters = CTFParameters(defocus_u=[15000.0, 20000.0, 25000.0], defocus_v=14000.0)
        >>> chosen = parameters.take([2, 0], count=3)
        >>> chosen.defocus_u.tolist(), chosen.defocus_v.shape
        ([25000.0, 15000.0], (2,))
        """
        return CTFParameters(**{name: value[rows] for name, value in self.per_particle(count).items()})


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
    >>> from cryoposes.ctf import ctf
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
    >>> from cryoposes.ctf import CTFParameters, ctf_images
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
    >>> from cryoposes.ctf import CTFParameters, apply_ctf
    >>> apply_ctf(np.ones((2, 8, 8)), CTFParameters(15000.0, 14000.0), pixel_size=1.0).shape
    (2, 8, 8)
    """
    return _filter_by_ctf(images, parameters, pixel_size, lambda transfer: transfer)


def phase_flip(images, parameters: CTFParameters, pixel_size: float) -> np.ndarray:
    """Images with the sign of their CTF undone: each spectrum multiplied by sign(CTF).

    The usual correction before methods that compare images directly (common lines, class
    averages): the contrast inversions between the CTF's zeros are removed, the amplitude
    envelope is left as it is, and no noise is amplified.

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

    Examples
    --------
    >>> import numpy as np
    >>> from cryoposes.ctf import CTFParameters, apply_ctf, phase_flip
    >>> parameters = CTFParameters(15000.0, 14000.0)
    >>> image = np.random.default_rng(0).normal(size=(1, 16, 16))
    >>> flipped = phase_flip(apply_ctf(image, parameters, 2.0), parameters, 2.0)
    >>> flipped.shape, bool(np.sum(flipped * image) > 0)  # positively correlated again
    ((1, 16, 16), True)
    """
    return _filter_by_ctf(images, parameters, pixel_size, np.sign)


def _filter_by_ctf(images, parameters: CTFParameters, pixel_size: float, of_ctf) -> np.ndarray:
    """Each image's spectrum multiplied by ``of_ctf`` of its CTF (the CTF itself, its sign)."""
    images = _check_images(images)
    count, size = len(images), images.shape[-1]
    parameters.per_particle(count)  # a length mismatch is refused before any work
    return _filter_spectra(
        images, lambda rows: of_ctf(ctf_images(size, pixel_size, parameters.take(rows, count), half=True)))
