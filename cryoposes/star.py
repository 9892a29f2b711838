"""RELION STAR tables: the particles table, poses (Euler angles in degrees), image names, origins.

The particles block of a RELION 3.1+ file (an optics block and extra columns are ignored,
columns may come in any order) or the only table of an older or pose-only file is read;
poses are RELION's ``rlnAngleRot``/``rlnAngleTilt``/``rlnAnglePsi`` in degrees, in the
convention of :mod:`cryoposes.rotations`. Origins ``rlnOriginXAngst``/``rlnOriginYAngst`` point
back to the centre, so a particle's shift is their negative. What cryoposes adds about how a
file was made (the protein, the seed, which gauge poses are in …) goes to a ``data_cryoposes``
block of ``cryoposes_``-prefixed keys, which RELION ignores.

:func:`write_poses` and :func:`read_pose_table` are the pose files of ``cryoposes recover``,
``evaluate`` and ``reconstruct``; :mod:`cryoposes.particles` reads and writes whole datasets.
Writing is atomic.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import starfile

from cryoposes.errors import InputError
from cryoposes.rotations import euler_to_quaternion, quaternion_to_euler

__all__ = ["ANGLE_COLUMNS", "ORIGIN_COLUMNS", "write_poses", "read_poses", "PoseTable", "read_pose_table"]


ANGLE_COLUMNS = ("rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi")


ORIGIN_COLUMNS = ("rlnOriginXAngst", "rlnOriginYAngst")


METADATA_PREFIX = "cryoposes_"


FLOAT_FORMAT = "%.10g"


def euler_degrees(quaternions) -> dict[str, np.ndarray]:
    return dict(zip(ANGLE_COLUMNS, np.degrees(quaternion_to_euler(quaternions))))


def quaternions_from(table: pd.DataFrame, source) -> np.ndarray:
    require(table, ANGLE_COLUMNS, source)
    angles = table[list(ANGLE_COLUMNS)].to_numpy(dtype=float)
    if not np.all(np.isfinite(angles)):
        rows = np.flatnonzero(~np.all(np.isfinite(angles), axis=1))
        raise InputError(f"{source}: Euler angles are NaN or infinite in {len(rows)} row(s), first at row {rows[0] + 1}")
    return euler_to_quaternion(*np.radians(angles.T))


def require(table: pd.DataFrame, columns, source):
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise InputError(f"{source}: missing column(s) {', '.join(missing)} (found: {', '.join(table.columns)})")


def read_star(path) -> dict[str, pd.DataFrame | dict]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no STAR file at {path}")
    try:
        blocks = starfile.read(path, always_dict=True)
    except Exception as error:  # starfile raises assorted parser errors
        raise InputError(f"{path}: not a readable STAR file ({error})") from error
    if not blocks:
        raise InputError(f"{path}: no data blocks")
    return blocks


def particle_table(blocks: dict, source) -> pd.DataFrame:
    """The particles block of a RELION 3.1 file, or the only table of an older/pose-only one."""
    if isinstance(blocks.get("particles"), pd.DataFrame):
        return blocks["particles"]
    tables = [block for block in blocks.values() if isinstance(block, pd.DataFrame)]
    for table in tables:
        if ANGLE_COLUMNS[0] in table.columns:
            return table
    if len(tables) == 1:
        return tables[0]
    raise InputError(f"{source}: no particles table (blocks: {', '.join(blocks)})")


def metadata_block(metadata: dict) -> dict:
    """``metadata`` as the key-value pairs of a ``data_cryoposes`` block (None values left out)."""
    block = {}
    for key, value in metadata.items():
        if value is None:
            continue  # absent means None
        if not isinstance(value, (str, int, float, bool, np.integer, np.floating, np.bool_)):
            raise InputError(f"metadata {key!r} must be a string, number or boolean, got {type(value).__name__}")
        block[METADATA_PREFIX + key] = value.item() if isinstance(value, np.generic) else value
    return block


def metadata_from(blocks: dict) -> dict:
    """The ``data_cryoposes`` block of :func:`read_star`'s blocks as a dict, prefix removed."""
    metadata = {}
    extra = blocks.get("cryoposes")
    if isinstance(extra, dict):
        for key, value in extra.items():
            if key.startswith(METADATA_PREFIX):
                # STAR has no booleans: they come back as the strings "True" and "False".
                if isinstance(value, str) and value in ("True", "False"):
                    value = value == "True"
                metadata[key[len(METADATA_PREFIX):]] = value
    return metadata


