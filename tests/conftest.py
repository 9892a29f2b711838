"""Shared test fixtures: small volumes and a small trained model, built once per session."""

import pytest


def require_protein_file(name):
    """Skip the test when the file of protein ``name`` is not on this machine (no shared data
    folder and nothing in the cache): a clone without the test data skips, it does not fail."""
    from cryoposes import data

    try:
        return data.protein_path(name, download=False)
    except FileNotFoundError:
        pytest.skip(f"no local file of {name} (set {data.DATA_ENV} to the test data folder)")


@pytest.fixture(scope="session")
def volume_5j0n_32():
    """5j0n as a normalised 32³ volume."""
    from cryoposes.volumes import load_protein

    require_protein_file("5j0n")
    return load_protein("5j0n", box=32)


@pytest.fixture(scope="session")
def volume_5j0n_64():
    """5j0n as a normalised 64³ volume (the size of the accuracy checks)."""
    from cryoposes.volumes import load_protein

    require_protein_file("5j0n")
    return load_protein("5j0n", box=64)


def synthetic_images(n=96, size=32, seed=0):
    """Random images (n, size, size) float32 and random poses (n, 4): fast training input."""
    import numpy as np

    from cryoposes import rotations

    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, size, size)).astype(np.float32), rotations.random_quaternions(n, rng)


#: A small encoder: two convolution blocks, 16 numbers per embedding.
SMALL_NETWORK = dict(filters=(8, 16), embedding=16)


def small_config(**changes):
    """A :class:`cryoposes.training.TrainingConfig` for tests: the small network, one epoch."""
    from cryoposes.training import TrainingConfig

    settings = dict(SMALL_NETWORK, epochs=1, batch_size=16, seed=3)
    settings.update(changes)
    return TrainingConfig(**settings)


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """A small distance model trained 2 epochs on synthetic images, and its saved copy."""
    from cryoposes.training import train

    images, quaternions = synthetic_images()
    model = train(images, quaternions, config=small_config(epochs=2), progress=False)
    path = tmp_path_factory.mktemp("model") / "distance.keras"
    model.save(path)
    return model, path, images, quaternions


def fails_with_usage_error(capsys, arguments, message):
    """Run ``cryoposes ARGUMENTS``; it must exit with status 2 and print ``message``."""
    from cryoposes.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in arguments])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
