"""Particle datasets on disk, in the formats the field reads: an MRC stack and a RELION STAR table.

A dataset is a folder holding

* ``particles.mrcs`` — the images, float32 ``(N, L, L)``, voxel size = pixel size (mrcfile);
* ``particles.star`` — RELION 3.1 style (starfile): a ``data_optics`` block (pixel size, image size
  and, with a CTF, voltage, spherical aberration, amplitude contrast) and a ``data_particles``
  block with one row per image: ``rlnImageName`` (``000001@particles.mrcs``), the true pose as
  ``rlnAngleRot``/``rlnAngleTilt``/``rlnAnglePsi`` in degrees (the convention of
  :mod:`cryoposes.rotations`), ``rlnOriginXAngst``/``rlnOriginYAngst`` and, with a CTF,
  ``rlnDefocusU``/``rlnDefocusV``/``rlnDefocusAngle`` (Å, degrees); plus a ``data_cryoposes``
  block with how it was made (protein, SNR, coverage, seed …), which RELION ignores.

Shifts: :func:`cryoposes.imaging.shift_images` moves a particle by ``t`` pixels; RELION's origin
offsets point the other way (the offset that brings the particle back to the centre), so
``rlnOriginXAngst = −t_x · pixel_size``.

:func:`read_dataset` also reads what the field writes: any RELION 3.1+ particle STAR file (many
stacks named relative to the project folder, several optics groups, particles with or without
poses) and older or cryoSPARC-exported single-table files; the STAR file's own tables are kept
with the dataset so that files written from it keep every column.

Writing is atomic: everything goes to a temporary folder beside the target, which is renamed into
place at the end, so a failure leaves nothing half-written. An existing non-empty folder is
refused unless ``overwrite=True``, which replaces it as a whole.

The STAR tables themselves (poses, names, origins, the ``data_cryoposes`` block) are read and
written by :mod:`cryoposes.star`.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import mrcfile
import numpy as np
import pandas as pd
import starfile

from cryoposes import imaging
from cryoposes.ctf import CTFParameters
from cryoposes.errors import InputError
from cryoposes.star import (
    ANGLE_COLUMNS,
    FLOAT_FORMAT,
    ORIGIN_COLUMNS,
    euler_degrees,
    metadata_block,
    metadata_from,
    particle_table,
    quaternions_from,
    read_star,
    require,
)

__all__ = [
    "STACK_NAME",
    "STAR_NAME",
    "ParticleDataset",
    "write_dataset",
    "write_relion_project",
    "read_dataset",
]

STACK_NAME = "particles.mrcs"
STAR_NAME = "particles.star"
#: CTFParameters field → RELION column, per particle.
CTF_PARTICLE_COLUMNS = {"defocus_u": "rlnDefocusU", "defocus_v": "rlnDefocusV", "defocus_angle": "rlnDefocusAngle"}
#: CTFParameters field → RELION column, in the optics block when shared by all particles.
CTF_OPTICS_COLUMNS = {
    "voltage": "rlnVoltage",
    "spherical_aberration": "rlnSphericalAberration",
    "amplitude_contrast": "rlnAmplitudeContrast",
}


@dataclass
class ParticleDataset:
    """Particle images with their poses (when known), shifts and CTF parameters.

    Attributes
    ----------
    images : numpy.ndarray
        (N, L, L) float32 images, indexed ``[y, x]``.
    quaternions : numpy.ndarray or None
        (N, 4) poses as unit quaternions (:mod:`cryoposes.rotations`); None when the poses are
        unknown (particles fresh from picking: what ``cryoposes recover`` is for).
    shifts : numpy.ndarray
        (N, 2) shifts ``(t_x, t_y)`` in pixels applied to each projection; None gives zeros.
    pixel_size : float
        Pixel size in Å.
    ctf : cryoposes.ctf.CTFParameters or None
        CTF parameters, one value per particle; None: no CTF.
    metadata : dict
        How the data were made (str, int, float or bool values).
    image_names : list of str or None
        The particles' ``rlnImageName`` in the STAR file read, or None if made in memory. They
        name the particles in the STAR files written from this dataset, so poses recovered
        from a reordered or subset STAR file stay paired with their images.
    table, optics : pandas.DataFrame or None
        The particles block (N rows, every column, in the file's order) and the optics block of
        the STAR file read, or None if made in memory: STAR files written from the dataset keep
        them and change only the pose columns.

    Raises
    ------
    cryoposes.errors.InputError
        A wrong shape, NaN or infinite values, a pixel size ≤ 0 or a count of names other than N.

    Examples
    --------
    >>> from cryoposes.particles import ParticleDataset
    >>> dataset = ParticleDataset(np.zeros((3, 16, 16)), np.tile([1.0, 0, 0, 0], (3, 1)))
    >>> len(dataset), dataset.size, dataset.shifts.shape, str(dataset.images.dtype)
    (3, 16, (3, 2), 'float32')
    """

    images: np.ndarray
    quaternions: np.ndarray
    shifts: np.ndarray | None = None
    pixel_size: float = 1.0
    ctf: CTFParameters | None = None
    metadata: dict = field(default_factory=dict)
    image_names: list | None = None
    table: pd.DataFrame | None = field(default=None, repr=False)
    optics: pd.DataFrame | None = field(default=None, repr=False)

    def __post_init__(self):
        self.images = np.asarray(self.images, dtype=np.float32)
        if self.images.ndim != 3 or self.images.shape[1] != self.images.shape[2]:
            raise InputError(f"images must be shaped (N, L, L), got {self.images.shape}")
        count = len(self.images)
        if self.quaternions is not None:
            self.quaternions = np.asarray(self.quaternions, dtype=float)
            if self.quaternions.shape != (count, 4):
                raise InputError(f"quaternions must be shaped ({count}, 4), got {self.quaternions.shape}")
        self.shifts = np.zeros((count, 2)) if self.shifts is None else np.asarray(self.shifts, dtype=float)
        if self.shifts.shape != (count, 2):
            raise InputError(f"shifts must be shaped ({count}, 2), got {self.shifts.shape}")
        self.pixel_size = float(self.pixel_size)
        if not np.isfinite(self.pixel_size) or self.pixel_size <= 0:
            raise InputError(f"pixel size must be a positive number of Å, got {self.pixel_size}")
        if self.ctf is not None:
            self.ctf = CTFParameters(**self.ctf.per_particle(count))
        if self.image_names is not None:
            self.image_names = [str(name) for name in self.image_names]
            if len(self.image_names) != count:
                raise InputError(f"{len(self.image_names)} image names for {count} images")
        if self.table is not None and len(self.table) != count:
            raise InputError(f"a STAR table of {len(self.table)} rows for {count} images")
        for name, array in (("images", self.images), ("quaternions", self.quaternions), ("shifts", self.shifts)):
            if array is not None and not np.all(np.isfinite(array)):
                raise InputError(f"{name} contain NaN or infinite values")

    def __len__(self) -> int:
        return len(self.images)

    @property
    def has_poses(self) -> bool:
        """Whether the particles' poses are known."""
        return self.quaternions is not None

    @property
    def size(self) -> int:
        """Side of the images in pixels."""
        return self.images.shape[-1]

    def subset(self, indices) -> ParticleDataset:
        """The particles at ``indices``, with the same pixel size and metadata.

        Parameters
        ----------
        indices : array_like of int or bool
            Indices of the particles to keep, or a boolean mask (N,).

        Returns
        -------
        ParticleDataset
            The selected particles with their poses, shifts, CTFs and names.

        Examples
        --------
        >>> from cryoposes.particles import ParticleDataset
        >>> dataset = ParticleDataset(np.zeros((5, 8, 8)), np.tile([1.0, 0, 0, 0], (5, 1)))
        >>> dataset.subset([4, 0]).images.shape, len(dataset.subset(np.arange(5) < 3))
        ((2, 8, 8), 3)
        """
        indices = np.arange(len(self))[indices]
        ctf = None
        if self.ctf is not None:
            ctf = self.ctf.take(indices, len(self))
        names = None if self.image_names is None else [self.image_names[i] for i in indices]
        quaternions = None if self.quaternions is None else self.quaternions[indices]
        table = None if self.table is None else self.table.iloc[indices].reset_index(drop=True)
        return ParticleDataset(self.images[indices], quaternions, self.shifts[indices], self.pixel_size, ctf,
                               dict(self.metadata), names, table, self.optics)

    def names(self) -> list[str]:
        """The particles' names: ``image_names`` as read, else their ``rlnImageName`` in a
        dataset folder written by :func:`write_dataset` (``000001@particles.mrcs`` …).

        Returns
        -------
        list of str
            N names.
        """
        if self.image_names is not None:
            return list(self.image_names)
        return [f"{i + 1:06d}@{STACK_NAME}" for i in range(len(self))]


    def names_sha256(self) -> str:
        """SHA-256 of the particle names in order: which particles, not what they show (a noisy
        copy of a simulation has the same names).

        Returns
        -------
        str
            64 hexadecimal digits.
        """
        return hashlib.sha256("\n".join(self.names()).encode()).hexdigest()


def _prepare_target(directory: Path, overwrite: bool) -> None:
    if directory.exists() and not directory.is_dir():
        raise InputError(f"{directory} exists and is not a folder")
    if directory.is_dir() and any(directory.iterdir()) and not overwrite:
        raise InputError(f"{directory} exists and is not empty; choose a new folder or overwrite it")


def _swap_into_place(temporary: Path, directory: Path) -> None:
    """Rename ``temporary`` to ``directory``; an existing ``directory`` is replaced as a whole."""
    if directory.exists():
        retired = Path(tempfile.mkdtemp(prefix=f".{directory.name}.old-", dir=directory.parent))
        os.rename(directory, retired / directory.name)
        os.rename(temporary, directory)
        shutil.rmtree(retired)
    else:
        os.rename(temporary, directory)


def write_dataset(dataset: ParticleDataset, directory, overwrite: bool = False) -> Path:
    """Write ``dataset`` to ``directory/particles.mrcs`` and ``.star``, atomically (see the module docstring).

    Parameters
    ----------
    dataset : ParticleDataset
        The particles to write.
    directory : str or os.PathLike
        The dataset folder, created with its parents if needed.
    overwrite : bool, optional
        Replace an existing non-empty ``directory`` as a whole.

    Returns
    -------
    pathlib.Path
        The folder.

    Raises
    ------
    cryoposes.errors.InputError
        ``directory`` is a file or not empty (without ``overwrite``), or bad metadata values.

    Examples
    --------
    >>> import tempfile
    >>> from cryoposes.particles import ParticleDataset, write_dataset
    >>> dataset = ParticleDataset(np.zeros((3, 16, 16)), np.tile([1.0, 0, 0, 0], (3, 1)))
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     print(sorted(path.name for path in write_dataset(dataset, f"{folder}/data").iterdir()))
    ['particles.mrcs', 'particles.star']
    """
    directory = Path(directory)
    _prepare_target(directory, overwrite)
    directory.parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(prefix=f".{directory.name}.tmp-", dir=directory.parent))
    try:
        with mrcfile.new(temporary / STACK_NAME) as stack:
            stack.set_data(dataset.images)
            stack.set_image_stack()
            stack.voxel_size = dataset.pixel_size
        starfile.write(_star_blocks(dataset), temporary / STAR_NAME, float_format=FLOAT_FORMAT)
        _prepare_target(directory, overwrite)  # still free after the (long) write?
        _swap_into_place(temporary, directory)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    return directory


