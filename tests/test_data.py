"""Finding protein files: explicit path, CRYOPOSES_DATA, cache, download."""

import hashlib
from pathlib import Path

import pytest

from conftest import require_protein_file
from cryoposes import data


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
