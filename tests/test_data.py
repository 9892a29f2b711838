"""Finding protein files: explicit path, CRYOPOSES_DATA, cache, download."""

import hashlib
from pathlib import Path

import pytest

from conftest import require_protein_file
from cryoposes import data
from cryoposes.errors import InputError


def test_registry_knows_the_named_proteins():
    assert data.get_protein("5J0N").symmetry == "C1"
    assert data.get_protein("5a1a").symmetry == "D2"
    assert data.get_protein("5a1a").kind == "model"
    with pytest.raises(ValueError, match="unknown protein 'xyz1'.*5a1a.*5j0n"):
        data.get_protein("xyz1")


@pytest.mark.parametrize("name", sorted(data.PROTEINS))
def test_shared_files_match_the_registered_hashes(name):
    """The fixed hashes are the ones of the real files (so downloads are checked against them)."""
    path = require_protein_file(name)
    assert hashlib.sha256(Path(path).read_bytes()).hexdigest() == data.PROTEINS[name].sha256


def test_explicit_path_wins(tmp_path):
    file = tmp_path / "mine.mrc"
    file.write_bytes(b"x")
    assert data.protein_path("5j0n", file) == file
    with pytest.raises(FileNotFoundError, match="no file at"):
        data.protein_path("5j0n", tmp_path / "missing.mrc")


def test_offline_without_local_copy_names_the_variable_and_url(tmp_path, monkeypatch):
    monkeypatch.setenv(data.DATA_ENV, str(tmp_path / "empty"))
    monkeypatch.setenv(data.CACHE_ENV, str(tmp_path / "cache"))
    with pytest.raises(FileNotFoundError) as error:
        data.protein_path("5a1a", download=False)
    message = str(error.value)
    assert data.DATA_ENV in message and data.PROTEINS["5a1a"].url in message


def test_download_failure_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv(data.DATA_ENV, raising=False)
    monkeypatch.setenv(data.CACHE_ENV, str(tmp_path / "cache"))

    def unreachable(*args, **kwargs):
        raise ConnectionError("network is unreachable")

    monkeypatch.setattr(data.pooch, "retrieve", unreachable)
    with pytest.raises(FileNotFoundError, match="could not be downloaded.*network is unreachable"):
        data.protein_path("5j0n")


def test_cache_is_used_when_its_hash_matches(tmp_path, monkeypatch, request):
    monkeypatch.delenv(data.DATA_ENV, raising=False)
    monkeypatch.setenv(data.CACHE_ENV, str(tmp_path))
    shared = Path(request.config.rootpath).parent / "shared" / "data" / "5j0n.mrc"
    (tmp_path / "5j0n.mrc").write_bytes(shared.read_bytes())
    assert data.protein_path("5j0n", download=False) == tmp_path / "5j0n.mrc"
    (tmp_path / "5j0n.mrc").write_bytes(b"corrupt")  # a damaged cache copy is not trusted
    with pytest.raises(FileNotFoundError):
        data.protein_path("5j0n", download=False)


def test_resolve_a_registered_name_before_any_file_of_that_name(tmp_path, monkeypatch):
    path = require_protein_file("5j0n")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "5j0n").mkdir()  # say, an output folder named after the protein: not a protein file
    for name in ("5j0n", " 5J0N "):
        source = data.resolve_protein(name)
        assert (source.path, source.kind, source.label, source.symmetry) == (path, "map", "5j0n", "C1")
    explicit = tmp_path / "mine.mrc"
    explicit.write_bytes(b"x")
    assert data.resolve_protein("5j0n", explicit).path == explicit


@pytest.mark.parametrize("filename, kind", [("my_map.mrc", "map"), ("EMD-1234.MAP", "map"), ("model.pdb", "model"),
                                            ("model.cif", "model"), ("model.mmCIF", "model")])
def test_resolve_a_file_by_its_suffix(tmp_path, monkeypatch, filename, kind):
    folder = tmp_path / "deep" / "folder"
    folder.mkdir(parents=True)
    file = folder / filename
    file.write_bytes(b"content is checked where the file is read")
    digest = hashlib.sha256(file.read_bytes()).hexdigest()
    monkeypatch.chdir(tmp_path)
    for given in (file, str(file), f"deep/folder/{filename}"):
        source = data.resolve_protein(given)
        assert source.kind == kind and source.path == Path(given) and source.symmetry is None
        # The label has the file's name and hash, not the machine's folder: comparable across runs.
        assert source.label == f"{filename} sha256:{digest}"


def test_resolve_refuses_what_is_neither_a_name_nor_a_usable_file(tmp_path):
    with pytest.raises(InputError) as error:
        data.resolve_protein(tmp_path / "missing.mrc")
    message = str(error.value)
    assert "missing.mrc" in message and "5a1a, 5j0n" in message
    assert all(suffix in message for suffix in data.MAP_SUFFIXES + data.MODEL_SUFFIXES)
    with pytest.raises(InputError, match="unknown protein '6abc'; known proteins: 5a1a, 5j0n"):
        data.resolve_protein("6abc")
    with pytest.raises(InputError, match="unknown protein ''"):
        data.resolve_protein("")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(InputError, match=r"notes.txt has suffix '\.txt': a protein file must be"):
        data.resolve_protein(tmp_path / "notes.txt")
    (tmp_path / "map").write_text("x")
    with pytest.raises(InputError, match="map has no suffix"):
        data.resolve_protein(tmp_path / "map")
    (tmp_path / "folder.mrc").mkdir()
    with pytest.raises(InputError, match="folder.mrc is a folder"):
        data.resolve_protein(tmp_path / "folder.mrc")
    (tmp_path / "mine.mrc").write_bytes(b"x")
    with pytest.raises(InputError, match="only for a registered protein"):
        data.resolve_protein(tmp_path / "mine.mrc", path=tmp_path / "mine.mrc")
