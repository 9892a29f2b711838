"""cryoposes: recover cryo-EM particle orientations from learned pairwise projection distances.

Modules, one per domain:

- :mod:`cryoposes.rotations` — the quaternion / Euler / matrix convention, distances, sampling,
  symmetry (read its docstring once: every other module uses it);
- :mod:`cryoposes.data` — named proteins and where their files come from;
- :mod:`cryoposes.volumes` — density maps: loading, validation, boxing, maps from atomic models;
- :mod:`cryoposes.projection` — the projector P_θ (CPU Fourier slice; ASTRA on a GPU);
- :mod:`cryoposes.imaging` — shift S_t, CTF C_φ and noise n;
- :mod:`cryoposes.simulation` — particle datasets y = C·S·P·x + n, on disk as .mrcs + .star;
- :mod:`cryoposes.recovery`, :mod:`cryoposes.alignment` — orientation recovery and its scoring;
- :mod:`cryoposes.siamese` — the learned distance;
- :mod:`cryoposes.plotting` — interactive plotly figures for the book.
"""

import os as _os
import warnings as _warnings

# TensorFlow prints start-up lines to stderr at import unless these are set first; they would
# land in every executed notebook.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
_os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

__version__ = "0.1.0"

# tqdm.auto (imported by pooch and used for progress bars) warns in notebooks without ipywidgets;
# it then falls back to text progress bars, which is what the book wants.
_warnings.filterwarnings("ignore", message="IProgress not found")
