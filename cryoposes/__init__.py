"""cryoposes: recover cryo-EM particle orientations from learned pairwise projection distances.

Modules, one per domain (each imports only the ones above it in this list):

- :mod:`cryoposes.options` — the named choices of every method and their defaults (imports nothing);
- :mod:`cryoposes.errors` — :class:`~cryoposes.errors.InputError`, the user's bad input;
- :mod:`cryoposes.rotations` — the quaternion / Euler / matrix convention, distances, sampling
  (read its docstring once: every other module uses it);
- :mod:`cryoposes.symmetry` — point groups C_n, D_n and distances up to them;
- :mod:`cryoposes.data` — named proteins and where their files come from;
- :mod:`cryoposes.volumes` — density maps: loading, validation, boxing, maps from atomic models;
- :mod:`cryoposes.projection` — the projector P_θ (CPU Fourier slice; ASTRA on a GPU);
- :mod:`cryoposes.imaging` — in-plane rotation, shift S_t and noise n;
- :mod:`cryoposes.ctf` — the contrast transfer function C_φ;
- :mod:`cryoposes.star` — RELION STAR tables: poses, image names, origins;
- :mod:`cryoposes.particles` — particle datasets on disk (.mrcs + RELION .star);
- :mod:`cryoposes.simulation` — simulated datasets y = C·S·P·x + n (the one image maker);
- :mod:`cryoposes.distances` — the Euclidean baseline distance;
- :mod:`cryoposes.alignment` — scoring poses up to the physical or the O(4) gauge;
- :mod:`cryoposes.reconstruction` — a map from images and poses (+ shifts, CTF), half maps;
- :mod:`cryoposes.fsc` — Fourier shell correlation and resolution;
- :mod:`cryoposes.gauge` — physical poses from distance-only poses, using the images (common lines);
- :mod:`cryoposes.refinement` — local refinement of poses and shifts by projection matching;
- :mod:`cryoposes.backend` — the Keras backend (imported quietly) and the device it runs on;
- :mod:`cryoposes.callbacks` — Keras callbacks shared by the two fits;
- :mod:`cryoposes.spectral` — the spectral start: poses from a distance matrix alone;
- :mod:`cryoposes.recovery` — orientation recovery from pairwise distances;
- :mod:`cryoposes.siamese` — the learned distance network and its use on images;
- :mod:`cryoposes.batches` — training batches: augmented images and their pair weights;
- :mod:`cryoposes.training` — training the distance network;
- :mod:`cryoposes.studies` — the whole method on simulated data, for the book and benchmarks;
- :mod:`cryoposes.plotting` — interactive plotly figures for the book;
- :mod:`cryoposes.provenance` — what made a result: machine, device, version, book profile;
- :mod:`cryoposes.commands` and :mod:`cryoposes.cli` — the ``cryoposes`` command: one module
  per verb, and the entry point that gathers them.
"""

import os as _os
import warnings as _warnings

# TensorFlow's start-up log lines, silenced before its first import (they would land in every
# executed notebook); its one line printed regardless is handled in cryoposes.backend.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

__version__ = "0.4.0"

# tqdm.auto (imported by pooch and used for progress bars) warns in notebooks without ipywidgets;
# it then falls back to text progress bars, which is what the book wants.
_warnings.filterwarnings("ignore", message="IProgress not found")
