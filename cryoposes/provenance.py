"""What made a result: the machine, the Keras backend and device, the version, and for a book
page the parameter profile it was executed with.

Results records (``benchmarks/``) and the banner at the top of every executed chapter use the
same description, so a number in the book can be traced to where it was computed.
``book/build.py`` names the profile (and any parameters given on its command line) in the
environment variable :data:`PROFILE_ENV` of the kernel that executes a chapter.
"""

from __future__ import annotations

import datetime
import html
import os
import platform

from cryoposes import __version__

__all__ = ["PROFILE_ENV", "SOURCE_ENV", "machine", "Banner", "banner"]

#: Environment variable through which ``book/build.py`` tells a chapter its parameter profile.
PROFILE_ENV = "CRYOPOSES_BOOK_PROFILE"
#: ... and the address of the chapter's MyST source in the repository.
SOURCE_ENV = "CRYOPOSES_BOOK_SOURCE"


def machine(load: bool = False) -> str:
    """A short description of this computer and of the device the networks run on.

    Parameters
    ----------
    load : bool, optional
        Add the load average (for timings: other work on the machine slows them).

    Returns
    -------
    str

    Examples
    --------
    >>> from cryoposes.provenance import machine
    >>> "cores" in machine()
    True
    """
    from cryoposes import backend

    device = backend.describe()
    gpu = f"GPU {', '.join(device['devices'])}" if device["gpu"] else "no GPU used"
    text = (f"{platform.machine()} CPU, {os.cpu_count()} cores, {gpu} (Keras on {device['backend']}), "
            f"{platform.system()}")
    if load and hasattr(os, "getloadavg"):
        text += f", load average {os.getloadavg()[0]:.1f} at the end"
    return text


class Banner:
    """The provenance line of an executed page; shows as a note in notebooks and the book."""

    def __init__(self, profile: str, computer: str, source: str | None = None):
        self.profile, self.computer, self.source = profile, computer, source
        self.date = datetime.date.today().isoformat()

    def __str__(self) -> str:
        return (f"Executed with {self.profile} on {self.computer}; cryoposes {__version__}, "
                f"{self.date}.")

    __repr__ = __str__

    def _repr_html_(self) -> str:
        source = "" if self.source is None else (
            f' Its source: <a href="{html.escape(self.source)}">{html.escape(self.source.rsplit("/", 1)[-1])}</a>'
            " (MyST markdown, opens as a notebook with jupytext); its executed notebook: the download"
            " button at the top of the page.")
        return (f'<div class="admonition note cryoposes-banner"><p class="admonition-title">'
                f"How this page was made</p><p>{html.escape(str(self))}{source}</p></div>")


def banner(profile: str | None = None) -> Banner:
    """The banner of an executed chapter: its parameter profile and the machine it ran on.

    Parameters
    ----------
    profile : str, optional
        The profile's description; by default what ``book/build.py`` put in
        :data:`PROFILE_ENV`, or the chapter's own defaults when it was run some other way.

    Returns
    -------
    Banner
        Displays as a note (HTML) in a notebook; ``str`` gives the text.

    Examples
    --------
    >>> from cryoposes.provenance import banner
    >>> str(banner("the profile ci")).startswith("Executed with the profile ci on ")
    True
    """
    if profile is None:
        name = os.environ.get(PROFILE_ENV)
        profile = f"the profile {name}" if name else "the parameters cell's own values"
    return Banner(profile, machine(), os.environ.get(SOURCE_ENV))
