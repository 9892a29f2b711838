import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
import pytest

from cryoposes import plotting, rotations


def _points(figure, name=None):
    traces = [t for t in figure.data if isinstance(t, go.Scatter3d)]
    if name is not None:
        traces = [t for t in traces if t.name == name]
    return [np.column_stack([t.x, t.y, t.z]) for t in traces]


def test_viewing_direction_of_identity_is_plus_z():
    assert np.allclose(plotting.viewing_directions([[1.0, 0, 0, 0]]), [[0, 0, 1]])


def test_viewing_direction_is_third_column_and_tilt_is_polar_angle():
    rng = np.random.default_rng(0)
    rot, tilt, psi = rng.uniform(0, np.pi, (3, 50))
    directions = plotting.viewing_directions(rotations.euler_to_quaternion(rot, tilt, psi))
    assert np.allclose(directions, rotations.euler_to_matrix(rot, tilt, psi)[..., :, 2])
    assert np.allclose(np.arccos(directions[:, 2]), tilt)
    assert np.allclose(np.mod(np.arctan2(directions[:, 1], directions[:, 0]), 2 * np.pi), rot)


def test_sphere_figure_has_one_point_per_pose_on_the_unit_sphere():
    poses = rotations.random_quaternions(123, rng=1)
    (points,) = _points(plotting.sphere_figure(poses))
    assert points.shape == (123, 3)
    assert np.allclose(np.linalg.norm(points, axis=1), 1.0)
    assert np.allclose(points, plotting.viewing_directions(poses))


def test_sphere_figure_draws_a_faint_unit_sphere():
    figure = plotting.sphere_figure(rotations.random_quaternions(5, rng=0))
    (surface,) = [t for t in figure.data if isinstance(t, go.Surface)]
    radius = np.sqrt(np.asarray(surface.x) ** 2 + np.asarray(surface.y) ** 2 + np.asarray(surface.z) ** 2)
    assert np.allclose(radius, 1.0)
    assert surface.opacity < 0.5


def test_sphere_figure_accepts_directions_and_normalises_them():
    (points,) = _points(plotting.sphere_figure(np.array([[0, 0, 2.0], [3.0, 0, 0]])))
    assert np.allclose(points, [[0, 0, 1], [1, 0, 0]])


def test_sphere_figure_several_traces_with_shared_colour_bar():
    true = rotations.random_quaternions(40, rng=2)
    recovered = rotations.random_quaternions(30, rng=3)
    error = np.linspace(0, 10, 30)
    figure = plotting.sphere_figure(
        {"true": true, "recovered": recovered},
        color={"recovered": error},
        colorbar_title="error (°)",
    )
    assert [len(p) for p in _points(figure, "true")] == [40]
    assert [len(p) for p in _points(figure, "recovered")] == [30]
    (recovered_trace,) = [t for t in figure.data if t.name == "recovered"]
    assert np.allclose(recovered_trace.marker.color, error)
    assert recovered_trace.marker.showscale
    assert (recovered_trace.marker.cmin, recovered_trace.marker.cmax) == (0.0, 10.0)
    assert recovered_trace.marker.colorbar.title.text == "error (°)"


@pytest.mark.parametrize(
    "poses, color, message",
    [
        (np.zeros((3, 5)), None, "shape"),
        (np.ones((3, 4)) / 2, np.zeros(2), "color"),
        ({"a": np.ones((3, 4)) / 2}, {"b": np.zeros(3)}, "unknown traces"),
        ({"a": np.ones((3, 4)) / 2, "b": np.ones((2, 4)) / 2}, np.zeros(3), "mapping"),
        (np.array([[0.0, 0.0, 0.0]]), None, "zero length"),
    ],
)
def test_sphere_figure_rejects_bad_input(poses, color, message):
    with pytest.raises(ValueError, match=message):
        plotting.sphere_figure(poses, color=color)


def test_image_grid_one_heatmap_per_image_top_row_first():
    images = np.arange(5 * 4 * 3, dtype=np.float32).reshape(5, 4, 3)
    figure = plotting.image_grid(images, titles=list("abcde"), columns=2)
    heatmaps = [t for t in figure.data if isinstance(t, go.Heatmap)]
    assert len(heatmaps) == 5
    for heatmap, image in zip(heatmaps, images):
        assert np.array_equal(np.asarray(heatmap.z), image)
    assert [a.text for a in figure.layout.annotations] == list("abcde")
    assert figure.layout.yaxis.autorange == "reversed"
    assert heatmaps[2].xaxis == "x3" and figure.layout.yaxis3.domain[0] < figure.layout.yaxis.domain[0]


def test_image_grid_shared_scale():
    images = np.stack([np.zeros((2, 2)), np.ones((2, 2))])
    own = plotting.image_grid(images)
    shared = plotting.image_grid(images, shared_scale=True)
    assert own.data[0].zmin is None
    assert (shared.data[0].zmin, shared.data[1].zmax) == (0.0, 1.0)


