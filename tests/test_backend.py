"""The Keras code on JAX, the backend of the GPU machines (which have no TensorFlow).

The rest of the suite runs on TensorFlow; here the tests of the modules whose Keras code differs
most between backends (the distance network, and recovery's compiled loop of training steps,
stateless on JAX) run again in a process with ``KERAS_BACKEND=jax``.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cryoposes import backend

ROOT = Path(__file__).resolve().parents[1]


def test_describe_names_the_backend_and_its_devices():
    described = backend.describe()
    assert described["backend"] in ("tensorflow", "jax", "torch")
    assert described["gpu"] == (described["devices"] != ["CPU"])


@pytest.mark.slow
def test_recovery_and_the_distance_network_on_jax():
    pytest.importorskip("jax")
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x",
         "tests/test_recovery.py", "tests/test_siamese.py", "cryoposes/recovery.py"],
        cwd=ROOT, env={**os.environ, "KERAS_BACKEND": "jax"}, capture_output=True, text=True, timeout=1200,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert re.search(r"\d+ passed", run.stdout)