def _star_blocks(dataset: ParticleDataset) -> dict:
    count = len(dataset)
    optics = {
        "rlnOpticsGroup": [1],
        "rlnOpticsGroupName": ["opticsGroup1"],
        "rlnImagePixelSize": [dataset.pixel_size],
        "rlnImageSize": [dataset.size],
        "rlnImageDimensionality": [2],
    }
    # The stack written is new, so the names are its own, whatever the dataset was read from.
    particles = {"rlnImageName": [f"{i + 1:06d}@{STACK_NAME}" for i in range(count)]}
    if dataset.has_poses:
        particles.update(euler_degrees(dataset.quaternions))
    particles["rlnOriginXAngst"] = -dataset.shifts[:, 0] * dataset.pixel_size
    particles["rlnOriginYAngst"] = -dataset.shifts[:, 1] * dataset.pixel_size
    if dataset.ctf is not None:
        values = dataset.ctf.per_particle(count)
        for name, column in CTF_PARTICLE_COLUMNS.items():
            particles[column] = values[name]
        for name, column in CTF_OPTICS_COLUMNS.items():
            if np.all(values[name] == values[name][0]):
                optics[column] = [values[name][0]]
            else:
                particles[column] = values[name]
    particles["rlnOpticsGroup"] = np.ones(count, dtype=int)
    blocks = {"optics": pd.DataFrame(optics), "particles": pd.DataFrame(particles)}
    metadata = metadata_block(dataset.metadata)
    if metadata:
        blocks["cryoposes"] = metadata
    return blocks


