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
stage (say the SNR) leaves the others' draws (poses, shifts, CTFs) unchanged: the noisy dataset
of a seed is its clean dataset plus noise (:func:`with_noise`), which is how a network trained
on clean images with noise drawn on the fly meets the noisy images of the same poses.

Zoom: the protein is boxed with room to turn (:func:`cryoposes.volumes.load_protein`), so the
molecule spans well under half of the image. With ``zoom`` > 1 it is projected in a box of
``round(size·zoom)`` pixels whose central ``size`` pixels are kept: the molecule fills more of
the image, at a finer pixel size.

This is the one place where cryoposes makes particle images: the command line
(``cryoposes simulate``), the studies of :mod:`cryoposes.studies` and the book all call
:func:`simulate`, so one seed gives the same images everywhere.
"""

from __future__ import annotations

import dataclasses
import math
import os

import numpy as np

from cryoposes import data, imaging, projection, rotations, volumes
from cryoposes.ctf import CTFParameters, apply_ctf

__all__ = ["CTF_RANGES", "random_shifts", "random_ctf", "simulate", "with_noise"]

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
    """Random shifts ``(t_x, t_y)`` in pixels, uniform in the disk of radius ``radius``.

    The distance to the centre is ``radius·sqrt(u)``, ``u`` uniform in [0, 1), so that the
    shifts are uniform over the disk's area rather than crowded at its centre.

    Parameters
    ----------
    n : int
        Number of shifts.
    radius : float
        Radius of the disk in pixels.
    rng : numpy.random.Generator or int or None, optional
        Generator or seed, as for :func:`numpy.random.default_rng`.

    Returns
    -------
    numpy.ndarray
        (n, 2) shifts, as :func:`cryoposes.imaging.shift_images` applies them.

    Examples
    --------
    >>> from cryoposes.simulation import random_shifts
    >>> shifts = random_shifts(1000, radius=3.0, rng=0)
    >>> shifts.shape, bool(np.all(np.hypot(shifts[:, 0], shifts[:, 1]) <= 3.0))
    ((1000, 2), True)
    """
    rng = np.random.default_rng(rng)
    distance = radius * np.sqrt(rng.uniform(size=n))
    angle = rng.uniform(0.0, 2 * np.pi, size=n)
    return np.stack([distance * np.cos(angle), distance * np.sin(angle)], axis=1)


def random_ctf(n: int, rng=None) -> CTFParameters:
    """Random CTF parameters for ``n`` particles, drawn uniformly from :data:`CTF_RANGES`.

    ``defocus_v = defocus_u·(1 − a)`` with the astigmatism ``a`` drawn in its range; voltage,
    spherical aberration and amplitude contrast are the fixed values of the table.

    Parameters
    ----------
    n : int
        Number of particles.
    rng : numpy.random.Generator or int or None, optional
        Generator or seed, as for :func:`numpy.random.default_rng`.

    Returns
    -------
    cryoposes.ctf.CTFParameters
        Defoci (Å) and defocus angles (degrees) of shape (n,); the fixed values as scalars.

    Examples
    --------
    >>> from cryoposes.simulation import random_ctf
    >>> ctf = random_ctf(4, rng=0)
    >>> ctf.defocus_u.shape, bool(np.all(ctf.defocus_v <= ctf.defocus_u)), float(ctf.voltage)
    ((4,), True, 300.0)
    """
    rng = np.random.default_rng(rng)
    defocus_u = rng.uniform(*CTF_RANGES["defocus_u"], size=n)
    defocus_v = defocus_u * (1.0 - rng.uniform(*CTF_RANGES["astigmatism"], size=n))
    return CTFParameters(
        defocus_u=defocus_u,
        defocus_v=defocus_v,
        defocus_angle=rng.uniform(*CTF_RANGES["defocus_angle"], size=n),
        voltage=CTF_RANGES["voltage"],
        spherical_aberration=CTF_RANGES["spherical_aberration"],
        amplitude_contrast=CTF_RANGES["amplitude_contrast"],
    )


def _check_arguments(n, size, coverage, snr_db, shift, seed, zoom):
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
    if not math.isfinite(float(zoom)) or zoom < 1:
        raise ValueError(f"zoom must be a number of at least 1, got {zoom}")


def _streams(seed: int):
    """The generators of the four random stages: poses, shifts, CTFs, noise."""
    return [np.random.default_rng(child) for child in np.random.SeedSequence(seed).spawn(4)]


def simulate(protein: str | os.PathLike | data.ProteinFile | volumes.Volume, n: int, size: int,
             coverage: str = "full", snr_db: float | None = None, shift: float = 0.0, ctf: bool = False,
             seed: int = 0, zoom: float = 1.0, progress: bool = True,
             method: str = "auto"):
    """Simulate a particle dataset y = C·S·P·x + n (see the module docstring for the steps).

    Parameters
    ----------
    protein : str, os.PathLike, cryoposes.data.ProteinFile or cryoposes.volumes.Volume
        A name known to :mod:`cryoposes.data`; the path of a density map (``.mrc``, ``.map``:
        voxel size from its header) or an atomic model (``.pdb``, ``.cif``, ``.mmcif``: sampled
        as the registered models), boxed as a registered protein by
        :func:`cryoposes.volumes.load_protein`; what :func:`cryoposes.data.resolve_protein`
        returned for either; or a cubic volume (resampled to the projection box if needed).
    n : int
        Number of particles.
    size : int
        Image side in pixels.
    coverage : str, optional
        Where the poses are drawn, one of :data:`cryoposes.rotations.COVERAGES`.
    snr_db : float or None, optional
        Signal-to-noise ratio of the white noise in dB; None: no noise.
    shift : float, optional
        Largest shift in pixels (uniform in the disk).
    ctf : bool, optional
        Draw a CTF per particle (:func:`random_ctf`).
    seed : int, optional
        Same seed, same dataset.
    zoom : float, optional
        Project in a box of ``round(size·zoom)`` pixels and keep the central ``size``.
    progress : bool, optional
        Show a progress bar while projecting.
    method : str, optional
        Projector, one of :data:`cryoposes.projection.METHODS`.

    Returns
    -------
    cryoposes.particles.ParticleDataset
        ``n`` images (n, size, size) float32 with their poses, shifts, CTFs, pixel size and
        metadata (how they were made). Its ``protein`` is the registered name, for a file
        ``"NAME sha256:HEX"`` (:attr:`cryoposes.data.ProteinFile.label`), for a volume
        ``"custom"``; its ``symmetry`` the registered point group, None for a file or a volume.

    Raises
    ------
    cryoposes.errors.InputError
        If ``protein`` is neither a registered name nor an existing map or model file, or the
        file is unusable (see :func:`cryoposes.volumes.load_protein`).
    ValueError
        If another argument is out of its range.
    FileNotFoundError
        If a registered protein's file is neither local nor downloadable.

    Examples
    --------
    >>> from cryoposes.data import protein_path
    >>> from cryoposes.simulation import simulate
    >>> dataset = simulate("5j0n", n=10, size=32, snr_db=-12, seed=0, progress=False)
    >>> dataset.images.shape, dataset.quaternions.shape
    ((10, 32, 32), (10, 4))
    >>> from_file = simulate(protein_path("5j0n"), n=10, size=32, snr_db=-12, seed=0, progress=False)
    >>> bool(np.array_equal(from_file.images, dataset.images)), from_file.metadata["protein"][:24]
    (True, '5j0n.mrc sha256:48d3147c')
    """
    from cryoposes.particles import ParticleDataset

    _check_arguments(n, size, coverage, snr_db, shift, seed, zoom)
    box = int(round(size * zoom))
    if isinstance(protein, volumes.Volume):
        volume = protein if protein.box == box else volumes.resample(protein, box)
        name, symmetry = "custom", None
    else:
        source = protein if isinstance(protein, data.ProteinFile) else data.resolve_protein(protein)
        volume = volumes.load_protein(source, box=box)
        name, symmetry = source.label, source.symmetry
    pose_rng, shift_rng, ctf_rng, _ = _streams(seed)
    quaternions = rotations.sample_coverage(n, coverage, pose_rng)
    images = projection.project(volume, quaternions, method=method, progress=progress)
    if box > size:
        corner = box // 2 - size // 2  # keeps the centre pixel at size // 2
        images = np.ascontiguousarray(images[:, corner:corner + size, corner:corner + size])
    shifts = random_shifts(n, shift, shift_rng) if shift > 0 else np.zeros((n, 2))
    if shift > 0:
        images = imaging.shift_images(images, shifts)
    ctf_parameters = random_ctf(n, ctf_rng) if ctf else None
    if ctf_parameters is not None:
        images = apply_ctf(images, ctf_parameters, volume.voxel_size)
    images = imaging.standardize(images)  # refuses constant images (an empty volume)
    metadata = {"protein": name, "symmetry": symmetry, "n": int(n), "size": int(size), "coverage": coverage,
                "snr_db": None, "shift": float(shift), "ctf": bool(ctf), "seed": int(seed),
                "zoom": float(zoom)}
    clean = ParticleDataset(images, quaternions, shifts, volume.voxel_size, ctf_parameters, metadata)
    return clean if snr_db is None else with_noise(clean, snr_db)


def with_noise(dataset, snr_db: float):
    """The noisy dataset that :func:`simulate` makes from the same seed, from its clean one.

    The noise comes from the seed's own noise stream, so
    ``with_noise(simulate(..., seed=s), x)`` equals ``simulate(..., snr_db=x, seed=s)``
    without projecting again.

    Parameters
    ----------
    dataset : cryoposes.particles.ParticleDataset
        A clean dataset made by :func:`simulate` (its metadata holds the seed).
    snr_db : float
        Signal-to-noise ratio in dB.

    Returns
    -------
    cryoposes.particles.ParticleDataset
        The same particles with noise; metadata ``snr_db`` and ``noise_variance`` set.
    """
    metadata = dict(dataset.metadata)
    if metadata.get("snr_db") is not None:
        raise ValueError(f"the dataset already has noise at {metadata['snr_db']} dB")
    if "seed" not in metadata:
        raise ValueError("the dataset was not made by simulate(): no seed in its metadata")
    if snr_db is None or not math.isfinite(float(snr_db)):
        raise ValueError(f"SNR (dB) must be a finite number, got {snr_db}")
    noise_rng = _streams(int(metadata["seed"]))[3]
    metadata["snr_db"] = float(snr_db)
    metadata["noise_variance"] = imaging.noise_variance(dataset.images, snr_db)
    images = imaging.add_noise(dataset.images, snr_db, noise_rng)
    return dataclasses.replace(dataset, images=images, metadata=metadata)
