"""Fourier shell correlation between two maps, and the resolution it implies.

``FSC(s) = Re Σ F₁·F₂* / sqrt(Σ |F₁|² · Σ |F₂|²)`` over the Fourier voxels of shell ``s``
(spatial frequencies ``|k|`` within half a voxel of ``s / (L·pixel size)``), from shell 1 up to
Nyquist. The resolution is where the curve first falls below a threshold, interpolated linearly
between shells: 0.143 between two independent half maps (the gold standard, Rosenthal &
Henderson 2003), 0.5 between a map and the true map.

FSC measures agreement of phases and amplitudes shell by shell; it does not see a pure blur of
one map against itself, so compare maps made from different data or poses.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.fft

from cryoposes.errors import InputError

__all__ = ["FSCCurve", "fsc", "HALF_MAP_THRESHOLD", "REFERENCE_THRESHOLD"]

#: Threshold between independent half maps (gold standard).
HALF_MAP_THRESHOLD = 0.143
#: Threshold between a map and a reference (the true map).
REFERENCE_THRESHOLD = 0.5


@dataclass(frozen=True)
class FSCCurve:
    """A Fourier shell correlation curve.

    Attributes
    ----------
    frequency : numpy.ndarray
        (S,) spatial frequency of each shell in 1/Å (shell 1 to Nyquist).
    correlation : numpy.ndarray
        (S,) the FSC of each shell.
    voxels : numpy.ndarray
        (S,) Fourier voxels in each shell.
    pixel_size : float
        Å per voxel of the maps.
    """

    frequency: np.ndarray
    correlation: np.ndarray
    voxels: np.ndarray
    pixel_size: float

    def resolution(self, threshold: float = HALF_MAP_THRESHOLD) -> float:
        """Resolution in Å where the curve first falls below ``threshold``.

        Parameters
        ----------
        threshold : float, optional
            0.143 for half maps (default), 0.5 against a true map.

        Returns
        -------
        float
            1 / frequency of the crossing, interpolated between the shells around it; the
            Nyquist limit (2 × pixel size) if the curve never falls below.

        Examples
        --------
        >>> import numpy as np
        >>> curve = FSCCurve(np.array([0.1, 0.2, 0.3]), np.array([0.9, 0.5, 0.1]), np.ones(3), 1.0)
        >>> round(curve.resolution(0.5), 3), round(curve.resolution(0.3), 3)
        (5.0, 4.0)
        """
        below = np.flatnonzero(self.correlation < threshold)
        if len(below) == 0:
            return 1.0 / float(self.frequency[-1])
        index = int(below[0])
        if index == 0:
            return 1.0 / float(self.frequency[0])
        high, low = self.correlation[index - 1], self.correlation[index]
        fraction = (high - threshold) / (high - low)
        crossing = self.frequency[index - 1] + fraction * (self.frequency[index] - self.frequency[index - 1])
        return 1.0 / float(crossing)

    def as_dict(self) -> dict:
        """JSON-ready lists: ``frequency_per_angstrom``, ``fsc``, ``voxels`` and ``pixel_size``."""
        return {"frequency_per_angstrom": self.frequency.tolist(), "fsc": self.correlation.tolist(),
                "voxels": self.voxels.astype(int).tolist(), "pixel_size": self.pixel_size}


def _array(volume, name):
    data = np.asarray(getattr(volume, "data", volume), dtype=np.float64)
    if data.ndim != 3 or len(set(data.shape)) != 1:
        raise InputError(f"{name} must be a cubic map, got shape {data.shape}")
    if not np.all(np.isfinite(data)):
        raise InputError(f"{name} contains NaN or infinite values")
    return data


def fsc(first, second, pixel_size: float | None = None) -> FSCCurve:
    """The Fourier shell correlation of two maps of the same box.

    Parameters
    ----------
    first, second : cryoposes.volumes.Volume or array_like
        (L, L, L) maps on the same grid.
    pixel_size : float, optional
        Å per voxel (default: the first map's voxel size, else 1).

    Returns
    -------
    FSCCurve
        Shells 1 … L//2.

    Raises
    ------
    InputError
        Maps of different boxes or voxel sizes, not cubic, or with NaN values.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> signal = rng.standard_normal((32, 32, 32))
    >>> curve = fsc(signal + 0.1 * rng.standard_normal(signal.shape), signal, pixel_size=2.0)
    >>> curve.correlation.shape, bool(curve.correlation.min() > 0.98), curve.resolution()
    ((16,), True, 4.0)
    """
    a, b = _array(first, "the first map"), _array(second, "the second map")
    if a.shape != b.shape:
        raise InputError(f"the maps have different boxes: {a.shape} and {b.shape}")
    sizes = [getattr(v, "voxel_size", None) for v in (first, second)]
    if None not in sizes and not np.isclose(sizes[0], sizes[1], rtol=1e-4):
        raise InputError(f"the maps have different voxel sizes: {sizes[0]} and {sizes[1]} Å")
    pixel_size = float(pixel_size if pixel_size is not None else sizes[0] or 1.0)
    size = a.shape[0]
    fa, fb = scipy.fft.rfftn(a), scipy.fft.rfftn(b)
    squared = sum(np.meshgrid(scipy.fft.fftfreq(size) ** 2, scipy.fft.fftfreq(size) ** 2,
                              scipy.fft.rfftfreq(size) ** 2, indexing="ij"))
    shell = np.rint(np.sqrt(squared) * size).astype(int).ravel()
    # The rfft grid holds one of each ±k pair except on the planes k_x = 0 (and Nyquist), which
    # hold both: count those once each way by weighting the others twice.
    weight = np.full(fa.shape, 2.0)
    weight[..., 0] = 1.0
    if size % 2 == 0:
        weight[..., -1] = 1.0
    weight = weight.ravel()
    shells = size // 2 + 1

    def per_shell(values):
        return np.bincount(shell, weights=weight * values.ravel(), minlength=shells)[:shells]

    cross = per_shell((fa * np.conj(fb)).real)
    power = per_shell(np.abs(fa) ** 2) * per_shell(np.abs(fb) ** 2)
    voxels = per_shell(np.ones(fa.shape))
    correlation = np.where(power > 0, cross / np.sqrt(np.where(power > 0, power, 1.0)), 0.0)
    index = np.arange(1, size // 2 + 1)
    return FSCCurve(index / (size * pixel_size), correlation[index], voxels[index], pixel_size)