def write_relion_project(dataset: ParticleDataset, root, stacks: int = 3, optics_groups: int = 2, seed: int = 0,
                         overwrite: bool = False) -> tuple[Path, list[str]]:
    """Write a dataset as a RELION project holds freshly extracted particles, atomically.

    The images go to ``stacks`` stacks ``Extract/job012/Movies/micrograph001.mrcs`` …, and
    ``Extract/job012/particles.star`` lists them RELION 3.1+ style: an optics block of
    ``optics_groups`` groups (same pixel size and optics), and particles in shuffled rows with
    the columns RELION's extraction writes (coordinates, micrograph names, image names relative
    to the project folder, origins, defocus, optics group) and no poses and no cryoposes block:
    what ``cryoposes recover`` meets in practice. For examples, tests and teaching.

    Parameters
    ----------
    dataset : ParticleDataset
        The particles (their poses, if any, are not written).
    root : str or os.PathLike
        The project folder, created with its parents.
    stacks, optics_groups : int, optional
        How many stacks the images are spread over, and optics groups the particles belong to.
    seed : int, optional
        Seed of the row order, coordinates and group membership.
    overwrite : bool, optional
        Replace an existing non-empty ``root`` as a whole.

    Returns
    -------
    star_path : pathlib.Path
        The particles STAR file.
    names : list of str
        The ``rlnImageName`` each of the dataset's particles got, in the dataset's order (the
        file's rows are shuffled).

    Raises
    ------
    cryoposes.errors.InputError
        ``root`` is a file or not empty (without ``overwrite``), or fewer images than stacks.

    Examples
    --------
    >>> import tempfile
    >>> from cryoposes.particles import ParticleDataset, read_dataset, write_relion_project
    >>> dataset = ParticleDataset(np.random.default_rng(0).standard_normal((6, 16, 16)), None, pixel_size=2.0)
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     star, names = write_relion_project(dataset, f"{folder}/project")
    ...     back = read_dataset(star)
    >>> star.relative_to(star.parents[2]).as_posix(), back.has_poses, names[0]
    ('Extract/job012/particles.star', False, '000001@Extract/job012/Movies/micrograph001.mrcs')
    >>> bool(np.array_equal(back.images[back.image_names.index(names[4])], dataset.images[4]))
    True
    """
    if stacks < 1 or optics_groups < 1 or len(dataset) < stacks:
        raise InputError(f"need at least one stack and optics group and an image per stack, got {stacks} "
                         f"stacks, {optics_groups} groups for {len(dataset)} images")
    root = Path(root)
    _prepare_target(root, overwrite)
    root.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    count, job = len(dataset), Path("Extract/job012")
    stack_of = np.repeat(np.arange(stacks), np.diff(np.linspace(0, count, stacks + 1).round().astype(int)))
    index_in_stack = np.arange(count) - np.searchsorted(stack_of, stack_of)
    stack_names = [job / "Movies" / f"micrograph{k + 1:03d}.mrcs" for k in range(stacks)]
    blocks = _star_blocks(dataset)
    optics = pd.concat([blocks["optics"]] * optics_groups, ignore_index=True)
    optics["rlnOpticsGroup"] = np.arange(1, optics_groups + 1)
    optics["rlnOpticsGroupName"] = [f"opticsGroup{g}" for g in range(1, optics_groups + 1)]
    particles = pd.DataFrame({
        "rlnCoordinateX": rng.uniform(0, 4096, count).round(1),
        "rlnCoordinateY": rng.uniform(0, 4096, count).round(1),
        "rlnMicrographName": [f"MotionCorr/job002/Movies/micrograph{k + 1:03d}.mrc" for k in stack_of],
        "rlnImageName": [f"{i + 1:06d}@{stack_names[k].as_posix()}" for i, k in zip(index_in_stack, stack_of)],
    })
    for column in blocks["particles"].columns:
        if column not in ("rlnImageName", *ANGLE_COLUMNS):
            particles[column] = blocks["particles"][column].to_numpy()
    particles["rlnOpticsGroup"] = rng.integers(1, optics_groups + 1, count)
    order = rng.permutation(count)
    temporary = Path(tempfile.mkdtemp(prefix=f".{root.name}.tmp-", dir=root.parent))
    try:
        for k, name in enumerate(stack_names):
            (temporary / name).parent.mkdir(parents=True, exist_ok=True)
            with mrcfile.new(temporary / name) as stack:
                stack.set_data(dataset.images[stack_of == k])
                stack.set_image_stack()
                stack.voxel_size = dataset.pixel_size
        starfile.write({"optics": optics, "particles": particles.iloc[order].reset_index(drop=True)},
                       temporary / job / STAR_NAME, float_format=FLOAT_FORMAT)
        _prepare_target(root, overwrite)
        _swap_into_place(temporary, root)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    return root / job / STAR_NAME, list(particles["rlnImageName"])


