"""Local refinement: each pose moved to where its image best matches the map's projection.

What real pipelines do after an initial estimate (projection matching, as RELION's and
cryoSPARC's local refinements): make a map from the poses, then move each pose within a small
neighbourhood, and its shift by a fraction of a pixel, to where the image is best explained by
the map, and iterate. Distances cannot give this last refinement: they say how far two poses
are, not how an image looks from one of them.

**The score.** Under white Gaussian noise the likelihood of image ``y`` at pose ``R`` and shift
``t`` is, up to constants, ``−‖y − C·S_t·P_R·x‖²``; in Fourier space (the Fourier slice theorem)::

    score(R, t) = 2·Re Σ_k conj(C·Y)(k) · X̂(R·k) · e^{−2πi k·t}  −  Σ_k C(k)²·|X̂(R·k)|²,

summed over the image's frequencies ``k`` up to a limit. ``X̂(R·k)`` is the map's spectrum on the
candidate's central plane, one type-2 NUFFT per candidate (as :func:`cryoposes.projection.project`
computes projections, without the inverse FFT); a shift only multiplies it by a phase, so every
shift of a candidate costs one dot product. Images are real, so half of the frequency plane
carries the whole sum.

**Coarse to fine.** Around each pose, the 27 rotations ``q ⊗ exp(s·v)`` for ``v`` ∈ {−1, 0, 1}³
(rotation vectors in the image frame: ``v_z`` turns the image in plane, ``v_x``, ``v_y`` tilt its
projection direction), and the 9 shifts ``t + σ·u`` for ``u`` ∈ {−1, 0, 1}²; the best replaces the
pose, then ``s`` and ``σ`` halve. The current pose is always a candidate, so no image scores lower
against the map after a level than before it.

**Gold standard.** The images are split in two halves once (the split of
:func:`cryoposes.reconstruction.half_maps`, same seed), each half makes its own map and is
matched only against it, so noise in one half cannot be fitted by the other's map and the FSC
between the half maps stays an honest resolution. Frequencies beyond the half maps' FSC 0.143
resolution, where the maps hold mostly noise, are left out of the score (RELION's rule).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.spatial.transform import Rotation

from cryoposes import fsc, reconstruction, rotations
from cryoposes.errors import InputError

__all__ = ["RefinementResult", "refine"]

#: Relative accuracy of the NUFFT of candidate planes, in single precision: a score needs far
#: less than a map (an error of 1e-3 moves no pose by a measurable angle), and it halves the time.
_TOLERANCE = 1e-3
#: Plane samples per NUFFT call (memory: ~60 bytes each).
_POINTS_PER_BATCH = 2**22
#: The lowest frequency limit (cycles per pixel): even blurred first maps pin poses to this.
_MIN_FREQUENCY = 0.05


@dataclass(frozen=True)
class RefinementResult:
    """Refined poses and shifts, and how the half maps improved.

    Attributes
    ----------
    quaternions : numpy.ndarray
        (N, 4) refined poses, in the frame of the poses given.
    shifts : numpy.ndarray
        (N, 2) refined shifts ``(t_x, t_y)`` in pixels.
    halves : tuple of numpy.ndarray
        The image indices of each half.
    history : list of dict
        One entry per iteration and one for the final poses: ``resolution_half`` (Å, FSC 0.143
        of the half maps made from the poses at that point), ``max_frequency`` (cycles per
        pixel, the score's limit), and after an iteration ``median_change_deg`` and
        ``median_shift_change`` (pixels) of the poses it moved.
    """

    quaternions: np.ndarray
    shifts: np.ndarray
    halves: tuple
    history: list = field(default_factory=list)


def _perturbations(step_degrees: float) -> np.ndarray:
    """(27, 4) quaternions ``exp(s·v)``, ``v`` ∈ {−1, 0, 1}³, identity first."""
    grid = np.stack(np.meshgrid(*[np.array([0.0, -1.0, 1.0])] * 3, indexing="ij"), axis=-1).reshape(-1, 3)
    return Rotation.from_rotvec(np.radians(step_degrees) * grid).as_quat(scalar_first=True)


def _shift_offsets(step: float) -> np.ndarray:
    """(9, 2) shift offsets ``σ·u``, ``u`` ∈ {−1, 0, 1}², zero first."""
    grid = np.stack(np.meshgrid(*[np.array([0.0, -1.0, 1.0])] * 2, indexing="ij"), axis=-1).reshape(-1, 2)
    return step * grid


class _Matcher:
    """Scores of candidate poses and shifts of some images against one map (module docstring)."""

    def __init__(self, volume, images, ctf, pixel_size, max_frequency):
        import finufft

        spectra = reconstruction.ImageSpectra(images, np.zeros((len(images), 2)), ctf, pixel_size)
        kx, ky = spectra.kx, spectra.ky
        # Half of the plane (real images: k and −k carry conjugate values), each frequency
        # counted twice but the origin.
        keep = (kx**2 + ky**2 <= max_frequency**2) & ((ky > 0) | ((ky == 0) & (kx >= 0)))
        self.kx, self.ky = kx[keep], ky[keep]
        self.multiplicity = np.where((self.kx == 0) & (self.ky == 0), 1.0, 2.0)
        self.weighted_values = (np.conj(spectra.values[:, keep]) * self.multiplicity).astype(np.complex64)
        self.weights = (spectra.weights[:, keep] * self.multiplicity).astype(np.float32)
        data = np.asarray(getattr(volume, "data", volume))
        self.coefficients = np.ascontiguousarray(data, dtype=np.complex64)
        self.plan = finufft.Plan(2, data.shape, eps=_TOLERANCE, isign=-1, dtype="complex64")

    def planes(self, matrices):
        """The map's spectrum on the central planes at ``matrices`` (K, 3, 3): (K, M)."""
        points = [2 * np.pi * (matrices[:, axis, 0, None] * self.kx + matrices[:, axis, 1, None] * self.ky)
                  for axis in (2, 1, 0)]
        self.plan.setpts(*(np.ascontiguousarray(p.ravel(), dtype=np.float32) for p in points))
        return self.plan.execute(self.coefficients).reshape(len(matrices), -1)

    def best(self, rows, quaternions, shifts, perturbations, offsets):
        """The best of the candidate poses ``q ⊗ p`` and shifts ``t + o`` of images ``rows``."""
        count, candidates = len(rows), len(perturbations)
        trial = rotations.quaternion_multiply(quaternions[:, None, :], perturbations[None, :, :])
        planes = self.planes(rotations.quaternion_to_matrix(trial.reshape(-1, 4))).reshape(count, candidates, -1)
        energy = np.einsum("bcm,bm->bc", np.abs(planes) ** 2, self.weights[rows])
        shifted = shifts[:, None, :] + offsets[None, :, :]  # (B, S, 2)
        phases = np.exp(-2j * np.pi * (shifted[..., :1] * self.kx + shifted[..., 1:] * self.ky)).astype(np.complex64)
        cross = np.matmul(planes * self.weighted_values[rows, None, :], phases.transpose(0, 2, 1))
        score = 2 * cross.real.astype(np.float64) - energy[:, :, None]  # (B, C, S)
        flat = score.reshape(count, -1).argmax(axis=1)
        pose, shift = np.divmod(flat, len(offsets))
        index = np.arange(count)
        return trial[index, pose], shifted[index, shift]


def _subset_ctf(ctf, rows, count):
    if ctf is None:
        return None
    return ctf.take(rows, count)


def _search(volume, images, quaternions, shifts, ctf, pixel_size, max_frequency, schedule, bar):
    """One pass of coarse-to-fine local search of every image against ``volume``."""
    matcher = _Matcher(volume, images, ctf, pixel_size, max_frequency)
    quaternions, shifts = quaternions.copy(), shifts.copy()
    batch = max(1, _POINTS_PER_BATCH // (27 * len(matcher.kx)))
    for angle_step, shift_step in schedule:
        perturbations, offsets = _perturbations(angle_step), _shift_offsets(shift_step)
        if shift_step == 0:
            offsets = offsets[:1]
        for start in range(0, len(images), batch):
            rows = np.arange(start, min(start + batch, len(images)))
            quaternions[rows], shifts[rows] = matcher.best(rows, quaternions[rows], shifts[rows],
                                                           perturbations, offsets)
            if bar is not None:
                bar.update(len(rows))
    return rotations.canonical(rotations.normalize(quaternions)), shifts


def _limit(first, second, pixel_size):
    """Half-map resolution (Å, FSC 0.143) and the score's frequency limit in cycles per pixel."""
    resolution = fsc.fsc(first, second, pixel_size).resolution(fsc.HALF_MAP_THRESHOLD)
    return resolution, float(np.clip(pixel_size / resolution, _MIN_FREQUENCY, 0.5))


def refine(images, quaternions, shifts=None, ctf=None, pixel_size: float = 1.0, iterations: int = 3,
           symmetry: str = "C1", angle_step: float = 2.0, shift_step: float = 1.0, levels: int = 4,
           seed: int = 0, regularization: float = 0.1, progress: bool = False) -> RefinementResult:
    """Refine poses and shifts by projection matching against gold-standard half maps.

    Each iteration makes the two half maps from the current poses
    (:func:`cryoposes.reconstruction.half_maps`) and moves every pose of each half to where its
    image best matches that half's map (see the module docstring): ``levels`` levels of local
    search, the first with steps ``angle_step`` (degrees) and ``shift_step`` (pixels), each next
    one with half the steps. One iteration reaches at most ``2·angle_step`` from where it
    started along each axis.

    Parameters
    ----------
    images : array_like
        (N, L, L) particle images, indexed ``[y, x]``.
    quaternions : array_like
        (N, 4) starting poses (:mod:`cryoposes.rotations`), physical (e.g. from
        :func:`cryoposes.gauge.resolve_gauge`): the map is made from them.
    shifts : array_like, optional
        (N, 2) starting shifts ``(t_x, t_y)`` in pixels (default zeros).
    ctf : cryoposes.ctf.CTFParameters, optional
        Each image's CTF.
    pixel_size : float, optional
        Å per pixel.
    iterations : int, optional
        Rounds of reconstruct-then-match.
    symmetry : str, optional
        Point group imposed on the half maps.
    angle_step, shift_step : float, optional
        First-level steps in degrees and pixels; ``shift_step=0`` keeps the shifts.
    levels : int, optional
        Levels of local search per iteration, the steps halving at each.
    seed : int, optional
        Seed of the half split (as :func:`~cryoposes.reconstruction.half_maps`).
    regularization : float, optional
        Passed to :func:`~cryoposes.reconstruction.reconstruct`.
    progress : bool, optional
        Show a progress bar.

    Returns
    -------
    RefinementResult

    Raises
    ------
    cryoposes.errors.InputError
        A non-positive number of iterations or levels, negative or non-finite steps.
    ValueError
        Images, poses and shifts that do not match (as :func:`~cryoposes.reconstruction.reconstruct`).

    Examples
    --------
    >>> import numpy as np
    >>> from scipy.spatial.transform import Rotation
    >>> from cryoposes import projection, rotations
    >>> from cryoposes.refinement import refine
    >>> x, y, z = np.meshgrid(*[np.arange(24) - 12] * 3, indexing="ij")
    >>> volume = np.exp(-((x - 4) ** 2 + y ** 2 + 3 * (z + 2) ** 2) / 6.0) + np.exp(-(x**2 + (y - 5) ** 2 + z**2) / 4.0)
    >>> truth = rotations.random_quaternions(200, 0)
    >>> images = projection.project(volume, truth, method="fourier")
    >>> nudge = Rotation.from_rotvec(np.radians(3.0) * np.random.default_rng(1).standard_normal((200, 3)) / np.sqrt(3))
    >>> start = rotations.quaternion_multiply(truth, nudge.as_quat(scalar_first=True))
    >>> result = refine(images, start, iterations=2, shift_step=0.0)
    >>> before = np.median(rotations.geodesic_distance_degrees(truth, start))
    >>> after = np.median(rotations.geodesic_distance_degrees(truth, result.quaternions))
    >>> result.quaternions.shape, bool(after < before / 2)
    ((200, 4), True)
    """
    if iterations < 1 or levels < 1:
        raise InputError(f"iterations and levels must be positive, got {iterations} and {levels}")
    if not (math.isfinite(angle_step) and angle_step > 0 and math.isfinite(shift_step) and shift_step >= 0):
        raise InputError(f"the first angle step must be positive and the shift step non-negative, "
                         f"got {angle_step}° and {shift_step} px")
    images, quaternions, shifts = reconstruction._check_inputs(images, quaternions, shifts, ctf)
    quaternions, shifts = rotations.canonical(quaternions.copy()), shifts.copy()
    count, pixel_size = len(images), float(pixel_size)
    options = dict(symmetry=symmetry, regularization=regularization, method="fourier")
    history, bar = [], None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=iterations * levels * count, desc="refine", unit="image")
    try:
        for _ in range(iterations + 1):
            first, second, halves = reconstruction.half_maps(images, quaternions, shifts, ctf, pixel_size,
                                                             seed=seed, **options)
            resolution, max_frequency = _limit(first, second, pixel_size)
            history.append({"resolution_half": resolution, "max_frequency": max_frequency})
            if len(history) > iterations:
                break
            # Each iteration starts at half the steps of the one before: the poses are closer.
            first_level = len(history) - 1
            schedule = [(angle_step / 2**level, shift_step / 2**level)
                        for level in range(first_level, first_level + levels)]
            before, shifts_before = quaternions.copy(), shifts.copy()
            for volume, rows in zip((first, second), halves):
                quaternions[rows], shifts[rows] = _search(volume, images[rows], quaternions[rows], shifts[rows],
                                                          _subset_ctf(ctf, rows, count), pixel_size, max_frequency,
                                                          schedule, bar)
            history[-1]["median_change_deg"] = float(np.median(rotations.geodesic_distance_degrees(before, quaternions)))
            history[-1]["median_shift_change"] = float(np.median(np.linalg.norm(shifts - shifts_before, axis=1)))
    finally:
        if bar is not None:
            bar.close()
    return RefinementResult(quaternions, shifts, halves, history)
