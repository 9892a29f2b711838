"""Test set-up for the whole repository (the tests in tests/ and the docstring examples in
cryoposes/): where the test data are, and quiet TensorFlow."""

import os
from pathlib import Path

# The shared test data beside the repository, unless CRYOPOSES_DATA says otherwise; without
# either, protein files are downloaded (see cryoposes.data).
_SHARED_DATA = Path(__file__).resolve().parent.parent / "shared" / "data"
if _SHARED_DATA.is_dir():
    os.environ.setdefault("CRYOPOSES_DATA", str(_SHARED_DATA))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