def star_path_of(path) -> Path:
    """The particles STAR file of a dataset: ``path`` itself if it is a ``.star`` file, else
    ``path/particles.star``.

    Parameters
    ----------
    path : str or os.PathLike
        A dataset folder or a particle STAR file.

    Returns
    -------
    pathlib.Path

    Raises
    ------
    FileNotFoundError
        Neither a STAR file nor a folder holding ``particles.star``.
    """
    path = Path(path)
    if path.suffix == ".star":
        if not path.is_file():
            raise FileNotFoundError(f"no STAR file at {path}")
        return path
    if not path.is_dir():
        raise FileNotFoundError(f"no dataset folder or STAR file at {path}")
    if not (path / STAR_NAME).is_file():
        raise FileNotFoundError(f"no {STAR_NAME} in {path}")
    return path / STAR_NAME


def _per_particle(table: pd.DataFrame, optics, star_path):
    """A function giving a column per particle, from the particles block or from the row of the
    particle's optics group (RELION 3.1+: several groups, joined on ``rlnOpticsGroup``)."""
    optics = optics if isinstance(optics, pd.DataFrame) and len(optics) else None
    group_rows = None
    if optics is not None:
        if len(optics) > 1 or "rlnOpticsGroup" in table.columns:
            require(table, ("rlnOpticsGroup",), star_path)
            require(optics, ("rlnOpticsGroup",), f"{star_path} (optics block)")
            row_of_group = {int(group): i for i, group in enumerate(optics["rlnOpticsGroup"])}
            groups = table["rlnOpticsGroup"].to_numpy(dtype=int)
            unknown = sorted(set(groups) - set(row_of_group))
            if unknown:
                row = int(np.flatnonzero(groups == unknown[0])[0]) + 1
                raise InputError(f"{star_path}: row {row} names optics group {unknown[0]}, which the optics "
                                 f"block does not define (groups: {sorted(row_of_group)})")
            group_rows = np.array([row_of_group[g] for g in groups])
        else:
            group_rows = np.zeros(len(table), dtype=int)

    def column(name, default=None):
        if name in table.columns:
            values = table[name].to_numpy(dtype=float)
        elif optics is not None and name in optics.columns:
            values = optics[name].to_numpy(dtype=float)[group_rows]
        else:
            return default
        if not np.all(np.isfinite(values)):
            row = int(np.flatnonzero(~np.isfinite(values))[0]) + 1
            raise InputError(f"{star_path}: {name} is NaN or infinite at row {row}")
        return values

    return column


