"""Classical baselines on the same images: poses by common lines (ASPIRE's ``CLSyncVoting``).

Common lines need no training and no ground truth: every pair of images shares a central line
of the map's spectrum (the Fourier slice theorem), the lines found between all pairs are
voted on and synchronised into one rotation per image
(Shkolnisky & Singer 2012; Singer et al. 2010). ASPIRE's implementation is the reference one,
so it is used as it is (the ``bench`` extra: ``pip install "cryoposes[bench]"``).

Conventions. ASPIRE's rotation of an image, read from images indexed ``[y, x]`` as
:mod:`cryoposes.projection` makes them, is the same matrix (image frame → molecule frame) as
:func:`cryoposes.rotations.quaternion_to_matrix` of the image's pose: measured on clean
projections, the estimates match the truth after one global rotation (the *physical*
alignment of :mod:`cryoposes.alignment`, tested in ``tests/test_baselines.py``). So common
lines' poses are scored exactly as cryoposes' physical poses, with no conversion but the
matrix → quaternion one.

Images with a CTF are phase-flipped first (:func:`cryoposes.ctf.phase_flip`), as ASPIRE's
pipelines do before orientation estimation; shifts are searched by ASPIRE when ``max_shift``
is positive.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

import numpy as np

from cryoposes import imaging, rotations
from cryoposes.ctf import CTFParameters, phase_flip
from cryoposes.errors import InputError

__all__ = ["common_lines"]


def _aspire():
    # ASPIRE writes a log folder into the working directory and draws progress bars per pair
    # unless its configuration says otherwise; a user's own ASPIREDIR is left alone.
    if "ASPIREDIR" not in os.environ:
        folder = Path(tempfile.gettempdir()) / "cryoposes-aspire"
        folder.mkdir(exist_ok=True)
        (folder / "config.yaml").write_text(f"logging:\n  log_dir: {(folder / 'logs').as_posix()}\n"
                                            "  tqdm_disable: true\n")
        os.environ["ASPIREDIR"] = str(folder)
    try:
        from aspire.abinitio import CLSyncVoting
        from aspire.source import ArrayImageSource
    except ImportError as error:  # the bench extra is optional
        raise InputError("common lines need ASPIRE: pip install \"cryoposes[bench]\"") from error
    return CLSyncVoting, ArrayImageSource


def common_lines(images, pixel_size: float = 1.0, ctf: CTFParameters | None = None, max_shift: float = 0.0,
                 angles: int = 360, seed: int = 0) -> np.ndarray:
    """Poses of particle images by common lines and synchronisation with voting (ASPIRE).

    Parameters
    ----------
    images : array_like
        (N, L, L) particle images, indexed ``[y, x]``; N ≥ 3.
    pixel_size : float, optional
        Å per pixel.
    ctf : cryoposes.ctf.CTFParameters, optional
        The images' CTFs: the images are phase-flipped before the search.
    max_shift : float, optional
        Largest particle shift searched, as a fraction of the image size (ASPIRE's
        ``max_shift``; 0 when the particles are centred, which is also much faster).
    angles : int, optional
        Angular samples of each image's polar Fourier transform (ASPIRE's ``n_theta``).
    seed : int, optional
        Seed of NumPy's global generator during the estimate (ASPIRE draws from it).

    Returns
    -------
    numpy.ndarray
        (N, 4) poses ``(w, x, y, z)``, right up to one global rotation and the hand.

    Raises
    ------
    InputError
        ASPIRE is not installed.
    ValueError
        Fewer than 3 images, or images that are not a finite (N, L, L) stack.

    Examples
    --------
    >>> from cryoposes import alignment, projection, rotations
    >>> from cryoposes.baselines import common_lines
    >>> x, y, z = np.meshgrid(*[np.arange(32) - 16] * 3, indexing="ij")
    >>> blob = np.exp(-((x - 4) ** 2 + y ** 2 + 3 * (z + 3) ** 2) / 10.0) + np.exp(-(x ** 2 + (y - 5) ** 2 + z ** 2) / 6.0)
    >>> truth = rotations.random_quaternions(40, 0)
    >>> poses = common_lines(projection.project(blob, truth, method="fourier"))  # doctest: +SKIP
    >>> poses.shape, bool(alignment.align_physical(truth, poses).median < 2.0)  # doctest: +SKIP
    ((40, 4), True)
    """
    images = imaging._check_images(images)
    if len(images) < 3:
        raise ValueError(f"common lines need at least 3 images, got {len(images)}")
    if ctf is not None:
        images = phase_flip(images, ctf, pixel_size)
    CLSyncVoting, ArrayImageSource = _aspire()
    state = np.random.get_state()
    logging.getLogger("aspire").setLevel(logging.WARNING)
    try:
        np.random.seed(seed)
        source = ArrayImageSource(images.astype(np.float64), pixel_size=float(pixel_size))
        estimator = CLSyncVoting(source, n_theta=angles, max_shift=max_shift, mask=False, disable_gpu=True)
        estimator.estimate_rotations()
        matrices = np.asarray(estimator.rotations, dtype=float)
    finally:
        np.random.set_state(state)
    return rotations.canonical(rotations.matrix_to_quaternion(matrices))
