"""Interactive plotly figures for the book: viewing spheres, image grids, histograms, curves, maps.

Figures are returned, not shown: the last expression of a notebook cell displays them. Call
:func:`setup_notebook` once at the top of a chapter so that they render in the built book.

**Why a renderer of our own.**

Plotly ≥ 6 puts only ``application/vnd.plotly.v1+json`` in a notebook output, which Jupyter
Book 1 drops. The ``"notebook"`` renderer embeds the whole plotly.js (≈ 4.7 MB) into every
notebook. :data:`RENDERER` instead writes both the plotly JSON (drawn by JupyterLab and VS Code)
and an HTML ``<div>`` that calls ``Plotly.newPlot``; the book loads plotly.js once, from its own
``_static`` folder (``book/_ext/plotly_js.py``, a Sphinx extension that copies the installed
plotly.js there and adds it to every page that holds a figure), so it renders offline.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
from plotly.colors import qualitative
from plotly.io.base_renderers import MimetypeRenderer, PlotlyRenderer
from plotly.subplots import make_subplots

from cryoposes.rotations import quaternion_to_matrix

__all__ = [
    "RENDERER",
    "setup_notebook",
    "viewing_directions",
    "sphere_figure",
    "image_grid",
    "histogram_figure",
    "line_figure",
    "scatter_figure",
    "isosurface_figure",
    "error_vs_snr_figure",
    "error_by_condition_figure",
]

#: Name of the plotly renderer registered by this module.
RENDERER = "cryoposes"

#: Height (px) of a figure cell in the book when a function is not told otherwise.
DEFAULT_HEIGHT = 500


class _BookRenderer(MimetypeRenderer):
    """Plotly JSON for live notebooks plus an HTML div (without plotly.js) for the book."""

    def to_mimebundle(self, fig_dict):
        html = pio.to_html(
            fig_dict,
            include_plotlyjs=False,
            include_mathjax=False,
            full_html=False,
            default_width="100%",
            default_height=DEFAULT_HEIGHT,
            validate=False,
        )
        return {**PlotlyRenderer().to_mimebundle(fig_dict), "text/html": html}


pio.renderers[RENDERER] = _BookRenderer()


def setup_notebook() -> None:
    """Make figures render in live notebooks and in the built book (call once per chapter).

    Sets plotly's default renderer to :data:`RENDERER` and its default template to
    ``"plotly_white"``.

    Examples
    --------
    >>> import plotly.io as pio
    >>> from cryoposes.plotting import RENDERER, setup_notebook
    >>> previous = pio.renderers.default, pio.templates.default
    >>> setup_notebook()
    >>> pio.renderers.default == RENDERER
    True
    >>> pio.renderers.default, pio.templates.default = previous  # undo, for this example
    """
    pio.renderers.default = RENDERER
    pio.templates.default = "plotly_white"


def viewing_directions(quaternions) -> np.ndarray:
    """Viewing directions ``R @ e_z`` of poses, in the molecule frame.

    Parameters
    ----------
    quaternions : array_like
        (N, 4) unit quaternions.

    Returns
    -------
    numpy.ndarray
        (N, 3) unit vectors: ``tilt`` is their polar angle and ``rot`` their azimuth.

    Raises
    ------
    ValueError
        Quaternions without a last axis of 4, not finite or not of unit norm.

    Examples
    --------
    >>> from cryoposes.plotting import viewing_directions
    >>> viewing_directions([[1.0, 0, 0, 0], [0, 1.0, 0, 0]]).round(6).tolist()
    [[0.0, 0.0, 1.0], [0.0, 0.0, -1.0]]
    """
    return quaternion_to_matrix(np.asarray(quaternions, dtype=float))[..., :, 2]


def _as_directions(points) -> np.ndarray:
    points = np.asarray(points, dtype=float)
    if points.ndim != 2 or points.shape[1] not in (3, 4):
        raise ValueError(
            f"give poses as quaternions (N, 4) or directions (N, 3), got shape {points.shape}"
        )
    if points.shape[1] == 4:
        return viewing_directions(points)
    norms = np.linalg.norm(points, axis=1, keepdims=True)
    if np.any(norms == 0):
        raise ValueError("a viewing direction has zero length")
    return points / norms


def _named(values, what: str) -> dict:
    """One array → {"": array}; a mapping name → array stays as it is."""
    if isinstance(values, Mapping):
        if not values:
            raise ValueError(f"no {what} given")
        return dict(values)
    return {"": values}


def _sphere_surface(resolution: int = 24) -> go.Surface:
    polar, azimuth = np.meshgrid(
        np.linspace(0, np.pi, resolution), np.linspace(0, 2 * np.pi, 2 * resolution)
    )
    # float32: plotly sends arrays as binary; half the bytes and no visible difference.
    return go.Surface(
        x=(np.sin(polar) * np.cos(azimuth)).astype(np.float32),
        y=(np.sin(polar) * np.sin(azimuth)).astype(np.float32),
        z=np.cos(polar).astype(np.float32),
        colorscale=[[0, "lightgrey"], [1, "lightgrey"]],
        opacity=0.2,
        showscale=False,
        hoverinfo="skip",
        name="unit sphere",
    )


def sphere_figure(
    poses,
    color=None,
    *,
    colorbar_title: str | None = None,
    colorscale: str = "Viridis",
    color_range: tuple[float, float] | None = None,
    marker_size: float = 2.5,
    title: str | None = None,
    height: int = DEFAULT_HEIGHT,
) -> go.Figure:
    """Viewing directions ``R @ e_z`` as points on the unit sphere (in the molecule frame).

    Parameters
    ----------
    poses : array_like or mapping of str to array_like
        Unit quaternions (N, 4) or directions (N, 3), or a mapping ``name → array`` for several
        traces (e.g. ``{"true": q, "recovered": q_est}``).
    color : array_like or mapping of str to array_like, optional
        One value per point (N,) for a single trace, or a mapping name → values.
    colorbar_title, colorscale : str, optional
        Title and plotly colour scale of the colour bar that coloured traces share.
    color_range : tuple of float, optional
        ``(low, high)`` of the colour scale; default: the range of all the values.
    marker_size : float, optional
        Marker size in pixels.
    title : str, optional
        Figure title.
    height : int, optional
        Figure height in pixels.

    Returns
    -------
    plotly.graph_objects.Figure
        A translucent unit sphere, then one ``Scatter3d`` trace per array of poses.

    Raises
    ------
    ValueError
        Arrays not shaped (N, 3) or (N, 4), a zero direction, or colours that match no trace.

    Examples
    --------
    >>> from cryoposes.plotting import sphere_figure
    >>> q = np.tile([1.0, 0, 0, 0], (5, 1))
    >>> figure = sphere_figure({"true": q, "recovered": q}, color={"recovered": np.arange(5)})
    >>> len(figure.data), figure.data[2].x.shape
    (3, (5,))
    """
    traces = {
        name: _as_directions(points).astype(np.float32) for name, points in _named(poses, "poses").items()
    }
    if color is None:
        colors = {}
    elif isinstance(color, Mapping):
        unknown = set(color) - set(traces)
        if unknown:
            raise ValueError(f"colours given for unknown traces {sorted(unknown)}")
        colors = {name: np.asarray(values, dtype=float) for name, values in color.items()}
    else:
        if len(traces) != 1:
            raise ValueError("with several traces, give color as a mapping trace name → values")
        colors = {next(iter(traces)): np.asarray(color, dtype=float)}
    for name, values in colors.items():
        if values.shape != (len(traces[name]),):
            raise ValueError(
                f"color of trace {name!r} has shape {values.shape}, expected ({len(traces[name])},)"
            )
    if colors and color_range is None:
        every = np.concatenate(list(colors.values()))
        color_range = (float(np.nanmin(every)), float(np.nanmax(every)))

    figure = go.Figure(_sphere_surface())
    colorbar_drawn = False
    for name, directions in traces.items():
        marker = {"size": marker_size}
        if name in colors:
            marker.update(
                color=colors[name],
                colorscale=colorscale,
                cmin=color_range[0],
                cmax=color_range[1],
                showscale=not colorbar_drawn,
                colorbar={"title": {"text": colorbar_title or ""}},
            )
            colorbar_drawn = True
        figure.add_trace(
            go.Scatter3d(
                x=directions[:, 0],
                y=directions[:, 1],
                z=directions[:, 2],
                mode="markers",
                marker=marker,
                name=name or "viewing directions",
                showlegend=bool(name),
            )
        )
    axis = {"range": [-1.1, 1.1], "showbackground": False}
    figure.update_layout(
        title=title,
        height=height,
        # Room for a two-line title above plotly's toolbar, which sits in the top right corner.
        margin={"l": 0, "r": 0, "b": 0, "t": 80 if title else 10},
        scene={
            "xaxis": {**axis, "title": {"text": "x"}},
            "yaxis": {**axis, "title": {"text": "y"}},
            "zaxis": {**axis, "title": {"text": "z"}},
            "aspectmode": "cube",
        },
        # Legend symbols at a readable size, whatever the markers' size.
        legend={"x": 0, "y": 1, "itemsizing": "constant"},
    )
    return figure


def image_grid(
    images,
    titles=None,
    *,
    columns: int | None = None,
    shared_scale: bool = False,
    colorscale: str = "gray",
    title: str | None = None,
    panel_size: int = 150,
) -> go.Figure:
    """Images as a grid of heatmaps with ``y`` pointing down.

    Hovering shows the pixel and its value.

    Parameters
    ----------
    images : array_like
        (N, H, W) images, indexed ``[y, x]``.
    titles : sequence of str, optional
        N panel titles; they may break lines with ``<br>``.
    columns : int, optional
        Panels per row; default up to 6.
    shared_scale : bool, optional
        One grey scale for all the images (e.g. to compare intensities) instead of one each.
    colorscale : str, optional
        Plotly colour scale.
    title : str, optional
        Figure title.
    panel_size : int, optional
        Side of a panel in pixels.

    Returns
    -------
    plotly.graph_objects.Figure
        One ``Heatmap`` trace per image.

    Raises
    ------
    ValueError
        ``images`` not a non-empty (N, H, W) stack, or a count of titles other than N.

    Examples
    --------
    >>> from cryoposes.plotting import image_grid
    >>> figure = image_grid(np.zeros((7, 8, 8)), columns=4)
    >>> len(figure.data), figure.data[0].z.shape
    (7, (8, 8))
    """
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 3 or len(images) == 0:
        raise ValueError(f"images must be a non-empty stack (N, H, W), got shape {images.shape}")
    count = len(images)
    titles = list(titles) if titles is not None else [""] * count
    if len(titles) != count:
        raise ValueError(f"{len(titles)} titles for {count} images")
    columns = min(count, columns or 6)
    rows = -(-count // columns)
    # Layout in pixels: each row of panels has its titles (lines of ~15 px) above it.
    title_lines = max(str(t).count("<br>") + 1 for t in titles) if any(titles) else 0
    gap = 15 * title_lines + 6
    plot_height = rows * panel_size + (rows - 1) * gap
    figure = make_subplots(
        rows=rows,
        cols=columns,
        subplot_titles=titles,
        horizontal_spacing=0.01,
        vertical_spacing=gap / plot_height if rows > 1 else 0.0,
    )
    low, high = (float(images.min()), float(images.max())) if shared_scale else (None, None)
    for index, image in enumerate(images):
        row, column = divmod(index, columns)
        figure.add_trace(
            go.Heatmap(
                z=image,
                zmin=low,
                zmax=high,
                colorscale=colorscale,
                showscale=False,
                hovertemplate="x=%{x}, y=%{y}: %{z:.3g}<extra></extra>",
            ),
            row=row + 1,
            col=column + 1,
        )
    figure.update_annotations(font_size=11)
    figure.update_xaxes(showticklabels=False, constrain="domain")
    figure.update_yaxes(showticklabels=False, autorange="reversed", constrain="domain")
    for index in range(count):
        suffix = "" if index == 0 else str(index + 1)
        figure.layout[f"yaxis{suffix}"].scaleanchor = f"x{suffix}"
    top = 10 + (30 if title else 0) + 15 * title_lines
    figure.update_layout(
        title={"text": title, "y": 1.0, "yanchor": "top", "pad": {"t": 10}} if title else None,
        height=plot_height + top + 10,
        margin={"l": 10, "r": 10, "b": 10, "t": top},
    )
    return figure


def histogram_figure(
    values,
    *,
    bins: int = 50,
    value_range: tuple[float, float] | None = None,
    log_y: bool = False,
    xaxis_title: str = "",
    yaxis_title: str = "count",
    title: str | None = None,
    height: int = 400,
) -> go.Figure:
    """Histogram of ``values``; several series are drawn overlaid, on the same bins.

    Parameters
    ----------
    values : array_like or mapping of str to array_like
        The values (NaN and infinite values are left out), or a mapping name → values.
    bins : int, optional
        Number of bins over ``value_range``.
    value_range : tuple of float, optional
        ``(low, high)`` covered by the bins (values outside are not drawn); default: the range
        of all the finite values.
    log_y : bool, optional
        Logarithmic counts, so that a few values far from the bulk stay visible.
    xaxis_title, yaxis_title, title : str, optional
        Axis and figure titles.
    height : int, optional
        Figure height in pixels.

    Returns
    -------
    plotly.graph_objects.Figure
        One ``Histogram`` trace per series.

    Raises
    ------
    ValueError
        An empty mapping.

    Examples
    --------
    >>> from cryoposes.plotting import histogram_figure
    >>> rng = np.random.default_rng(0)
    >>> figure = histogram_figure({"a": rng.normal(size=100), "b": rng.normal(size=50)}, bins=10)
    >>> len(figure.data)
    2
    """
    series = _named(values, "values")
    every = np.concatenate([np.ravel(np.asarray(v, dtype=float)) for v in series.values()])
    every = every[np.isfinite(every)]
    if value_range is not None:
        low, high = map(float, value_range)
    else:
        low, high = (float(every.min()), float(every.max())) if every.size else (0.0, 1.0)
    width = (high - low) / bins if high > low else 1.0
    # Exactly `bins` bins from low to high: plotly's bins are closed on the left, so the end is
    # nudged up by a hair for the largest value to fall in the last bin, not in one of its own.
    figure = go.Figure()
    for name, data in series.items():
        figure.add_trace(
            go.Histogram(
                x=np.ravel(np.asarray(data, dtype=float)),
                name=name or None,
                showlegend=bool(name),
                xbins={"start": low, "end": high + 1e-9 * width, "size": width},
                opacity=0.6 if len(series) > 1 else 1.0,
            )
        )
    figure.update_layout(
        barmode="overlay",
        title=title,
        height=height,
        xaxis={"title": {"text": xaxis_title}, "range": [low, high]},
        yaxis={"title": {"text": yaxis_title}, "type": "log" if log_y else "linear"},
    )
    return figure


def line_figure(
    x,
    ys,
    *,
    xaxis_title: str = "",
    yaxis_title: str = "",
    log_x: bool = False,
    log_y: bool = False,
    title: str | None = None,
    height: int = 400,
) -> go.Figure:
    """Curves against a common ``x``.

    Parameters
    ----------
    x : array_like
        Abscissae, shared by every curve.
    ys : array_like or mapping of str to array_like
        A curve of the shape of ``x``, or a mapping name → curve.
    xaxis_title, yaxis_title : str, optional
        Axis titles.
    log_x, log_y : bool, optional
        Logarithmic axes.
    title : str, optional
        Figure title.
    height : int, optional
        Figure height in pixels.

    Returns
    -------
    plotly.graph_objects.Figure
        One line trace per curve.

    Raises
    ------
    ValueError
        A curve not shaped like ``x``, or an empty mapping.

    Examples
    --------
    >>> from cryoposes.plotting import line_figure
    >>> x = np.arange(1, 11)
    >>> len(line_figure(x, {"linear": x, "square": x**2}, log_y=True).data)
    2
    """
    x = np.asarray(x)
    figure = go.Figure()
    for name, y in _named(ys, "curves").items():
        y = np.asarray(y)
        if y.shape != x.shape:
            raise ValueError(f"curve {name!r} has shape {y.shape}, x has {x.shape}")
        figure.add_trace(go.Scatter(x=x, y=y, mode="lines", name=name or None, showlegend=bool(name)))
    figure.update_layout(
        title=title,
        height=height,
        xaxis={"title": {"text": xaxis_title}, **_axis_scale(log_x, x)},
        yaxis={"title": {"text": yaxis_title}, **_axis_scale(log_y, [trace.y for trace in figure.data])},
    )
    return figure


def _axis_scale(log: bool, values) -> dict:
    """A linear axis, or a logarithmic one labelled so that it reads as numbers: powers of ten
    over two decades or more, else plain numbers (plotly's defaults write SI prefixes, 1µ for
    10⁻⁶ rad², and on short ranges a digit per tick: 4, 3, 2, 0.1, 9, 8, …)."""
    if not log:
        return {"type": "linear"}
    positive = np.concatenate([np.ravel(np.asarray(v, dtype=float)) for v in values]) if len(values) else np.ones(1)
    positive = positive[np.isfinite(positive) & (positive > 0)]
    if positive.size and positive.max() >= 100 * positive.min():
        return {"type": "log", "exponentformat": "power", "dtick": 1}
    return {"type": "log", "tickformat": ".2g"}


def scatter_figure(
    x,
    y,
    *,
    color=None,
    colorbar_title: str | None = None,
    xaxis_title: str = "",
    yaxis_title: str = "",
    identity_line: bool = False,
    max_points: int | None = 20_000,
    seed: int = 0,
    title: str | None = None,
    height: int = 450,
) -> go.Figure:
    """Scatter plot of ``y`` against ``x`` (e.g. predicted against true distances).

    Parameters
    ----------
    x, y : array_like
        Values, flattened; as many of each.
    color : array_like, optional
        One value per point, drawn with a colour bar titled ``colorbar_title``.
    colorbar_title, xaxis_title, yaxis_title, title : str, optional
        Colour bar, axis and figure titles.
    identity_line : bool, optional
        Draw ``y = x`` for reference.
    max_points : int or None, optional
        More points are subsampled at random so that pages stay light; None keeps them all.
    seed : int, optional
        Seed of the subsampling.
    height : int, optional
        Figure height in pixels.

    Returns
    -------
    plotly.graph_objects.Figure
        A ``Scattergl`` trace of the points, then the identity line if asked for.

    Raises
    ------
    ValueError
        ``x``, ``y`` and ``color`` of different sizes.

    Examples
    --------
    >>> from cryoposes.plotting import scatter_figure
    >>> x = np.linspace(0.0, 1.0, 50_000)
    >>> figure = scatter_figure(x, 2 * x, identity_line=True, max_points=1000)
    >>> len(figure.data), len(figure.data[0].x)
    (2, 1000)
    """
    x = np.ravel(np.asarray(x, dtype=float))
    y = np.ravel(np.asarray(y, dtype=float))
    if x.shape != y.shape:
        raise ValueError(f"x has {x.size} values, y has {y.size}")
    color = None if color is None else np.ravel(np.asarray(color, dtype=float))
    if color is not None and color.shape != x.shape:
        raise ValueError(f"color has {color.size} values, x has {x.size}")
    if max_points is not None and x.size > max_points:
        keep = np.sort(np.random.default_rng(seed).choice(x.size, max_points, replace=False))
        x, y = x[keep], y[keep]
        color = None if color is None else color[keep]
    marker = {"size": 3, "opacity": 0.6}
    if color is not None:
        marker.update(color=color, colorscale="Viridis", showscale=True,
                      colorbar={"title": {"text": colorbar_title or ""}})
    figure = go.Figure(go.Scattergl(x=x, y=y, mode="markers", marker=marker, showlegend=False))
    if identity_line and x.size:
        low, high = float(min(x.min(), y.min())), float(max(x.max(), y.max()))
        figure.add_trace(
            go.Scatter(x=[low, high], y=[low, high], mode="lines", name="y = x",
                       line={"color": "black", "dash": "dash"})
        )
    figure.update_layout(title=title, height=height, xaxis_title=xaxis_title, yaxis_title=yaxis_title)
    return figure


def isosurface_figure(maps, *, level: float = 0.5, points: int = 40, columns: int = 2, title: str | None = None,
                      height: int = DEFAULT_HEIGHT) -> go.Figure:
    """Density maps side by side as isosurfaces, one 3-D scene each.

    Every map is cut to the same box around what lies above ``level`` in any of them (padded by
    two voxels), so the molecules fill their scenes and stay comparable.

    Parameters
    ----------
    maps : mapping of str to array_like or cryoposes.volumes.Volume
        Name → (L, L, L) map indexed ``[z, y, x]``; all the same shape.
    level : float, optional
        Surface at this fraction of each map's maximum (maps may differ in scale).
    points : int, optional
        Maps larger than ``points`` voxels a side are subsampled to about that (plotly draws
        isosurfaces in the browser).
    columns : int, optional
        Scenes per row.
    title : str, optional
        Figure title.
    height : int, optional
        Height of one row of scenes in pixels.

    Returns
    -------
    plotly.graph_objects.Figure
        One ``Isosurface`` trace per map.

    Raises
    ------
    ValueError
        Maps of different shapes, or an empty mapping.

    Examples
    --------
    >>> from cryoposes.plotting import isosurface_figure
    >>> x = np.linspace(-1, 1, 16)
    >>> blob = np.exp(-(x[:, None, None] ** 2 + x[None, :, None] ** 2 + 2 * x[None, None, :] ** 2) * 4)
    >>> figure = isosurface_figure({"a": blob, "b": blob[::-1], "c": blob})
    >>> len(figure.data), figure.layout.height  # two rows of two scenes
    (3, 1000)
    """
    named = {name: np.asarray(getattr(data, "data", data), dtype=float) for name, data in _named(maps, "maps").items()}
    shapes = {data.shape for data in named.values()}
    if len(shapes) != 1:
        raise ValueError(f"maps of different shapes: {sorted(shapes)}")
    above = np.any([data >= level * data.max() for data in named.values()], axis=0)
    box = tuple(slice(max(int(np.min(where)) - 2, 0), int(np.max(where)) + 3) if where.size else slice(None)
                for where in np.nonzero(above))
    columns = max(1, min(columns, len(named)))
    rows = -(-len(named) // columns)
    figure = make_subplots(rows=rows, cols=columns, specs=[[{"type": "scene"}] * columns] * rows,
                           subplot_titles=list(named), vertical_spacing=0.06)
    for index, data in enumerate(named.values()):
        data = data[box]
        step = max(1, int(np.ceil(max(data.shape) / points)))
        data = data[::step, ::step, ::step]
        z, y, x = np.meshgrid(*(np.arange(n) * step for n in data.shape), indexing="ij")
        figure.add_trace(go.Isosurface(x=x.ravel(), y=y.ravel(), z=z.ravel(), value=data.ravel(),
                                       isomin=level * data.max(), isomax=data.max(), surface_count=1,
                                       caps={"x_show": False, "y_show": False, "z_show": False},
                                       showscale=False, colorscale="Blues"),
                         row=index // columns + 1, col=index % columns + 1)
    # The camera nearer than plotly's default (1.25, 1.25, 1.25), so the molecule fills its scene.
    scene = {"xaxis": {"visible": False}, "yaxis": {"visible": False}, "zaxis": {"visible": False},
             "aspectmode": "data", "camera": {"eye": {"x": 0.8, "y": 0.8, "z": 0.8}}}
    figure.update_layout(title=title, height=height * rows, margin={"t": 80 if title else 30},
                         **{f"scene{'' if i == 1 else i}": scene for i in range(1, len(named) + 1)})
    return figure


def error_vs_snr_figure(table, column: str = "O(4) median °", *, clean_at: float = 4.0,
                        title: str | None = None, height: int = 450) -> go.Figure:
    """Median pose error against the SNR, one curve per method (a noise sweep).

    Parameters
    ----------
    table : pandas.DataFrame
        Rows with ``snr_db`` (``inf`` for clean images), ``method`` and ``column``, as
        :func:`cryoposes.practice.sweep_table` returns; rows with no value in ``column`` are left out.
    column : str, optional
        The error to draw.
    clean_at : float, optional
        Where clean images sit on the SNR axis (labelled "clean").
    title : str, optional
        Figure title.
    height : int, optional
        Figure height in pixels.

    Returns
    -------
    plotly.graph_objects.Figure
        One line-and-marker trace per method, SNR decreasing to the right.

    Examples
    --------
    >>> import pandas as pd
    >>> from cryoposes.plotting import error_vs_snr_figure
    >>> table = pd.DataFrame({"snr_db": [np.inf, -12.0, np.inf], "method": ["a", "a", "b"],
    ...                       "O(4) median °": [3.0, 9.0, 5.0]})
    >>> [trace.name for trace in error_vs_snr_figure(table).data]
    ['a', 'b']
    """
    figure = go.Figure()
    shown = table.dropna(subset=[column])
    for method, rows in shown.groupby("method", sort=False):
        snr = np.where(np.isinf(rows["snr_db"].to_numpy(float)), clean_at, rows["snr_db"].to_numpy(float))
        order = np.argsort(-snr)
        figure.add_trace(go.Scatter(x=snr[order], y=rows[column].to_numpy(float)[order], mode="lines+markers",
                                    name=method))
    finite = sorted({float(value) for value in shown["snr_db"] if np.isfinite(value)}, reverse=True)
    ticks = [clean_at, *[value for value in finite if value < clean_at - 1]]
    figure.update_layout(
        title=title, height=height,
        xaxis={"title": {"text": "SNR (dB)"}, "autorange": "reversed", "tickvals": ticks,
               # Whole decibels: −12.04, −13.01 and −13.98 written out overlap.
               "ticktext": ["clean", *[f"{value:.0f}" for value in ticks[1:]]]},
        yaxis={"title": {"text": f"{column} (lower is better)"}, "rangemode": "tozero"},
    )
    return figure


def error_by_condition_figure(table, columns=("O(4) median °", "physical median °"), *, title: str | None = None,
                              height: int = 450) -> go.Figure:
    """Median pose error per imaging condition, grouped bars per method, one panel per error.

    Parameters
    ----------
    table : pandas.DataFrame
        Rows with ``condition``, ``method``, ``particles`` and every one of ``columns``, as
        :func:`cryoposes.practice.condition_table` returns. Conditions are drawn in the order
        they first appear; a method missing under a condition has no bar there.
    columns : sequence of str, optional
        The errors to draw, one panel each, side by side on a shared error axis.
    title : str, optional
        Figure title.
    height : int, optional
        Figure height in pixels.

    Returns
    -------
    plotly.graph_objects.Figure
        One bar trace per method and panel, labelled with its value; the hover says on how many
        particles each number was measured. Where ``table`` has a ``saw true poses`` column, the
        legend names the methods that saw ground-truth poses of the protein in training.

    Raises
    ------
    ValueError
        No rows, or a column missing from ``table``.

    Examples
    --------
    >>> import pandas as pd
    >>> from cryoposes.plotting import error_by_condition_figure
    >>> table = pd.DataFrame({"condition": ["noise", "noise", "CTF"], "method": ["a", "b", "a"],
    ...                       "particles": ["all 10", "first 5", "all 10"],
    ...                       "O(4) median °": [3.0, 40.0, 9.0], "physical median °": [3.5, 41.0, 9.9]})
    >>> figure = error_by_condition_figure(table)
    >>> len(figure.data), list(figure.data[0].x), list(figure.data[1].x)
    (4, ['noise', 'CTF'], ['noise', 'CTF'])
    """
    missing = [column for column in columns if column not in table.columns]
    if missing or table.empty:
        raise ValueError(f"a condition table with rows and the columns {list(columns)} is needed; "
                         f"{'missing ' + ', '.join(missing) if missing else 'it has no rows'}")
    conditions = list(dict.fromkeys(table["condition"]))
    methods = list(dict.fromkeys(table["method"]))
    saw_poses = set(table.loc[table["saw true poses"].astype(bool), "method"]) if "saw true poses" in table else set()
    legend = {method: f"{method} (saw true poses)" if method in saw_poses else method for method in methods}
    # One colour per method in both panels (plotly would colour each trace anew).
    colours = qualitative.Plotly
    figure = make_subplots(rows=1, cols=len(columns), shared_yaxes=True, subplot_titles=list(columns),
                           horizontal_spacing=0.04)
    for panel, column in enumerate(columns, start=1):
        for index, method in enumerate(methods):
            rows = table[table["method"] == method].set_index("condition").reindex(conditions)
            values = rows[column].to_numpy(float)
            figure.add_trace(go.Bar(
                x=conditions, y=values, name=legend[method], legendgroup=method, showlegend=panel == 1,
                marker_color=colours[index % len(colours)],
                text=[f"{value:.1f}°" if np.isfinite(value) else "" for value in values], textposition="outside",
                textfont_size=11, cliponaxis=False,
                customdata=rows["particles"].fillna("").to_numpy(object),
                hovertemplate=f"{method}<br>%{{x}}<br>{column}: %{{y:.2f}}<br>on %{{customdata}} particles"
                              "<extra></extra>"), row=1, col=panel)
    top = float(np.nanmax(table[list(columns)].to_numpy(float)))
    figure.update_yaxes(range=[0, 1.15 * top], row=1, col=1, title_text="median error ° (lower is better)")
    # Condition names wrap onto short lines: two panels of long names would otherwise be tilted
    # over each other and the legend.
    figure.update_xaxes(tickvals=conditions, ticktext=["<br>".join(textwrap.wrap(name, 16)) for name in conditions],
                        tickangle=0)
    figure.update_layout(title=title, height=height, barmode="group", margin={"t": 100 if title else 60},
                         uniformtext={"minsize": 9, "mode": "show"},
                         legend={"orientation": "h", "yanchor": "top", "y": -0.25})
    return figure