def _pixel_sizes(column, star_path, mixed_allowed: bool = False) -> np.ndarray:
    pixel_size = column("rlnImagePixelSize")
    if pixel_size is None:
        # RELION 3.0 and cryoSPARC's exports: detector pixel (µm) over magnification.
        detector, magnification = column("rlnDetectorPixelSize"), column("rlnMagnification")
        if detector is None or magnification is None:
            raise InputError(f"{star_path}: no pixel size (rlnImagePixelSize in the particles or optics block, "
                             "or rlnDetectorPixelSize with rlnMagnification)")
        pixel_size = detector * 1e4 / magnification
    if np.any(pixel_size <= 0):
        raise InputError(f"{star_path}: pixel sizes must be positive, got {pixel_size.min()} Å")
    if not mixed_allowed and not np.allclose(pixel_size, pixel_size[0], rtol=1e-4):
        sizes = ", ".join(f"{value:g}" for value in np.unique(pixel_size))
        raise InputError(f"{star_path}: particles of different pixel sizes ({sizes} Å): give the pixel size to "
                         "bring them all to (--pixel-size), or split them by optics group")
    return pixel_size


def read_dataset(path, pixel_size: float | None = None) -> ParticleDataset:
    """Read a particle dataset: a folder written by :func:`write_dataset`, or any RELION particle
    STAR file.

    RELION 3.1+ / 4 / 5 files (an optics block with one or several groups, each with its pixel
    size, voltage, spherical aberration and amplitude contrast) and older or cryoSPARC-exported
    ones (one table, pixel size as ``rlnImagePixelSize`` or ``rlnDetectorPixelSize`` /
    ``rlnMagnification``) are read. Images may come from many stacks (``.mrcs`` or ``.mrc``):
    ``rlnImageName`` is ``index@path``, the path absolute or relative to the STAR file's folder
    or to one of its parent folders (RELION's project folder), tried in that order. Only the
    images listed are read (stacks are memory-mapped). Poses are optional: without
    ``rlnAngleRot``/``Tilt``/``Psi`` the dataset has none (``quaternions`` is None), as particles
    fresh from picking. Origins (Å) become shifts in pixels, ``t = −origin / pixel_size``; a CTF is
    read when ``rlnDefocusU`` is there (``rlnDefocusV`` defaults to it, ``rlnDefocusAngle`` to 0).
    Optics groups of different pixel sizes are brought to one, ``pixel_size``
    (:func:`cryoposes.imaging.resample_images`; the box keeps its size).

    Parameters
    ----------
    path : str or os.PathLike
        A folder holding ``particles.star``, or a particle STAR file.
    pixel_size : float, optional
        Bring every particle to this pixel size in Å (needed when the optics groups differ).

    Returns
    -------
    ParticleDataset
        The particles in the STAR file's row order, ``image_names`` set, and the file's
        particles and optics tables kept (``table``, ``optics``), so that written STAR files
        keep every column.

    Raises
    ------
    FileNotFoundError
        No such folder or file, or a stack the STAR file names that does not exist (the message
        names the stack and the first row that uses it).
    cryoposes.errors.InputError
        Unreadable STAR file, an empty table, missing columns, NaN values, some but not all
        angle columns, an optics group not defined, different pixel or image sizes, an image
        index past a stack's end (named with its row).

    Examples
    --------
    >>> import tempfile
    >>> from cryoposes.particles import ParticleDataset, read_dataset, write_dataset
    >>> dataset = ParticleDataset(np.ones((3, 16, 16)), np.tile([1.0, 0, 0, 0], (3, 1)),
    ...                           shifts=np.full((3, 2), 1.5), pixel_size=2.5)
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     back = read_dataset(write_dataset(dataset, f"{folder}/data"))
    >>> back.images.shape, back.pixel_size, back.shifts[0].tolist(), back.image_names[0]
    ((3, 16, 16), 2.5, [1.5, 1.5], '000001@particles.mrcs')
    """
    star_path = star_path_of(path)
    blocks = read_star(star_path)
    table = particle_table(blocks, star_path).reset_index(drop=True)
    if len(table) == 0:
        raise InputError(f"{star_path}: the particles table is empty")
    require(table, ("rlnImageName",), star_path)
    present = [c for c in ANGLE_COLUMNS if c in table.columns]
    if present and len(present) < len(ANGLE_COLUMNS):
        require(table, ANGLE_COLUMNS, star_path)
    quaternions = quaternions_from(table, star_path) if present else None
    optics = blocks.get("optics")
    column = _per_particle(table, optics, star_path)
    pixel_sizes = _pixel_sizes(column, star_path, mixed_allowed=pixel_size is not None)
    target = float(pixel_sizes[0]) if pixel_size is None else float(pixel_size)
    if not np.isfinite(target) or target <= 0:
        raise InputError(f"the pixel size to bring the particles to must be a positive number of Å, got {pixel_size}")
    shifts = np.zeros((len(table), 2))
    for axis, name in enumerate(ORIGIN_COLUMNS):
        origin = column(name)
        if origin is not None:
            shifts[:, axis] = -origin / target
    ctf = None
    if "rlnDefocusU" in table.columns:
        defocus_u = column("rlnDefocusU")
        values = {"defocus_u": defocus_u, "defocus_v": column("rlnDefocusV", defocus_u),
                  "defocus_angle": column("rlnDefocusAngle", np.zeros(len(table)))}
        for name, c in CTF_OPTICS_COLUMNS.items():
            value = column(c)
            if value is None:
                raise InputError(f"{star_path}: defocus columns without {c}")
            values[name] = value
        ctf = CTFParameters(**values)
    images = _read_images(star_path, table["rlnImageName"])
    if not np.allclose(pixel_sizes, target, rtol=1e-6):
        images = imaging.resample_images(images, pixel_sizes, target)
    return ParticleDataset(images, quaternions, shifts, target, ctf, metadata_from(blocks),
                           list(table["rlnImageName"].astype(str)), table=table,
                           optics=optics if isinstance(optics, pd.DataFrame) else None)


