"""Fourier shell correlation of two maps, and the resolution it gives.

Prints the FSC per shell (spatial frequency in 1/Å and the resolution it stands for) and the
resolution at the 0.143 criterion (two independent half maps) and at 0.5 (a map against the
true map). The maps must have the same box and voxel size and be aligned already.

Example:
    cryoposes fsc map_half1.mrc map_half2.mrc --plot fsc.html
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cryoposes.errors import InputError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("first", type=Path, metavar="A.mrc", help="first map")
    parser.add_argument("second", type=Path, metavar="B.mrc", help="second map")
    parser.add_argument("--json", action="store_true", help="print the curve and resolutions as JSON")
    parser.add_argument("--plot", type=Path, default=None, metavar="FILE.html",
                        help="also write the curve as an interactive plotly page")


def main(args) -> int:
    if args.plot is not None and args.plot.suffix != ".html":
        raise InputError(f"--plot must name an .html file, got {args.plot}")
    from cryoposes import fsc, volumes

    curve = fsc.fsc(volumes.load_map(args.first), volumes.load_map(args.second))
    resolutions = {"0.143": curve.resolution(fsc.HALF_MAP_THRESHOLD), "0.5": curve.resolution(fsc.REFERENCE_THRESHOLD)}
    if args.plot is not None:
        from cryoposes import plotting

        figure = plotting.line_figure(curve.frequency, {"FSC": curve.correlation},
                                      xaxis_title="spatial frequency (1/Å)", yaxis_title="FSC",
                                      title=f"FSC of {args.first.name} and {args.second.name}")
        figure.add_hline(y=fsc.HALF_MAP_THRESHOLD, line_dash="dot")
        figure.add_hline(y=fsc.REFERENCE_THRESHOLD, line_dash="dash")
        figure.write_html(args.plot, include_plotlyjs=True)
    if args.json:
        print(json.dumps({"resolution_angstrom": resolutions, **curve.as_dict()}, indent=2))
        return 0
    print(f"{'shell':>5}{'1/Å':>10}{'Å':>9}{'FSC':>8}")
    for shell, (frequency, value) in enumerate(zip(curve.frequency, curve.correlation), start=1):
        print(f"{shell:>5}{frequency:>10.4f}{1 / frequency:>9.2f}{value:>8.3f}")
    print(f"resolution: {resolutions['0.143']:.2f} Å at FSC 0.143 (half maps), "
          f"{resolutions['0.5']:.2f} Å at FSC 0.5 (against a reference)")
    return 0
