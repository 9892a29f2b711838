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

Writing is atomic: everything goes to a temporary folder beside the target, which is renamed into
place at the end, so a failure leaves nothing half-written. An existing non-empty folder is
refused unless ``overwrite=True``, which replaces it as a whole.

The STAR tables themselves (poses, names, origins, the ``data_cryoposes`` block) are read and
written by :mod:`cryoposes.star`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import mrcfile
import numpy as np
import pandas as pd
import starfile

from cryoposes.ctf import CTFParameters
from cryoposes.errors import InputError
from cryoposes.star import (
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
    """Particle images with their true poses, shifts and CTF parameters.

    Attributes
    ----------
    images : numpy.ndarray
        (N, L, L) float32 images, indexed ``[y, x]``.
    quaternions : numpy.ndarray
        (N, 4) poses as unit quaternions (:mod:`cryoposes.rotations`).
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

    def __post_init__(self):
        self.images = np.asarray(self.images, dtype=np.float32)
        if self.images.ndim != 3 or self.images.shape[1] != self.images.shape[2]:
            raise InputError(f"images must be shaped (N, L, L), got {self.images.shape}")
        count = len(self.images)
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
        for name, array in (("images", self.images), ("quaternions", self.quaternions), ("shifts", self.shifts)):
            if not np.all(np.isfinite(array)):
                raise InputError(f"{name} contain NaN or infinite values")

    def __len__(self) -> int:
        return len(self.images)

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
            ctf = CTFParameters(**{k: v[indices] for k, v in self.ctf.per_particle(len(self)).items()})
        names = None if self.image_names is None else [self.image_names[i] for i in indices]
        return ParticleDataset(self.images[indices], self.quaternions[indices], self.shifts[indices],
                               self.pixel_size, ctf, dict(self.metadata), names)

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


def read_dataset(directory) -> ParticleDataset:
    """Read a folder written by :func:`write_dataset`.

    Or any RELION particle stack of one ``.mrcs`` file next to a ``particles.star`` with one
    optics group. Origins (Å) become shifts in pixels, ``t = −origin / pixel_size``.

    Parameters
    ----------
    directory : str or os.PathLike
        The folder holding ``particles.star``.

    Returns
    -------
    ParticleDataset
        The particles in the STAR file's row order, ``image_names`` set.

    Raises
    ------
    FileNotFoundError
        No such folder, no ``particles.star`` in it, or no stack where the STAR file says.
    cryoposes.errors.InputError
        Unreadable STAR file, missing columns, NaN angles, several stacks or optics groups.

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
    directory = Path(directory)
    star_path = directory / STAR_NAME
    if not directory.is_dir():
        raise FileNotFoundError(f"no dataset folder at {directory}")
    blocks = read_star(star_path)
    table = particle_table(blocks, star_path)
    require(table, ("rlnImageName",), star_path)
    quaternions = quaternions_from(table, star_path)
    optics = blocks.get("optics")
    optics_row = optics.iloc[0] if isinstance(optics, pd.DataFrame) and len(optics) else pd.Series(dtype=object)
    if isinstance(optics, pd.DataFrame) and len(optics) > 1:
        raise InputError(f"{star_path}: several optics groups are not supported")

    def column(name, default=None):
        if name in table.columns:
            return table[name].to_numpy(dtype=float)
        if name in optics_row.index:
            return np.full(len(table), float(optics_row[name]))
        return default

    pixel_size = column("rlnImagePixelSize")
    if pixel_size is None:
        raise InputError(f"{star_path}: missing column rlnImagePixelSize (particles or optics block)")
    shifts = np.zeros((len(table), 2))
    for axis, name in enumerate(ORIGIN_COLUMNS):
        origin = column(name)
        if origin is not None:
            shifts[:, axis] = -origin / pixel_size
    ctf = None
    if all(c in table.columns for c in CTF_PARTICLE_COLUMNS.values()):
        values = {name: column(c) for name, c in CTF_PARTICLE_COLUMNS.items()}
        for name, c in CTF_OPTICS_COLUMNS.items():
            value = column(c)
            if value is None:
                raise InputError(f"{star_path}: defocus columns without {c}")
            values[name] = value
        ctf = CTFParameters(**values)

    images = _read_images(directory, table["rlnImageName"], star_path)
    metadata = metadata_from(blocks)
    if not np.allclose(pixel_size, pixel_size[0]):
        raise InputError(f"{star_path}: particles with different pixel sizes are not supported")
    return ParticleDataset(images, quaternions, shifts, float(pixel_size[0]), ctf, metadata,
                           list(table["rlnImageName"].astype(str)))


def _read_images(directory: Path, names: pd.Series, source) -> np.ndarray:
    indices, files = [], set()
    for name in names.astype(str):
        index, _, file = name.partition("@")
        if not file or not index.isdigit() or int(index) < 1:
            raise InputError(f"{source}: rlnImageName {name!r} is not of the form 000001@stack.mrcs")
        indices.append(int(index) - 1)
        files.add(file)
    if len(files) != 1:
        raise InputError(f"{source}: images come from {len(files)} stacks; one is supported")
    stack_path = directory / files.pop()
    if not stack_path.is_file():
        raise FileNotFoundError(f"{source} names the stack {stack_path}, which does not exist")
    with mrcfile.open(stack_path, permissive=False) as stack:
        data = np.asarray(stack.data, dtype=np.float32)
    if data.ndim == 2:
        data = data[None]
    if max(indices) >= len(data):
        raise InputError(f"{source}: image {max(indices) + 1} requested but {stack_path} holds {len(data)}")
    return data[np.asarray(indices)]


