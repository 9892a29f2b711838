"""The gauge: turning poses known up to what distances cannot see into physical poses, from the images.

Pairwise distances ``d_q`` are unchanged by any ``q ↦ a ⊗ q ⊗ b`` and ``q ↦ a ⊗ q̄ ⊗ b``
(:mod:`cryoposes.rotations`), so recovered poses ``q̂`` are the true ones up to those. The left
factor ``a`` is a rotation of the whole molecule: no data can see it, and every map is defined
up to it. The rest is seen by the images: the poses are ``f(q̂) ⊗ b`` for one of the two
*branches* ``f`` (``q̂`` itself, or its conjugate, i.e. the transposed rotation) and one right
multiplication ``b`` ∈ SO(3). That is what :func:`resolve_gauge` finds. The handedness stays
free, as in all of cryo-EM: mirroring is ``J·R·J = Rz(π)·R·Rz(π)`` (``J = diag(1, 1, −1)``), a
left rotation times the right multiplication ``Rz(π)``, so ``b`` and ``b ⊗ q_z(π)`` explain the
images equally well.

**Why common lines.**

For poses ``R_i``, ``R_j`` (image frame → molecule frame) the central planes of the two images'
spectra meet on the line ``u = n_i × n_j`` (``n = R·e_z``); by the Fourier slice theorem both
spectra equal the map's spectrum there, so ``F_i(ρ·R_iᵀu) = F_j(ρ·R_jᵀu)`` for every radius
``ρ``. A candidate gauge is scored by how well the images' central lines agree along the common
lines that its poses predict, averaged over thousands of image pairs: a closed-form prediction
per pair and a look-up in each image's polar spectrum, so a candidate costs microseconds. Wrong
gauges predict the wrong lines and score near zero. Reconstructing and comparing reprojections
needs a map per candidate and is far slower; it was not needed to break ties (measured in the
book's chapter "From poses to a map").

**The search.**

Writing ``b = b₀ ⊗ q_z(γ)``, the direction ``c = R(b)·e_z`` moves the planes and ``γ`` only turns
every image's lines by ``−γ``. Coarse: ``c`` on a Fibonacci sphere, every ``γ`` in [0, π) on the
polar grid (``γ + π`` is the other hand), both branches, on low frequencies. Fine: the best
candidates of each branch refined by a local search over SO(3) with more pairs and
frequencies (Nelder-Mead on the rotation vector). The score of the runner-up (the best of the other branch) is kept, as a margin.

Shifts and CTF are those of the forward model (:mod:`cryoposes.imaging`): each image's spectrum
has its shift undone, and the two lines of a pair are compared as ``C_j·F_i`` against
``C_i·F_j``, which both equal ``C_i·C_j`` times the map's spectrum.

**Unknown shifts.** A shift ``t`` multiplies a spectrum by ``e^{−2πi k·t}``, so an image pair
whose shifts are off by a few pixels disagrees along its true common line as much as along a
wrong one. Particles with unknown shifts are therefore first centred on the stack's rotational
average (:func:`cryoposes.imaging.estimate_shifts`, on phase-flipped images when there is a
CTF), and those shifts are used as known. The centring is right up to one 3-D offset common to
all particles (harmless) and about 2 px per particle (a round template centres an elongated
particle only roughly); such errors scramble the phases above ~0.15 cycles per pixel, so the
fine search stops there for estimated shifts (to 0.3 it often failed). Searching each pair's
relative shift along its line instead, as common-lines methods do, failed under noise: the best
of ~50 shifts of a noisy line correlates as well as the true line does. ``benchmarks/gauge.py``
measures the three ways on the same particles (record ``5j0n-64px-ctf-shift`` in
``results/gauge.json``: 1,000 particles of 5j0n at 64 px, −12 dB, CTF, shifts up to 6.4 px,
poses 5.5° from the truth): physical errors 5.8–5.9° with the true shifts, 6.3–8.2° centred,
93–118° (a failed gauge) with the shifts ignored, over three seeds of the pairs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cryoposes import imaging, rotations
from cryoposes.ctf import phase_flip
from cryoposes.ctf import ctf as contrast_transfer

__all__ = ["GaugeResult", "resolve_gauge", "common_line_score"]


@dataclass(frozen=True)
class GaugeResult:
    """Physical poses and the gauge that gave them.

    Attributes
    ----------
    quaternions : numpy.ndarray
        (N, 4) physical poses ``f(q̂) ⊗ right`` (up to one global rotation and the hand).
    right : numpy.ndarray
        (4,) the right multiplication ``b`` found.
    transposed : bool
        Whether the branch is the conjugate ``q̄`` (the transposed rotations).
    score : float
        Mean common-line correlation of the chosen gauge, in [−1, 1].
    runner_up : float
        The best score of the other branch: the margin of the choice is ``score − runner_up``.
    shifts : numpy.ndarray or None
        (N, 2) the particle shifts ``(t_x, t_y)`` in pixels that the images were compared with:
        those given, those found by centring (``max_shift``), or None (centred particles).
    """

    quaternions: np.ndarray
    right: np.ndarray
    transposed: bool
    score: float
    runner_up: float
    shifts: np.ndarray | None = None


class _PolarSpectra:
    """Each image's spectrum on a polar grid: ``angles`` × ``radii`` (cycles per pixel), shift
    undone, with the CTF at the same points for the cross-multiplication."""

    def __init__(self, images, shifts, ctf, pixel_size, angles: int, radii):
        import finufft

        count = images.shape[0]
        theta = 2 * np.pi * np.arange(angles) / angles
        kx = np.cos(theta)[:, None] * radii[None, :]
        ky = np.sin(theta)[:, None] * radii[None, :]
        values = None if ctf is None else ctf.per_particle(count)
        self.spectra = np.empty((count, angles, len(radii)), dtype=np.complex64)
        self.transfer = None if ctf is None else np.empty((count, angles, len(radii)), dtype=np.float32)
        # In blocks of images: the double-precision temporaries of the whole stack took 3 GB for
        # the ~10,000 images of the default pairs (at 64 px).
        for first in range(0, count, 1024):
            block = slice(first, first + 1024)
            # F(k) = Σ_p image(p)·e^{−2πi k·(p − L//2)}: a type-2 NUFFT with the image as
            # coefficients (axis 0 is y), one set of points for the whole block.
            coefficients = np.ascontiguousarray(images[block], dtype=np.complex128)
            spectra = finufft.nufft2d2(np.ascontiguousarray(2 * np.pi * ky.ravel()),
                                       np.ascontiguousarray(2 * np.pi * kx.ravel()), coefficients,
                                       eps=1e-6, isign=-1).reshape(len(coefficients), angles, len(radii))
            if shifts is not None:
                spectra *= np.exp(2j * np.pi * (shifts[block, 0, None, None] * kx + shifts[block, 1, None, None] * ky))
            # A ramp weight (more samples at larger radii, as in the density of a polar grid) and
            # per-image normalisation: every pair counts alike, whatever its contrast.
            self.spectra[block] = spectra * np.sqrt(radii)
            if values is not None:
                self.transfer[block] = contrast_transfer(kx[None] / pixel_size, ky[None] / pixel_size,
                                                         **{name: value[block, None, None] for name, value in values.items()})
        self.angles = angles


def _line_angles(first, second):
    """Angles (radians) of the common line of each pair in the first and in the second image,
    for rotation matrices ``first``, ``second`` (P, 3, 3)."""
    line = np.cross(first[:, :, 2], second[:, :, 2])
    line /= np.maximum(np.linalg.norm(line, axis=1, keepdims=True), 1e-12)
    in_first = np.einsum("pji,pj->pi", first, line)
    in_second = np.einsum("pji,pj->pi", second, line)
    return np.arctan2(in_first[:, 1], in_first[:, 0]), np.arctan2(in_second[:, 1], in_second[:, 0])


def _polar_index(polar, angles):
    """Neighbouring polar lines and the linear-interpolation weight of each angle (radians)."""
    position = np.mod(angles / (2 * np.pi / polar.angles), polar.angles)
    below = np.floor(position).astype(int)
    return below % polar.angles, (below + 1) % polar.angles, (position - below).astype(np.float32)


def _interpolated(table, images, index):
    below, above, weight = index
    weight = weight[..., None]
    return (1 - weight) * table[images, below] + weight * table[images, above]


def _correlation(polar, pairs, first_angles, second_angles, nearest=False):
    """Normalised correlation of each pair's common lines, the lines interpolated linearly
    between the polar grid's angles (or the nearest line: half the work, for the coarse
    search); angle arrays of shape (P, ...) give scores (...), the mean over the pairs."""
    extra = (slice(None),) + (None,) * (np.ndim(first_angles) - 1)
    i, j = pairs[:, 0][extra], pairs[:, 1][extra]
    if nearest:
        step = 2 * np.pi / polar.angles
        first = np.rint(first_angles / step).astype(int) % polar.angles
        second = np.rint(second_angles / step).astype(int) % polar.angles
        a, b = polar.spectra[i, first], polar.spectra[j, second]
        if polar.transfer is not None:
            a, b = a * polar.transfer[j, second], b * polar.transfer[i, first]
    else:
        first, second = _polar_index(polar, first_angles), _polar_index(polar, second_angles)
        a, b = _interpolated(polar.spectra, i, first), _interpolated(polar.spectra, j, second)
        if polar.transfer is not None:
            a = a * _interpolated(polar.transfer, j, second)
            b = b * _interpolated(polar.transfer, i, first)
    numerator = np.real(np.sum(a * np.conj(b), axis=-1))
    denominator = np.sqrt(np.sum(np.abs(a) ** 2, axis=-1) * np.sum(np.abs(b) ** 2, axis=-1))
    return np.mean(numerator / np.maximum(denominator, 1e-30), axis=0)


def common_line_score(images, quaternions, pairs=None, shifts=None, ctf=None, pixel_size: float = 1.0,
                      max_radius: float = 0.25, angles: int = 360, seed: int = 0) -> float:
    """How well the images agree along the common lines that their poses predict.

    Parameters
    ----------
    images : array_like
        (N, L, L) particle images.
    quaternions : array_like
        (N, 4) poses.
    pairs : array_like, optional
        (P, 2) image pairs to score (default: 4,000 random pairs, drawn with ``seed``).
    shifts : array_like, optional
        (N, 2) particle shifts in pixels (undone).
    ctf : cryoposes.ctf.CTFParameters, optional
        The images' CTFs (cross-multiplied).
    pixel_size : float, optional
        Å per pixel (for the CTF).
    max_radius : float, optional
        Highest spatial frequency used, in cycles per pixel (Nyquist is 0.5).
    angles : int, optional
        Lines of the polar grid.
    seed : int, optional
        Seed of the pairs.

    Returns
    -------
    float
        Mean normalised correlation in [−1, 1]: near 1 for consistent poses on clean images,
        near 0 for unrelated ones.

    Examples
    --------
    >>> import numpy as np
    >>> from cryoposes import projection, rotations
    >>> x, y, z = np.meshgrid(*[np.arange(32) - 16] * 3, indexing="ij")
    >>> blob = np.exp(-((x - 4) ** 2 + y ** 2 + 3 * (z + 3) ** 2) / 10.0) + np.exp(-(x ** 2 + (y - 5) ** 2 + z ** 2) / 6.0)
    >>> poses = rotations.random_quaternions(50, 0)
    >>> images = projection.project(blob, poses, method="fourier")
    >>> right = round(common_line_score(images, poses), 2)
    >>> wrong = round(common_line_score(images, rotations.random_quaternions(50, 1)), 2)
    >>> right > 0.95, wrong < 0.5
    (True, True)
    """
    images = imaging._check_images(images)
    quaternions = rotations._check_quaternions(quaternions)
    rng = np.random.default_rng(seed)
    pairs = _random_pairs(len(images), 4000, rng) if pairs is None else np.asarray(pairs, dtype=int)
    polar = _PolarSpectra(images, shifts, ctf, pixel_size, angles, _radii(images.shape[-1], max_radius))
    matrices = rotations.quaternion_to_matrix(quaternions)
    return float(_correlation(polar, pairs, *_line_angles(matrices[pairs[:, 0]], matrices[pairs[:, 1]])))


def _radii(size, max_radius):
    """Radii of the polar grid in cycles per pixel: one per Fourier pixel from the first ring up."""
    return np.arange(1, max(2, int(max_radius * size)) + 1) / size


def _random_pairs(n, count, rng):
    first = rng.integers(0, n, count)
    second = (first + rng.integers(1, n, count)) % n
    return np.stack([first, second], axis=1)


def _fibonacci_sphere(count):
    """``count`` nearly uniform unit vectors (a Fibonacci spiral)."""
    index = np.arange(count) + 0.5
    z = 1 - 2 * index / count
    azimuth = np.pi * (1 + 5**0.5) * index
    radius = np.sqrt(1 - z**2)
    return np.stack([radius * np.cos(azimuth), radius * np.sin(azimuth), z], axis=1)


def _rotation_to(direction):
    """A rotation (3, 3) taking e_z to the unit vector ``direction``."""
    z = np.array([0.0, 0.0, 1.0])
    axis = np.cross(z, direction)
    sine, cosine = np.linalg.norm(axis), float(direction @ z)
    if sine < 1e-12:
        return np.eye(3) if cosine > 0 else np.diag([1.0, -1.0, -1.0])
    axis /= sine
    angle = np.arctan2(sine, cosine)
    return rotations.quaternion_to_matrix(rotations.axis_angle_to_quaternion(axis, angle))


def _candidate_scores(polar, pairs, matrices, right):
    """Scores of the poses ``matrices @ right`` for every in-plane turn γ of the polar grid in
    [0, π): right multiplication by Rz(γ) turns every common line by −γ."""
    first, second = _line_angles(matrices[pairs[:, 0]] @ right, matrices[pairs[:, 1]] @ right)
    turns = 2 * np.pi * np.arange(polar.angles // 2) / polar.angles
    return _correlation(polar, pairs, first[:, None] - turns, second[:, None] - turns, nearest=True), turns


def _turn(gamma):
    c, s = np.cos(gamma), np.sin(gamma)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _refine(polar, pairs, matrices, right, step, tolerance):
    """Local maximisation of the score over right multiplications ``right·exp([ω]×)``:
    Nelder-Mead on the rotation vector ω, from a simplex of ``step`` radians, to ``tolerance``."""
    from scipy.optimize import minimize

    first, second = matrices[pairs[:, 0]], matrices[pairs[:, 1]]

    def candidate(vector):
        angle = float(np.linalg.norm(vector))
        if angle == 0:
            return right
        return right @ rotations.quaternion_to_matrix(rotations.axis_angle_to_quaternion(vector, angle))

    def loss(vector):
        turned = candidate(vector)
        return -float(_correlation(polar, pairs, *_line_angles(first @ turned, second @ turned)))

    simplex = np.vstack([np.zeros(3), step * np.eye(3)])
    found = minimize(loss, np.zeros(3), method="Nelder-Mead",
                     options={"initial_simplex": simplex, "xatol": tolerance, "fatol": 1e-7, "maxiter": 400})
    return candidate(found.x), -float(found.fun)


def resolve_gauge(images, quaternions, shifts=None, ctf=None, pixel_size: float = 1.0, seed: int = 0,
                  directions: int = 600, coarse_pairs: int = 1000, fine_pairs: int = 6000,
                  progress: bool = False, max_shift: float = 0.0) -> GaugeResult:
    """Physical poses from poses known up to the gauges of pairwise distances, using the images.

    See the module docstring for the method. Ground truth plays no part.

    Parameters
    ----------
    images : array_like
        (N, L, L) particle images.
    quaternions : array_like
        (N, 4) poses from distances (e.g. :func:`cryoposes.recovery.fit_poses`).
    shifts : array_like, optional
        (N, 2) particle shifts in pixels, if known (with ``max_shift``: the starting shifts).
    ctf : cryoposes.ctf.CTFParameters, optional
        The images' CTFs.
    pixel_size : float, optional
        Å per pixel (for the CTF).
    seed : int, optional
        Seed of the image pairs: same seed, same result.
    directions : int, optional
        Directions ``R(b)·e_z`` of the coarse search (about 8° apart at 600).
    coarse_pairs, fine_pairs : int, optional
        Image pairs scored in the coarse and the fine search.
    progress : bool, optional
        Show a progress bar over the coarse search.
    max_shift : float, optional
        How far, in pixels, a particle may lie from where ``shifts`` put it (from the box
        centre without ``shifts``). Above 0, the particles are first centred
        (:func:`cryoposes.imaging.estimate_shifts`) and the shifts so found are used and
        returned; 0 takes the shifts (or centred particles) as right.

    Returns
    -------
    GaugeResult
        The physical poses, the gauge and its score.

    Examples
    --------
    >>> import numpy as np
    >>> from cryoposes import alignment, projection, rotations
    >>> x, y, z = np.meshgrid(*[np.arange(32) - 16] * 3, indexing="ij")
    >>> blob = np.exp(-((x - 4) ** 2 + y ** 2 + 3 * (z + 3) ** 2) / 10.0) + np.exp(-(x ** 2 + (y - 5) ** 2 + z ** 2) / 6.0)
    >>> truth = rotations.random_quaternions(60, 0)
    >>> images = projection.project(blob, truth, method="fourier")
    >>> a, b = rotations.random_quaternions(2, 1)
    >>> hidden = rotations.quaternion_multiply(a, rotations.quaternion_multiply(rotations.quaternion_conjugate(truth), b))
    >>> result = resolve_gauge(images, hidden, directions=200)
    >>> result.transposed, bool(alignment.align_physical(truth, result.quaternions).median < 1.0)
    (True, True)
    """
    from tqdm.auto import tqdm

    images = imaging._check_images(images)
    quaternions = rotations._check_quaternions(quaternions)
    if len(quaternions) != len(images):
        raise ValueError(f"need one pose per image: {len(quaternions)} poses for {len(images)} images")
    if len(images) < 3:
        raise ValueError("the gauge needs at least 3 images")
    # Fine search up to 0.3 cycles per pixel; only to 0.15 with estimated shifts, whose errors
    # (about 2 px at −12 dB) turn the phases of higher frequencies at random.
    fine_band = 0.3
    if shifts is not None:
        shifts = np.asarray(shifts, dtype=float)
    if max_shift > 0:
        fine_band = 0.15
        # Same contrast for every particle before centring: the CTF's sign flips would move the
        # peaks. Shifts given are undone first, and what is found adds to them.
        flipped = images if ctf is None else phase_flip(images, ctf, pixel_size)
        if shifts is not None:
            flipped = imaging.shift_images(flipped, -shifts)
        shifts = (0.0 if shifts is None else shifts) + imaging.estimate_shifts(flipped, max_shift)
    rng = np.random.default_rng(seed)
    size = images.shape[-1]
    # Never more pairs than there are (small datasets).
    available = len(images) * (len(images) - 1) // 2
    coarse_pair_list = _random_pairs(len(images), min(coarse_pairs, available), rng)
    fine_pair_list = _random_pairs(len(images), min(fine_pairs, available), rng)
    # Only the images in some pair are read: memory and time stay bounded however many there are.
    used = np.unique(np.concatenate([coarse_pair_list.ravel(), fine_pair_list.ravel()]))
    coarse_pair_list, fine_pair_list = (np.searchsorted(used, pairs) for pairs in (coarse_pair_list, fine_pair_list))
    if ctf is not None:
        ctf = ctf.take(used, len(images))
    chosen_images, chosen_shifts = images[used], None if shifts is None else shifts[used]
    # Coarse: low frequencies (wide basins, few pairs); fine: more of both.
    coarse = _PolarSpectra(chosen_images, chosen_shifts, ctf, pixel_size, 120, _radii(size, 0.12))
    fine = _PolarSpectra(chosen_images, chosen_shifts, ctf, pixel_size, 360, _radii(size, fine_band))
    matrices = rotations.quaternion_to_matrix(quaternions[used])
    branches = {False: matrices, True: np.transpose(matrices, (0, 2, 1))}
    candidates = []
    with tqdm(total=2 * directions, desc="gauge search", unit="direction", disable=not progress) as bar:
        for transposed, posed in branches.items():
            for direction in _fibonacci_sphere(directions):
                base = _rotation_to(direction)
                scores, turns = _candidate_scores(coarse, coarse_pair_list, posed, base)
                best = int(np.argmax(scores))
                candidates.append((float(scores[best]), transposed, base @ _turn(turns[best])))
                bar.update()
    refined = {}
    for transposed in (False, True):
        mine = sorted((c for c in candidates if c[1] == transposed), key=lambda c: -c[0])[:3]
        for _, _, right in mine:
            right, value = _refine(fine, fine_pair_list, branches[transposed], right,
                                   step=np.radians(4.0), tolerance=np.radians(0.01))
            if transposed not in refined or value > refined[transposed][0]:
                refined[transposed] = (value, right)
    transposed = refined[True][0] > refined[False][0]
    score, right = refined[transposed]
    right_q = rotations.matrix_to_quaternion(right)
    start = rotations.quaternion_conjugate(quaternions) if transposed else quaternions
    physical = rotations.canonical(rotations.quaternion_multiply(start, right_q))
    return GaugeResult(physical, right_q, bool(transposed), float(score), float(refined[not transposed][0]), shifts)
