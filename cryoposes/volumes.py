"""Density maps: loading, validation, boxing, resampling and maps from atomic models.

A :class:`Volume` holds a float32 array indexed ``[z, y, x]`` and its voxel size in Å. The
projector rotates about the voxel ``L // 2`` of a cubic box of side ``L``; :func:`load_protein`
returns such a box, large enough that no density leaves it under any rotation.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass

import numpy as np
import scipy.fft
import scipy.ndimage

from cryoposes import data
from cryoposes.errors import InputError

__all__ = [
    "Volume",
    "load_map",
    "save_map",
    "save_maps",
    "validate",
    "pad_to_cube",
    "resample",
    "normalize",
    "rotation_safe_size",
    "map_from_model",
    "load_protein",
]

#: Gaussian width per unit of resolution used to blur models, as UCSF Chimera's ``molmap``
#: (sigma = resolution / (π·√2)); the 5j0n map and the 2021 paper's maps were made with it.
MOLMAP_SIGMA_FACTOR = 1.0 / (np.pi * np.sqrt(2.0))
#: Default resolution of maps made from models, in voxels. At 2 voxels (Nyquist) a sixth of the
#: energy of 5a1a at 64³ lies outside the Nyquist sphere that the projector keeps; at 3 voxels
#: the blur leaves about 1% of the amplitude at Nyquist.
DEFAULT_RESOLUTION_VOXELS = 3.0


@dataclass(frozen=True)
class Volume:
    """A 3-D density map and its voxel size (immutable).

    The projector needs a cube of side ``L`` and rotates about the voxel ``L // 2``.

    Attributes
    ----------
    data : numpy.ndarray
        (L_z, L_y, L_x) density, float32, indexed ``[z, y, x]``.
    voxel_size : float
        Sampling step in Å.

    Examples
    --------
    >>> import numpy as np
    >>> from cryoposes.volumes import Volume
    >>> volume = Volume(np.zeros((8, 8, 8), dtype=np.float32), voxel_size=2.0)
    >>> volume.shape, volume.box
    ((8, 8, 8), 8)
    """

    data: np.ndarray
    voxel_size: float

    @property
    def shape(self):
        """Shape of ``data``, ``(L_z, L_y, L_x)``."""
        return self.data.shape

    @property
    def box(self) -> int:
        """Side of the cubic box (ValueError if the volume is not cubic)."""
        if len(set(self.data.shape)) != 1:
            raise ValueError(f"volume is not cubic: shape {self.data.shape}; use pad_to_cube first")
        return self.data.shape[0]


def validate(array, name: str = "volume") -> np.ndarray:
    """Return ``array`` as float32 after checking it is a finite, non-constant 3-D array.

    Parameters
    ----------
    array : array_like
        Candidate volume.
    name : str, optional
        Name used in the error messages (a file name, say).

    Returns
    -------
    numpy.ndarray
        ``array`` as float32, same shape.

    Raises
    ------
    cryoposes.errors.InputError
        If ``array`` is not 3-D and numeric, has a side under 2, NaN or infinite values, or is
        constant (a subclass of ValueError).

    Examples
    --------
    >>> import numpy as np
    >>> from cryoposes.volumes import validate
    >>> validate(np.arange(8).reshape(2, 2, 2)).dtype
    dtype('float32')
    """
    array = np.asarray(array)
    if array.ndim != 3:
        raise InputError(f"{name} must be 3-D, got {array.ndim} dimension(s) with shape {array.shape}")
    if min(array.shape) < 2:
        raise InputError(f"{name} has a degenerate shape {array.shape}")
    if not np.issubdtype(array.dtype, np.number):
        raise InputError(f"{name} has non-numeric type {array.dtype}")
    array = array.astype(np.float32)
    if not np.all(np.isfinite(array)):
        raise InputError(f"{name} contains {np.count_nonzero(~np.isfinite(array))} NaN or infinite voxels")
    if np.ptp(array) == 0:
        raise InputError(f"{name} is constant (every voxel is {array.flat[0]}): there is nothing to project")
    return array


def _check_voxel_size(voxel_size, name):
    if not np.isfinite(voxel_size) or voxel_size <= 0:
        raise InputError(f"{name}: voxel size must be a positive number of Å, got {voxel_size}")
    return float(voxel_size)


def load_map(path) -> Volume:
    """Read an MRC/CCP4 map (``.mrc``, ``.map``) with mrcfile, axes put in ``[z, y, x]`` order.

    Parameters
    ----------
    path : str or os.PathLike
        The map file.

    Returns
    -------
    Volume
        The validated float32 density and the header's voxel size in Å.

    Raises
    ------
    FileNotFoundError
        If there is no file at ``path``.
    cryoposes.errors.InputError
        If the file is not a readable map or its data fail :func:`validate`.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from cryoposes.volumes import Volume, load_map, save_map
    >>> density = np.random.default_rng(0).random((4, 6, 8), dtype=np.float32)
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     save_map(Volume(density, 1.5), os.path.join(folder, "map.mrc"))
    ...     volume = load_map(os.path.join(folder, "map.mrc"))
    >>> volume.shape, volume.voxel_size, bool(np.array_equal(volume.data, density))
    ((4, 6, 8), 1.5, True)
    """
    import mrcfile

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no map file at {path}")
    try:
        with mrcfile.open(path, mode="r", permissive=False) as mrc:
            array = np.array(mrc.data)
            header = mrc.header
            voxel = float(mrc.voxel_size.x)
            axes = (int(header.maps), int(header.mapr), int(header.mapc))
    except Exception as error:  # mrcfile raises ValueError, OSError, struct errors...
        raise InputError(f"cannot read {path} as an MRC map: {error}") from error
    if array is None:
        raise InputError(f"{path} holds no data")
    array = validate(array, name=path)
    if sorted(axes) == [1, 2, 3]:
        # Array axes follow (sections, rows, columns) = (maps, mapr, mapc); 1 = x, 2 = y, 3 = z.
        array = np.transpose(array, [axes.index(axis) for axis in (3, 2, 1)])
    return Volume(np.ascontiguousarray(array), _check_voxel_size(voxel, path))


def save_map(volume: Volume, path) -> None:
    """Write ``volume`` to an MRC file, replacing any file there (see :func:`save_maps`).

    Parameters
    ----------
    volume : Volume
        The density, written as float32 in ``[z, y, x]`` order.
    path : str or os.PathLike
        The file to write (``.mrc`` or ``.map``).

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from cryoposes.volumes import Volume, save_map
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     save_map(Volume(np.ones((4, 4, 4), dtype=np.float32), 2.0), os.path.join(folder, "map.mrc"))
    ...     print(os.listdir(folder))
    ['map.mrc']
    """
    save_maps({path: volume})


def save_maps(maps: dict) -> None:
    """Write several maps as MRC files, all or none.

    Each map is written as RELION writes its reconstructions and ChimeraX reads them: float32,
    axes x, y, z (columns, rows, sections), the voxel size in the header and the origin at 0, so
    the box's voxel ``L // 2`` is the molecule's centre. Every file is first written beside its
    target and renamed into place once all are complete, so a failure leaves no file half written.

    Parameters
    ----------
    maps : dict
        Path (str or os.PathLike) → :class:`Volume`.
    """
    import mrcfile

    written = {}
    try:
        for path, volume in maps.items():
            path = os.fspath(path)
            handle, temporary = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp",
                                                 dir=os.path.dirname(os.path.abspath(path)))
            os.close(handle)
            written[temporary] = path
            with mrcfile.new(temporary, overwrite=True) as mrc:
                mrc.set_data(np.ascontiguousarray(volume.data, dtype=np.float32))
                mrc.voxel_size = volume.voxel_size
                mrc.header.origin = (0.0, 0.0, 0.0)
        for temporary, path in written.items():
            os.replace(temporary, path)
    except BaseException:
        for temporary in written:
            if os.path.exists(temporary):
                os.remove(temporary)
        raise


def rotation_safe_size(volume: Volume) -> int:
    """Side of the cube that keeps the whole array inside under any rotation about its centre.

    That is the array's diagonal (the 2021 paper's detector size, 116–117 px for 5j0n).

    Parameters
    ----------
    volume : Volume
        Any shape.

    Returns
    -------
    int
        The diagonal in voxels, rounded up.

    Examples
    --------
    >>> import numpy as np
    >>> from cryoposes.volumes import Volume, rotation_safe_size
    >>> rotation_safe_size(Volume(np.ones((3, 4, 12), dtype=np.float32), 1.0))
    13
    """
    return int(np.ceil(np.sqrt(np.sum(np.square(volume.shape)))))


def pad_to_cube(volume: Volume, size: int | None = None) -> Volume:
    """Pad ``volume`` with zeros, centred, to a cube of side ``size``.

    Parameters
    ----------
    volume : Volume
        Any shape.
    size : int, optional
        Side of the cube (default: the volume's largest side).

    Returns
    -------
    Volume
        (size, size, size), same voxel size.

    Raises
    ------
    ValueError
        If ``size`` is smaller than a side of the volume.

    Examples
    --------
    >>> import numpy as np
    >>> from cryoposes.volumes import Volume, pad_to_cube
    >>> volume = Volume(np.ones((3, 4, 12), dtype=np.float32), 1.0)
    >>> pad_to_cube(volume).shape, pad_to_cube(volume, 13).shape
    ((12, 12, 12), (13, 13, 13))
    """
    shape = np.array(volume.shape)
    size = int(shape.max() if size is None else size)
    if size < shape.max():
        raise ValueError(f"cannot pad a volume of shape {tuple(shape)} to a smaller cube of side {size}")
    before = (size - shape) // 2
    after = size - shape - before
    padded = np.pad(volume.data, list(zip(before, after)), mode="constant")
    return Volume(padded, volume.voxel_size)


def resample(volume: Volume, box: int) -> Volume:
    """Resample a cubic volume to a cube of side ``box`` over the same field of view.

    Crops or zero-pads its Fourier transform (band-limited, no aliasing); the voxel size scales
    by ``L / box`` and the mean voxel value is kept.

    Parameters
    ----------
    volume : Volume
        (L, L, L).
    box : int
        New side in voxels.

    Returns
    -------
    Volume
        (box, box, box) float32, voxel size ``voxel_size · L / box``.

    Raises
    ------
    ValueError
        If ``box`` is under 2 or the volume is not cubic.

    Examples
    --------
    >>> import numpy as np
    >>> from cryoposes.volumes import Volume, resample
    >>> finer = resample(Volume(np.ones((8, 8, 8), dtype=np.float32), 1.0), 16)
    >>> finer.shape, finer.voxel_size, round(float(finer.data.mean()), 3)
    ((16, 16, 16), 0.5, 1.0)
    """
    box = int(box)
    if box < 2:
        raise ValueError(f"box must be at least 2 voxels, got {box}")
    size = volume.box
    if box == size:
        return volume
    spectrum = scipy.fft.fftshift(scipy.fft.fftn(volume.data.astype(np.float64)))
    centre_old, centre_new = size // 2, box // 2
    keep = min(size, box)
    old = slice(centre_old - keep // 2, centre_old - keep // 2 + keep)
    new = slice(centre_new - keep // 2, centre_new - keep // 2 + keep)
    resized = np.zeros((box, box, box), dtype=complex)
    resized[new, new, new] = spectrum[old, old, old]
    # The inverse FFT divides by box³ instead of size³; rescale so voxel values keep their mean.
    data_out = scipy.fft.ifftn(scipy.fft.ifftshift(resized)).real * (box / size) ** 3
    return Volume(data_out.astype(np.float32), volume.voxel_size * size / box)


def normalize(volume: Volume) -> Volume:
    """Scale the density so that its largest absolute value is 1.

    Projections are rescaled later anyway; this keeps numbers comparable between proteins.

    Parameters
    ----------
    volume : Volume
        Any shape.

    Returns
    -------
    Volume
        float32, same voxel size.

    Raises
    ------
    ValueError
        If the volume is all zeros.

    Examples
    --------
    >>> import numpy as np
    >>> from cryoposes.volumes import Volume, normalize
    >>> float(normalize(Volume(np.full((2, 2, 2), 4.0), 1.0)).data.max())
    1.0
    """
    peak = float(np.max(np.abs(volume.data)))
    if peak == 0:
        raise ValueError("volume is empty (all zeros)")
    return Volume((volume.data / peak).astype(np.float32), volume.voxel_size)


def map_from_model(path, box: int, resolution: float | None = None,
                   voxel_size: float | None = None) -> Volume:
    """Density map of an atomic model (mmCIF or PDB) in a cube of side ``box`` voxels.

    The model (waters and hydrogens removed) is centred on its bounding sphere, at voxel
    ``box // 2``. Without ``voxel_size``, the sphere plus three blur widths fits the box, so no
    density leaves it under rotation or wraps round the periodic grid. Electron scattering
    factors (gemmi's ``DensityCalculatorE``) are summed on the grid, then blurred with a Gaussian
    as Chimera's ``molmap``.

    Parameters
    ----------
    path : str or os.PathLike
        The model file.
    box : int
        Side of the box in voxels, at least 8.
    resolution : float, optional
        Blur in Å (default: ``DEFAULT_RESOLUTION_VOXELS`` voxels).
    voxel_size : float, optional
        Voxel size in Å (default: the smallest that fits).

    Returns
    -------
    Volume
        (box, box, box) float32.

    Raises
    ------
    FileNotFoundError
        If there is no file at ``path``.
    cryoposes.errors.InputError
        If the file is not a readable model, has no atoms, or (without ``voxel_size``) has all
        its atoms at one point.
    ValueError
        If ``box`` is under 8 or the model does not fit the box.

    Examples
    --------
    >>> from cryoposes.data import protein_path
    >>> from cryoposes.volumes import map_from_model
    >>> volume = map_from_model(protein_path("8qjx", download=False), box=16)
    >>> volume.shape, round(volume.voxel_size, 1)
    ((16, 16, 16), 14.8)
    """
    import gemmi

    box = int(box)
    if box < 8:
        raise ValueError(f"box must be at least 8 voxels, got {box}")
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no atomic model file at {path}")
    try:
        structure = gemmi.read_structure(path)
    except Exception as error:
        raise InputError(f"cannot read {path} as an atomic model (mmCIF/PDB): {error}") from error
    structure.setup_entities()
    structure.remove_waters()
    structure.remove_hydrogens()
    if len(structure) == 0:
        raise InputError(f"{path} contains no model")
    model = structure[0]
    positions = np.array([atom.pos.tolist() for chain in model for residue in chain for atom in residue])
    if len(positions) == 0:
        raise InputError(f"{path} contains no atoms")
    centre = (positions.max(axis=0) + positions.min(axis=0)) / 2
    radius = float(np.max(np.linalg.norm(positions - centre, axis=1)))
    if radius == 0 and voxel_size is None:
        raise InputError(f"{path} has all its {len(positions)} atom(s) at one point: no extent to size the box by")
    if voxel_size is None:
        # Margin on each side: three blur widths (the Gaussian's reach) plus two voxels.
        if resolution is None:
            margin_voxels = 3 * DEFAULT_RESOLUTION_VOXELS * MOLMAP_SIGMA_FACTOR + 2
            voxel_size = 2 * radius / (box - 2 * margin_voxels)
        else:
            voxel_size = (2 * radius + 6 * MOLMAP_SIGMA_FACTOR * resolution) / (box - 4)
    voxel_size = _check_voxel_size(voxel_size, "map_from_model")
    resolution = DEFAULT_RESOLUTION_VOXELS * voxel_size if resolution is None else float(resolution)
    if resolution <= 0:
        raise ValueError(f"resolution must be positive, got {resolution}")
    side = box * voxel_size
    if 2 * radius > side:
        raise ValueError(
            f"the model (diameter {2 * radius:.1f} Å) does not fit a box of {box} voxels of {voxel_size:.3f} Å"
        )

    # Move the model so its centre lands on voxel box // 2 of a periodic cubic cell.
    shift = gemmi.Position(*(box // 2 * voxel_size - centre))
    for chain in model:
        for residue in chain:
            for atom in residue:
                atom.pos = atom.pos + shift
    structure.cell = gemmi.UnitCell(side, side, side, 90, 90, 90)
    structure.spacegroup_hm = "P 1"
    calculator = gemmi.DensityCalculatorE()
    calculator.d_min = 2.0 * voxel_size
    calculator.set_grid_cell_and_spacegroup(structure)
    calculator.grid.set_size(box, box, box)  # put_model_density_on_grid would pick its own size
    calculator.grid.fill(0.0)
    calculator.add_model_density_to_grid(structure[0])
    density = np.array(calculator.grid, copy=True)  # gemmi indexes [x, y, z]
    density = np.transpose(density, (2, 1, 0)).astype(np.float64)
    sigma = MOLMAP_SIGMA_FACTOR * resolution / voxel_size
    density = scipy.ndimage.gaussian_filter(density, sigma, mode="wrap")
    return Volume(validate(density, name=path), voxel_size)


def load_protein(protein, box: int = 64, path=None, resolution: float | None = None) -> Volume:
    """A protein as a normalised cubic volume, ready to project.

    ``protein`` is a registered name or the path of the user's own file, resolved by
    :func:`cryoposes.data.resolve_protein`; both go through the same steps. Maps (voxel size
    from the MRC header) are padded to :func:`rotation_safe_size` and resampled, models go
    through :func:`map_from_model` with its default sampling; either way the content stays
    inside the box under any rotation.

    Parameters
    ----------
    protein : str, os.PathLike or cryoposes.data.ProteinFile
        A name of :data:`cryoposes.data.PROTEINS`, such as ``"5j0n"``; the path of a density
        map (``.mrc``, ``.map``) or an atomic model (``.pdb``, ``.cif``, ``.mmcif``); or what
        :func:`cryoposes.data.resolve_protein` returned for either.
    box : int, optional
        Side of the box in voxels, at least 8.
    path : str or os.PathLike, optional
        The file of a registered protein (default: found by :func:`cryoposes.data.protein_path`).
    resolution : float, optional
        Gaussian blur in Å (default: none for maps, as :func:`map_from_model` for models).

    Returns
    -------
    Volume
        (box, box, box) float32, maximum absolute value 1.

    Raises
    ------
    ValueError
        If ``box`` is under 8.
    cryoposes.errors.InputError
        If ``protein`` is neither a registered name nor an existing map or model file, or the
        file is unreadable or holds an unusable map or model (the message names the file).
    FileNotFoundError
        If a registered protein's file is neither local nor downloadable.

    Examples
    --------
    >>> import numpy as np
    >>> from cryoposes.data import protein_path
    >>> from cryoposes.volumes import load_protein
    >>> volume = load_protein("5j0n", box=32)
    >>> volume.shape, round(volume.voxel_size, 2), float(volume.data.max())
    ((32, 32, 32), 13.41, 1.0)
    >>> same = load_protein(protein_path("5j0n"), box=32)  # the same map, given by its path
    >>> bool(np.array_equal(same.data, volume.data)), same.voxel_size == volume.voxel_size
    (True, True)
    """

    box = int(box)
    if box < 8:
        raise ValueError(f"box must be at least 8 voxels, got {box}")
    if isinstance(protein, data.ProteinFile):
        if path is not None:
            raise ValueError("path is only for a registered protein's name, not for a resolved ProteinFile")
        source = protein
    else:
        source = data.resolve_protein(protein, path)
    if source.kind == "map":
        volume = load_map(source.path)
        volume = pad_to_cube(volume, rotation_safe_size(volume))
        if resolution is not None:
            sigma = MOLMAP_SIGMA_FACTOR * resolution / volume.voxel_size
            volume = Volume(scipy.ndimage.gaussian_filter(volume.data, sigma).astype(np.float32), volume.voxel_size)
        volume = resample(volume, box)
    else:
        volume = map_from_model(source.path, box, resolution=resolution)
    return normalize(volume)