def test_histogram_overlays_named_series_on_common_bins():
    figure = plotting.histogram_figure({"a": np.arange(10), "b": np.arange(5, 20)}, bins=10)
    assert [t.name for t in figure.data] == ["a", "b"]
    assert figure.data[0].xbins.start == figure.data[1].xbins.start == 0.0
    assert figure.data[0].xbins.size == pytest.approx(1.9)


def test_histogram_has_exactly_its_bins_over_the_range_asked_for():
    values = np.array([0.0, 10.0, 45.0, 180.0])
    figure = plotting.histogram_figure(values, bins=36, value_range=(0.0, 180.0), log_y=True)
    bins = figure.data[0].xbins
    # 36 bins of 5°: the largest value falls in the last one, not in a 37th bin of its own.
    assert (bins.start, bins.size) == (0.0, 5.0) and 180.0 <= bins.end < 180.0 + 1e-6
    assert list(figure.layout.xaxis.range) == [0.0, 180.0] and figure.layout.yaxis.type == "log"


def test_log_axes_read_as_numbers():
    x = np.arange(1.0, 11.0)
    wide = plotting.line_figure(x, {"falls": np.logspace(0, -6, 10)}, log_y=True)
    assert (wide.layout.yaxis.exponentformat, wide.layout.yaxis.dtick) == ("power", 1)  # 10⁻⁶, not 1µ
    narrow = plotting.line_figure(x, {"flat": np.linspace(0.05, 0.4, 10)}, log_y=True)
    assert narrow.layout.yaxis.tickformat == ".2g"


def test_isosurfaces_share_a_box_cut_to_the_molecules():
    volume = np.zeros((20, 20, 20))
    volume[8:12, 9:11, 5:15] = 1.0
    figure = plotting.isosurface_figure({"a": volume, "b": volume, "c": volume}, level=0.5)
    assert len(figure.data) == 3 and figure.layout.height == 2 * plotting.DEFAULT_HEIGHT
    # The block and two voxels around it: x 3–16, z 6–13 of the 20-voxel box.
    assert (max(figure.data[0].x), max(figure.data[0].z)) == (13, 7)
    with pytest.raises(ValueError, match="different shapes"):
        plotting.isosurface_figure({"a": volume, "b": volume[:10]})


def test_line_and_scatter_figures():
    x = np.linspace(0, 1, 7)
    lines = plotting.line_figure(x, {"sin": np.sin(x), "cos": np.cos(x)}, log_y=True)
    assert [t.name for t in lines.data] == ["sin", "cos"]
    assert lines.layout.yaxis.type == "log"
    with pytest.raises(ValueError, match="shape"):
        plotting.line_figure(x, np.zeros(3))
    scatter = plotting.scatter_figure(np.arange(100), np.arange(100), max_points=10, identity_line=True)
    assert len(scatter.data[0].x) == 10
    assert np.array_equal(scatter.data[0].x, scatter.data[0].y)
    shown = np.asarray(scatter.data[0].x)
    assert list(scatter.data[1].x) == [shown.min(), shown.max()]


def test_error_by_condition_figure_groups_methods_and_leaves_missing_bars_empty():
    import pandas as pd

    table = pd.DataFrame({"condition": ["noise", "noise", "CTF"], "method": ["learned", "common lines", "learned"],
                          "particles": ["all 100", "first 50", "all 100"], "O(4) median °": [3.0, 40.0, 9.0],
                          "physical median °": [3.5, 41.0, 9.9], "saw true poses": [True, False, True]})
    figure = plotting.error_by_condition_figure(table)
    o4_learned, o4_lines, physical_learned, physical_lines = figure.data
    assert [trace.name for trace in figure.data if trace.showlegend] == ["learned (saw true poses)", "common lines"]
    assert list(o4_lines.x) == ["noise", "CTF"] and o4_lines.y[0] == 40.0 and np.isnan(o4_lines.y[1])
    assert list(physical_learned.y) == [3.5, 9.9] and list(o4_learned.text) == ["3.0°", "9.0°"]
    assert o4_learned.marker.color == physical_learned.marker.color != o4_lines.marker.color
    assert list(physical_lines.customdata) == ["first 50", ""]
    with pytest.raises(ValueError, match="missing seconds"):
        plotting.error_by_condition_figure(table, columns=("seconds",))
    with pytest.raises(ValueError, match="no rows"):
        plotting.error_by_condition_figure(table.iloc[:0])


def test_book_renderer_writes_html_without_plotlyjs_and_the_plotly_json():
    bundle = pio.renderers[plotting.RENDERER].to_mimebundle(
        plotting.sphere_figure(rotations.random_quaternions(3, rng=0)).to_dict()
    )
    assert "application/vnd.plotly.v1+json" in bundle
    html = bundle["text/html"]
    assert "Plotly.newPlot" in html and "plotly-graph-div" in html
    # plotly.js itself is several MB; the book serves it once from _static instead.
    assert len(html) < 500_000


def test_setup_notebook_makes_the_book_renderer_the_default():
    previous = pio.renderers.default
    try:
        plotting.setup_notebook()
        assert pio.renderers.default == plotting.RENDERER
    finally:
        pio.renderers.default = previous
