"""Shared test set-up: the test data folder and small volumes built once per session."""

import os
from pathlib import Path

import pytest

# Tests read the shared data beside the repository unless CRYOPOSES_DATA says otherwise.
_SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
os.environ.setdefault("CRYOPOSES_DATA", str(_SHARED_DATA))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")


@pytest.fixture(scope="session")
def volume_5j0n_32():
    """5j0n as a normalised 32³ volume."""
    from cryoposes.volumes import load_protein

    return load_protein("5j0n", box=32)


@pytest.fixture(scope="session")
def volume_5j0n_64():
    """5j0n as a normalised 64³ volume (the size the issues' accuracy checks use)."""
    from cryoposes.volumes import load_protein

    return load_protein("5j0n", box=64)