def write_poses(path, quaternions, image_names=None, metadata: dict | None = None, shifts=None, table=None,
                optics=None) -> Path:
    """Write poses to a RELION STAR file (``rlnAngleRot``/``Tilt``/``Psi`` in degrees), atomically.

    Parameters
    ----------
    path : str or os.PathLike
        The STAR file; its folder is created if needed, an existing file replaced.
    quaternions : array_like
        (N, 4) unit quaternions.
    image_names : sequence of str, optional
        The N particles' ``rlnImageName`` (:meth:`ParticleDataset.names`), written too.
    metadata : dict, optional
        How the poses were made (str, int, float or bool values, e.g. which gauge they are in),
        written to a ``data_cryoposes`` block that RELION ignores.
    shifts : array_like, optional
        (N, 2) particle shifts ``(t_x, t_y)`` in Å, written as RELION's origins
        ``rlnOriginXAngst``/``rlnOriginYAngst`` (their negatives), as :class:`PoseTable` reads them.
    table : pandas.DataFrame, optional
        (N rows) the particles' rows of the STAR file they were read from
        (:attr:`cryoposes.particles.ParticleDataset.table`): written with every column and in
        its order, only the pose columns (and origins, with ``shifts``) added or replaced, so
        RELION continues from the file. ``image_names`` is then not needed.
    optics : pandas.DataFrame, optional
        The optics block to write with ``table``.

    Returns
    -------
    pathlib.Path
        The file written.

    Raises
    ------
    cryoposes.errors.InputError
        Quaternions not shaped (N, 4) or not finite, a count of names other than N, shifts not
        shaped (N, 2) or not finite.

    Examples
    --------
    >>> import tempfile
    >>> from cryoposes.star import read_pose_table, write_poses
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = write_poses(f"{folder}/poses.star", [[1.0, 0, 0, 0], [0, 0, 0, 1.0]], ["1@a.mrcs", "2@a.mrcs"])
    ...     table = read_pose_table(path)
    >>> table.quaternions.shape, table.names
    ((2, 4), ['1@a.mrcs', '2@a.mrcs'])
    """
    path = Path(path)
    quaternions = np.asarray(quaternions, dtype=float)
    if quaternions.ndim != 2 or quaternions.shape[1] != 4:
        raise InputError(f"quaternions must be shaped (N, 4), got {quaternions.shape}")
    if not np.all(np.isfinite(quaternions)):
        raise InputError("quaternions contain NaN or infinite values")
    if table is not None:
        if len(table) != len(quaternions):
            raise InputError(f"a STAR table of {len(table)} rows for {len(quaternions)} poses")
        columns = table.reset_index(drop=True).copy()
    else:
        columns = pd.DataFrame(index=pd.RangeIndex(len(quaternions)))
        if image_names is not None:
            if len(image_names) != len(quaternions):
                raise InputError(f"{len(image_names)} image names for {len(quaternions)} poses")
            columns["rlnImageName"] = list(image_names)
    for name, values in euler_degrees(quaternions).items():
        columns[name] = values
    if shifts is not None:
        shifts = np.asarray(shifts, dtype=float)
        if shifts.shape != (len(quaternions), 2) or not np.all(np.isfinite(shifts)):
            raise InputError(f"shifts must be finite and shaped ({len(quaternions)}, 2), got {shifts.shape}")
        for name, values in zip(ORIGIN_COLUMNS, -shifts.T):
            columns[name] = values
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    os.close(handle)
    try:
        blocks = {"particles": columns}
        if table is not None and optics is not None:
            blocks = {"optics": optics, "particles": columns}
        if metadata:
            blocks["cryoposes"] = metadata_block(metadata)
        starfile.write(blocks, temporary, float_format=FLOAT_FORMAT)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def read_poses(path) -> np.ndarray:
    """Poses from a STAR file with ``rlnAngleRot``/``Tilt``/``Psi`` in degrees.

    Parameters
    ----------
    path : str or os.PathLike
        A pose file of :func:`write_poses`, a dataset's ``particles.star`` or any RELION
        particle STAR file.

    Returns
    -------
    numpy.ndarray
        (N, 4) unit quaternions, in the file's row order.

    Raises
    ------
    InputError
        NaN angles, missing columns, an unreadable file (the message names it).
    """
    return read_pose_table(path).quaternions


@dataclass(frozen=True)
class PoseTable:
    """The poses of a STAR file, as :func:`read_pose_table` reads them.

    Attributes
    ----------
    quaternions : numpy.ndarray
        (N, 4) unit quaternions, in the file's row order.
    names : list of str or None
        The N image names (``rlnImageName``), or None without that column.
    shifts : numpy.ndarray or None
        (N, 2) particle shifts ``(t_x, t_y)`` in Å (RELION's origins, negated), or None when the
        file has no ``rlnOriginXAngst``/``rlnOriginYAngst``.
    metadata : dict
        The ``data_cryoposes`` block (how the poses were made, e.g. ``gauge``); empty without one.
    """

    quaternions: np.ndarray
    names: list | None
    shifts: np.ndarray | None
    metadata: dict = field(default_factory=dict)


def read_pose_table(path) -> PoseTable:
    """Poses, particle names and shifts from a STAR file, in any RELION layout.

    Reads the particles block of a RELION 3.1+ file (an optics block and extra columns are
    ignored, columns may come in any order) or the only table of an older or pose-only file.

    Parameters
    ----------
    path : str or os.PathLike
        The STAR file.

    Returns
    -------
    PoseTable

    Raises
    ------
    InputError
        NaN angles, missing angle columns, an unreadable file (the message names it).

    Examples
    --------
    >>> import os, tempfile
    >>> from cryoposes import rotations
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = write_poses(os.path.join(folder, "poses.star"), rotations.random_quaternions(3, 0),
    ...                        image_names=["000001@a.mrcs", "000002@a.mrcs", "000003@a.mrcs"])
    ...     table = read_pose_table(path)
    >>> table.quaternions.shape, table.names[0], table.shifts
    ((3, 4), '000001@a.mrcs', None)
    """
    blocks = read_star(path)
    table = particle_table(blocks, path)
    names = list(table["rlnImageName"].astype(str)) if "rlnImageName" in table.columns else None
    shifts = None
    if all(column in table.columns for column in ORIGIN_COLUMNS):
        shifts = -table[list(ORIGIN_COLUMNS)].to_numpy(dtype=float)
        if not np.all(np.isfinite(shifts)):
            raise InputError(f"{path}: origins are NaN or infinite")
    return PoseTable(quaternions_from(table, path), names, shifts, metadata_from(blocks))
