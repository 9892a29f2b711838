"""Named proteins and where their files come from, or the user's own map or model file.

``protein_path(name)`` looks, in order, at:

1. an explicit ``path`` argument;
2. the folder named by the environment variable ``CRYOPOSES_DATA`` (tests and CI set it to the
   shared test-data folder);
3. the user cache (``pooch.os_cache("cryoposes")``, or ``CRYOPOSES_CACHE`` if set);
4. a download into that cache from the public archive, checked against a fixed SHA-256.

The repository never contains these files. :func:`resolve_protein` also accepts the path of
the user's own file: a density map (:data:`MAP_SUFFIXES`) or an atomic model
(:data:`MODEL_SUFFIXES`), recorded by its file name and SHA-256.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pooch

from cryoposes.errors import InputError

__all__ = [
    "Protein",
    "PROTEINS",
    "DATA_ENV",
    "CACHE_ENV",
    "MAP_SUFFIXES",
    "MODEL_SUFFIXES",
    "ProteinFile",
    "protein_path",
    "get_protein",
    "resolve_protein",
    "cache_dir",
]

#: Environment variable naming a folder that holds the protein files (checked before the cache).
DATA_ENV = "CRYOPOSES_DATA"
#: Environment variable overriding the download cache folder.
CACHE_ENV = "CRYOPOSES_CACHE"
#: Suffixes (any case) of the files read as density maps (MRC/CCP4, with mrcfile).
MAP_SUFFIXES = (".mrc", ".map")
#: Suffixes (any case) of the files read as atomic models (PDB/mmCIF, with gemmi).
MODEL_SUFFIXES = (".pdb", ".cif", ".mmcif")


@dataclass(frozen=True)
class Protein:
    """A molecule the package knows by name: an entry of :data:`PROTEINS`.

    Attributes
    ----------
    name : str
        Lower-case name, the registry key (a PDB or map id such as ``"5j0n"``).
    filename : str
        File name in the data folder and the cache.
    url : str
        Public address the file is downloaded from.
    sha256 : str
        SHA-256 of the file, checked on download.
    kind : str
        ``"map"`` (a density map) or ``"model"`` (an atomic model turned into a map with gemmi).
    symmetry : str
        Point group, such as ``"C1"`` or ``"D2"``.
    description : str
        One line about the molecule.

    Examples
    --------
    >>> from cryoposes.data import PROTEINS
    >>> PROTEINS["5a1a"].kind, PROTEINS["5a1a"].symmetry
    ('model', 'D2')
    """

    name: str
    filename: str
    url: str
    sha256: str
    kind: str  # "map" (a density map) or "model" (an atomic model turned into a map with gemmi)
    symmetry: str
    description: str


_RCSB = "https://files.rcsb.org/download/"

#: The known proteins, by lower-case name.
PROTEINS: dict[str, Protein] = {
    protein.name: protein
    for protein in [
        Protein(
            "5j0n", "5j0n.mrc",
            # The map of the 2021 paper's code (Chimera molmap of PDB 5j0n, MIT licence).
            "https://raw.githubusercontent.com/JelenaBanjac/protein-reconstruction/master/data/5j0n.mrc",
            "48d3147ccc6d17c11e57651b43e65494e2cef2e3bb92de4938c29a5189d837ee",
            "map", "C1",
            "lambda excision Holliday-junction intermediate, 75×57×69 voxels at 3.667 Å (asymmetric)",
        ),
        Protein(
            "5a1a", "5a1a.cif", _RCSB + "5A1A.cif",
            "56ec5094028064ed84b4547f26764a68325ca7b3690e062c14d0cbe949bc3c69",
            "model", "D2", "E. coli β-galactosidase at 2.2 Å (D2 symmetry)",
        ),
        Protein(
            "7bv2", "7bv2.pdb", _RCSB + "7BV2.pdb",
            "02a2e7015a589c33e029e3eb4857b50bae366ba6a417d4125256ffe8d9edaaa9",
            "model", "C1", "SARS-CoV-2 nsp12–nsp7–nsp8 polymerase with RNA and remdesivir",
        ),
        Protein(
            "7q5b", "7q5b.pdb", _RCSB + "7Q5B.pdb",
            "3f453e88d1082838e89ea0feec5167a0ce4d0d20a2bc6c6db6e3e9bcb07425ba",
            "model", "C1", "Ty3 retrotransposon targeting a TFIIIB-bound tRNA gene",
        ),
        Protein(
            "6x18", "6x18.pdb", _RCSB + "6X18.pdb",
            "d8031695b9ac6b59888d8686231b0e36e0ddbaa80d8c133332f3980b934c7fc2",
            "model", "C1", "GLP-1 bound to the GLP-1 receptor with Gs heterotrimer and Nb35",
        ),
        Protein(
            "5uak", "5uak.pdb", _RCSB + "5UAK.pdb",
            "6694f3231108002c89e97e735f1ca5d4f85eb2709b1abedc65aa7f10a00f7c89",
            "model", "C1", "human CFTR, dephosphorylated, ATP-free",
        ),
        Protein(
            "8qjx", "8qjx.pdb", _RCSB + "8QJX.pdb",
            "9d675e1a4a09c74c920f11ccf4e62e487fa09605ed3c466b90ee9e6d748fffed",
            "model", "C1", "adenovirus 11 fiber knob with two copies of desmoglein-2",
        ),
    ]
}


@dataclass(frozen=True)
class ProteinFile:
    """A protein resolved to a local file: what :func:`resolve_protein` returns.

    Attributes
    ----------
    path : pathlib.Path
        The file to read.
    kind : str
        ``"map"`` (a density map) or ``"model"`` (an atomic model turned into a map with gemmi).
    label : str
        What a dataset's metadata records as its ``protein``: the registered name, or for the
        user's own file its name (no folder) and SHA-256, ``"NAME sha256:HEX"``, so that two
        datasets made from the same file can be recognised on any machine.
    symmetry : str or None
        The registered point group; None (unknown) for the user's own file.

    Examples
    --------
    >>> from cryoposes.data import resolve_protein
    >>> source = resolve_protein("5a1a", download=False)
    >>> source.kind, source.label, source.symmetry
    ('model', '5a1a', 'D2')
    """

    path: Path
    kind: str
    label: str
    symmetry: str | None


def get_protein(name: str) -> Protein:
    """The registry entry of a protein name, case-insensitive.

    Parameters
    ----------
    name : str
        A key of :data:`PROTEINS`, in any case, surrounding spaces ignored.

    Returns
    -------
    Protein
        The registry entry.

    Raises
    ------
    cryoposes.errors.InputError
        If the name is unknown; the message lists the known ones (a subclass of ValueError).

    Examples
    --------
    >>> from cryoposes.data import get_protein
    >>> protein = get_protein("5J0N")
    >>> protein.name, protein.kind, protein.filename
    ('5j0n', 'map', '5j0n.mrc')
    """
    key = str(name).strip().lower()
    if key not in PROTEINS:
        raise InputError(f"unknown protein {name!r}; known proteins: {', '.join(sorted(PROTEINS))}")
    return PROTEINS[key]


def cache_dir() -> Path:
    """The download cache folder: ``CRYOPOSES_CACHE`` if set, else ``pooch.os_cache("cryoposes")``.

    Returns
    -------
    pathlib.Path
        The folder (not created here).

    Examples
    --------
    >>> from pathlib import Path
    >>> from cryoposes.data import cache_dir
    >>> isinstance(cache_dir(), Path)
    True
    """
    return Path(os.environ.get(CACHE_ENV) or pooch.os_cache("cryoposes"))


def protein_path(name: str, path: str | os.PathLike | None = None, download: bool = True) -> Path:
    """Local path of the file of protein ``name``, downloading it if needed.

    Looks at ``path``, then the folder named by ``CRYOPOSES_DATA``, then the cache (if its copy
    has the right SHA-256), and last downloads into the cache (see the module docstring).

    Parameters
    ----------
    name : str
        A key of :data:`PROTEINS`, in any case.
    path : str or os.PathLike, optional
        An explicit file to use instead.
    download : bool, optional
        Download a missing file; if False, raise instead.

    Returns
    -------
    pathlib.Path
        The file.

    Raises
    ------
    cryoposes.errors.InputError
        If the name is unknown.
    FileNotFoundError
        If ``path`` is not a file, or no local copy exists and the download is off or fails.

    Examples
    --------
    >>> from cryoposes.data import protein_path
    >>> protein_path("5j0n", download=False).name  # found in CRYOPOSES_DATA or the cache
    '5j0n.mrc'
    """

    protein = get_protein(name)
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no file at {path} (given as the file of protein {protein.name})")
        return path
    data_folder = os.environ.get(DATA_ENV)
    if data_folder:
        candidate = Path(data_folder) / protein.filename
        if candidate.is_file():
            return candidate
    cached = cache_dir() / protein.filename
    if cached.is_file() and pooch.file_hash(str(cached)) == protein.sha256:
        return cached
    if not download:
        raise FileNotFoundError(_missing_message(protein, data_folder))
    try:
        fetched = pooch.retrieve(
            protein.url, known_hash=f"sha256:{protein.sha256}", fname=protein.filename,
            path=cache_dir(), progressbar=False,
        )
    except Exception as error:  # network failures come as many exception types
        raise FileNotFoundError(f"{_missing_message(protein, data_folder)} Download failed: {error}") from error
    return Path(fetched)


def resolve_protein(protein: str | os.PathLike, path: str | os.PathLike | None = None,
                    download: bool = True) -> ProteinFile:
    """The file of a registered protein, or the user's own density map or atomic model.

    A registered name (case-insensitive, as :func:`get_protein`) is looked up first and found
    as :func:`protein_path` finds it, so a file or folder that happens to bear a registered
    name does not shadow it. Anything else is the path of an existing file, read by its suffix
    (any case): :data:`MAP_SUFFIXES` as a density map, :data:`MODEL_SUFFIXES` as an atomic
    model. Only the suffix is checked here; the file's content is checked where it is read
    (:func:`cryoposes.volumes.load_map`, :func:`cryoposes.volumes.map_from_model`).

    Parameters
    ----------
    protein : str or os.PathLike
        A key of :data:`PROTEINS`, or the path of a map or model file (an ``os.PathLike`` is
        always a path).
    path : str or os.PathLike, optional
        An explicit file for a registered name (see :func:`protein_path`); not allowed with a
        path.
    download : bool, optional
        Download a registered protein's missing file; if False, raise instead.

    Returns
    -------
    ProteinFile
        The file, its kind, its metadata label and its symmetry.

    Raises
    ------
    cryoposes.errors.InputError
        If ``protein`` is neither a registered name nor an existing file (the message lists the
        registered names and the accepted suffixes), is a folder, has another suffix, or cannot
        be read to hash it; or if ``path`` is given with a path.
    FileNotFoundError
        If a registered protein's file is neither local nor downloadable.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from cryoposes.data import resolve_protein
    >>> resolve_protein("5J0N", download=False).label
    '5j0n'
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     file = Path(folder) / "my_map.MRC"
    ...     _ = file.write_bytes(b"only hashed here")
    ...     source = resolve_protein(file)
    >>> source.kind, source.label[:26], source.symmetry
    ('map', 'my_map.MRC sha256:e41f3e8a', None)
    """
    key = None if isinstance(protein, os.PathLike) else str(protein).strip().lower()
    if key in PROTEINS:
        entry = PROTEINS[key]
        return ProteinFile(protein_path(key, path, download), entry.kind, entry.name, entry.symmetry)
    if path is not None:
        raise InputError(f"an explicit file is only for a registered protein, not for {protein!r}")
    file = Path(protein)
    accepted = (f"a density map ({', '.join(MAP_SUFFIXES)}) or an atomic model "
                f"({', '.join(MODEL_SUFFIXES)})")
    if not str(protein).strip() or not file.exists():
        raise InputError(
            f"unknown protein {str(protein)!r}; known proteins: {', '.join(sorted(PROTEINS))}; "
            f"or give the path of an existing file, {accepted}: there is no file at {str(protein)!r}"
        )
    if not file.is_file():
        what = "a folder" if file.is_dir() else "not a regular file"
        raise InputError(f"{file} is {what}, not a protein file: give {accepted}")
    suffix = file.suffix.lower()
    if suffix in MAP_SUFFIXES:
        kind = "map"
    elif suffix in MODEL_SUFFIXES:
        kind = "model"
    else:
        found = f"suffix {file.suffix!r}" if file.suffix else "no suffix"
        raise InputError(f"{file} has {found}: a protein file must be {accepted}")
    try:
        digest = pooch.file_hash(str(file), alg="sha256")
    except OSError as error:
        raise InputError(f"cannot read {file}: {error}") from error
    return ProteinFile(file, kind, f"{file.name} sha256:{digest}", None)


def _missing_message(protein: Protein, data_folder: str | None) -> str:
    where = f"{DATA_ENV}={data_folder!r} has no {protein.filename}" if data_folder else f"{DATA_ENV} is not set"
    return (
        f"protein {protein.name}: no local copy ({where}; cache {cache_dir()}) and it could not be "
        f"downloaded from {protein.url}. Put {protein.filename} in the folder named by {DATA_ENV}, "
        "or connect to the internet."
    )
