"""The Keras backend every network of the package runs on: imported once, quietly, and described.

Keras 3 runs on TensorFlow (the default here), JAX or PyTorch, chosen by ``KERAS_BACKEND`` before
the first import; each uses a GPU by itself when it sees one. :func:`describe` says which
backend and device a run used, for chapters and results records.

TensorFlow writes a line about its oneDNN kernels straight to file descriptor 2 when it is
imported, before its own log settings apply, so that line would land in every executed notebook.
Turning oneDNN off would silence it but halve the speed of the convolutions on CPU (measured:
600 vs 1,150 images/s through the distance network at 64 px on 2 cores), so the import runs with
descriptor 2 pointed at the null device instead; an import that fails still raises.

Examples
--------
>>> from cryoposes import backend
>>> sorted(backend.describe())
['backend', 'devices', 'gpu']
"""

from __future__ import annotations

import contextlib
import os
import sys


@contextlib.contextmanager
def _quiet_descriptor_2():
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


with _quiet_descriptor_2():
    import keras  # noqa: E402
from keras import ops  # noqa: E402,F401


def describe() -> dict:
    """The Keras backend in use and the devices it computes on.

    Returns
    -------
    dict
        ``backend`` (``"tensorflow"``, ``"jax"`` or ``"torch"``), ``gpu`` (whether a GPU is
        used) and ``devices`` (their names).

    Examples
    --------
    >>> from cryoposes.backend import describe
    >>> describe()["backend"] in ("tensorflow", "jax", "torch")
    True
    """
    name = keras.backend.backend()
    if name == "tensorflow":
        import tensorflow as tf

        gpus = [device.name for device in tf.config.list_physical_devices("GPU")]
    elif name == "jax":
        import jax

        gpus = [str(device) for device in jax.devices() if device.platform == "gpu"]
    elif name == "torch":
        import torch

        gpus = [torch.cuda.get_device_name(k) for k in range(torch.cuda.device_count())]
    else:
        gpus = []
    return {"backend": name, "gpu": bool(gpus), "devices": gpus or ["CPU"]}