def _stack_path(star_path: Path, file: str, row: int) -> Path:
    """Where a stack named in ``star_path`` is: absolute, or relative to the STAR file's folder
    or one of its parents (RELION's names are relative to the project folder)."""
    named = Path(file)
    if named.is_absolute():
        candidates = [named]
    else:
        folder = star_path.resolve().parent
        candidates = [base / named for base in (folder, *folder.parents)]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{star_path}: row {row} names the stack {file}, which is not beside the STAR file "
                            "nor in any folder above it")


def _read_images(star_path: Path, names: pd.Series) -> np.ndarray:
    names = names.astype(str).to_numpy()
    indices = np.empty(len(names), dtype=np.int64)
    files = np.empty(len(names), dtype=object)
    for row, name in enumerate(names):
        index, _, file = name.partition("@")
        if not file or not index.isdigit() or int(index) < 1:
            raise InputError(f"{star_path}: row {row + 1}: rlnImageName {name!r} is not of the form "
                             "000001@stack.mrcs")
        indices[row], files[row] = int(index) - 1, file
    images, size = None, None
    for file in dict.fromkeys(files):  # each stack once, in order of first use
        rows = np.flatnonzero(files == file)
        stack_path = _stack_path(star_path, file, int(rows[0]) + 1)
        try:
            with mrcfile.mmap(stack_path, mode="r", permissive=False) as stack:
                data = stack.data if stack.data.ndim == 3 else stack.data[None]
                past = rows[indices[rows] >= len(data)]
                if len(past):
                    raise InputError(f"{star_path}: row {past[0] + 1} asks for image {indices[past[0]] + 1} of "
                                     f"{file}, which holds {len(data)}")
                if size is None:
                    size = data.shape[1:]
                    images = np.empty((len(names), *size), dtype=np.float32)
                if data.shape[1:] != size or size[0] != size[1]:
                    raise InputError(f"{star_path}: images of {file} are {data.shape[2]}×{data.shape[1]} px, "
                                     f"the first stack's {size[1]}×{size[0]} px (square images of one size only)")
                images[rows] = data[indices[rows]]
        except ValueError as error:  # mrcfile's complaint about a corrupt or non-MRC file
            if isinstance(error, InputError):
                raise
            raise InputError(f"{stack_path}: not a readable MRC stack ({error})") from error
    return images
