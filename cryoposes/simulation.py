"""Simulated particle datasets: y = C_φ S_t P_θ x + n.

:func:`simulate` draws poses uniformly within a coverage of SO(3), projects the protein
(:mod:`cryoposes.projection`), shifts each projection by a random sub-pixel ``t`` uniform in the
disk of radius ``shift`` pixels, applies a random CTF (optional), standardises the clean stack
(one mean and one standard deviation for all images, so relative intensities are kept and the
clean images have unit variance) and adds white Gaussian noise at ``snr_db``
(:mod:`cryoposes.imaging`): with unit-variance clean images the noise variance is
``10^(−snr_db/10)``, e.g. σ² = 16 at −12.04 dB.

Random draws: each stage has its own generator spawned from ``seed``
(:class:`numpy.random.SeedSequence`), so the same seed gives the same dataset, and changing one
stage (say the SNR) leaves the others' draws (poses, shifts, CTFs) unchanged.
"""

from __future__ import annotations

import math

import numpy as np

from cryoposes import data, imaging, projection, rotations, volumes

__all__ = ["CTF_RANGES", "random_shifts", "random_ctf", "simulate"]

#: Ranges of the random CTFs (uniform draws; the rest fixed as on a typical 300 kV microscope).
#: Defocus 0.5–2.5 µm; the minor axis up to 10% less defocused than the major one.
CTF_RANGES = {
    "defocus_u": (5_000.0, 25_000.0),  # Å
    "astigmatism": (0.0, 0.1),  # (defocus_u − defocus_v) / defocus_u
    "defocus_angle": (0.0, 180.0),  # degrees
    "voltage": 300.0,  # kV
    "spherical_aberration": 2.7,  # mm
    "amplitude_contrast": 0.1,
}


def random_shifts(n: int, radius: float, rng=None) -> np.ndarray:
    """``n`` shifts (t_x, t_y) in pixels, uniform in the disk of ``radius`` pixels."""
    rng = np.random.default_rng(rng)
    distance = radius * np.sqrt(rng.uniform(size=n))
    angle = rng.uniform(0.0, 2 * np.pi, size=n)
    return np.stack([distance * np.cos(angle), distance * np.sin(angle)], axis=1)


def random_ctf(n: int, rng=None) -> imaging.CTFParameters:
    """``n`` CTF parameter sets drawn from :data:`CTF_RANGES`."""
    rng = np.random.default_rng(rng)
    defocus_u = rng.uniform(*CTF_RANGES["defocus_u"], size=n)
    defocus_v = defocus_u * (1.0 - rng.uniform(*CTF_RANGES["astigmatism"], size=n))
    return imaging.CTFParameters(
        defocus_u=defocus_u,
        defocus_v=defocus_v,
        defocus_angle=rng.uniform(*CTF_RANGES["defocus_angle"], size=n),
        voltage=CTF_RANGES["voltage"],
        spherical_aberration=CTF_RANGES["spherical_aberration"],
        amplitude_contrast=CTF_RANGES["amplitude_contrast"],
    )


def _check_arguments(n, size, coverage, snr_db, shift, seed):
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"number of particles must be a positive integer, got {n!r}")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 8:
        raise ValueError(f"image size must be an integer of at least 8 pixels, got {size!r}")
    if coverage not in rotations.COVERAGES:
        raise ValueError(f"unknown coverage {coverage!r}; choose one of {', '.join(rotations.COVERAGES)}")
    if snr_db is not None and not math.isfinite(float(snr_db)):
        raise ValueError(f"SNR (dB) must be a finite number, got {snr_db}")
    if not math.isfinite(float(shift)) or shift < 0 or shift >= size / 2:
        raise ValueError(f"shift must be between 0 and half the image size ({size / 2} px), got {shift}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")


def simulate(protein: str | volumes.Volume, n: int, size: int, coverage: str = "full", snr_db: float | None = None,
             shift: float = 0.0, ctf: bool = False, seed: int = 0, progress: bool = True,
             method: str = "auto"):
    """A :class:`~cryoposes.particles.ParticleDataset` of ``n`` simulated ``size × size`` images.

    ``protein`` is a name known to :mod:`cryoposes.data` (loaded with
    :func:`cryoposes.volumes.load_protein` in a ``size``³ box) or a cubic
    :class:`~cryoposes.volumes.Volume` (resampled to ``size``³ if needed). ``snr_db=None`` means
    no noise; ``shift`` is the largest shift in pixels; ``ctf`` draws a CTF per particle
    (:func:`random_ctf`). See the module docstring for the steps and the seeding.
    """
    from cryoposes.particles import ParticleDataset

    _check_arguments(n, size, coverage, snr_db, shift, seed)
    if isinstance(protein, volumes.Volume):
        volume = protein if protein.box == size else volumes.resample(protein, size)
        name, symmetry = "custom", None
    else:
        entry = data.get_protein(protein)
        volume = volumes.load_protein(entry.name, box=size)
        name, symmetry = entry.name, entry.symmetry
    pose_rng, shift_rng, ctf_rng, noise_rng = (
        np.random.default_rng(child) for child in np.random.SeedSequence(seed).spawn(4)
    )
    quaternions = rotations.sample_coverage(n, coverage, pose_rng)
    images = projection.project(volume, quaternions, method=method, progress=progress)
    shifts = random_shifts(n, shift, shift_rng) if shift > 0 else np.zeros((n, 2))
    if shift > 0:
        images = imaging.shift_images(images, shifts)
    ctf_parameters = random_ctf(n, ctf_rng) if ctf else None
    if ctf_parameters is not None:
        images = imaging.apply_ctf(images, ctf_parameters, volume.voxel_size)
    spread = float(np.std(images, dtype=np.float64))
    if spread == 0:
        raise ValueError("the clean images are constant (empty volume?)")
    images = ((images - np.mean(images, dtype=np.float64)) / spread).astype(np.float32)
    metadata = {"protein": name, "symmetry": symmetry, "n": int(n), "size": int(size), "coverage": coverage,
                "snr_db": None if snr_db is None else float(snr_db), "shift": float(shift), "ctf": bool(ctf),
                "seed": int(seed)}
    if snr_db is not None:
        metadata["noise_variance"] = imaging.noise_variance(images, snr_db)
        images = imaging.add_noise(images, snr_db, noise_rng)
    return ParticleDataset(images, quaternions, shifts, volume.voxel_size, ctf_parameters, metadata)
