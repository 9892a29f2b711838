"""The book's build: chapters and profiles agree, bad parameters are named, and plotly figures
are drawn in a browser (headless Chromium) from the built HTML, offline.

``test_built_book_draws_every_figure`` (marker ``browser``) checks the real book in
``_build/html``; CI runs it right after building the book.
"""

import importlib.util
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _load_build_module():
    spec = importlib.util.spec_from_file_location("book_build", ROOT / "book" / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build = _load_build_module()

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    # 3-D plotly scenes need WebGL; without a GPU only SwiftShader provides it.
    "--enable-unsafe-swiftshader",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--virtual-time-budget=15000",
]


def _chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    if os.environ.get("CI"):
        pytest.fail("headless Chromium is required in CI (Debian package 'chromium')")
    pytest.skip("headless Chromium not installed (Debian package 'chromium')")


def rendered_dom(page: Path, tmp_path: Path) -> str:
    """The page's DOM after its scripts ran, from headless Chromium without network."""
    profile = tmp_path / f"chromium-{page.stem}"
    result = subprocess.run(
        [_chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def assert_figures_drawn(html: str, dom: str, page: Path) -> int:
    """Every plotly div of the page was drawn by plotly.js; returns how many there are."""
    graph_ids = re.findall(r'<div id="([^"]+)" class="plotly-graph-div"', html)
    assert graph_ids, f"{page}: no plotly figure"
    for graph_id in graph_ids:
        match = re.search(rf'<div id="{re.escape(graph_id)}" class="([^"]*)"', dom)
        assert match, f"{page}: figure {graph_id} missing from the DOM"
        # Plotly.newPlot adds this class and draws its SVG layers into the div.
        assert "js-plotly-plot" in match.group(1), f"{page}: figure {graph_id} was not drawn"
    assert dom.count('class="main-svg"') >= len(graph_ids), f"{page}: figures without SVG"
    # A 3-D trace, not the entry of that name in plotly's default template.
    if re.search(r'(?<!"scatter3d":\[\{)"type":"scatter3d"', html):
        assert "<canvas" in dom, f"{page}: the 3-D scene has no WebGL canvas"
    return len(graph_ids)


# --- chapters and profiles -----------------------------------------------------------------


def test_every_chapter_has_a_parameters_cell():
    stems = build.toc_chapters()
    assert stems[0] == "intro"
    for stem in stems:
        defaults = build.parameter_defaults(ROOT / "book" / f"{stem}.md")
        assert defaults, f"{stem}: the parameters cell assigns nothing"


@pytest.mark.parametrize("profile", sorted(p.stem for p in (ROOT / "book" / "profiles").glob("*.yml")))
def test_profiles_only_name_parameters_of_their_chapters(profile):
    parameters = build.load_profile(profile)
    assert set(parameters) == set(build.toc_chapters())


def test_ci_and_paper_profiles_cover_the_same_parameters():
    ci, paper = (yaml.safe_load((ROOT / "book" / "profiles" / f"{p}.yml").read_text()) for p in ("ci", "paper"))
    assert {stem: set(v or {}) for stem, v in ci.items()} == {stem: set(v or {}) for stem, v in paper.items()}


CHAPTER = """\
---
jupytext:
  text_representation:
    extension: .md
    format_name: myst
kernelspec:
  display_name: Python 3
  language: python
  name: python3
---

# A tiny chapter

```{code-cell} ipython3
:tags: [parameters]

n_poses = 20
snr_db = [0.0, -10.0]
title = "poses"
```

```{code-cell} ipython3
import sys
from cryoposes import plotting, provenance, rotations

plotting.setup_notebook()
print(sys.executable)
display(provenance.banner())
plotting.sphere_figure(rotations.random_quaternions(n_poses, rng=0), title=f"{n_poses} {title}")
```
"""


@pytest.fixture
def tiny_book(tmp_path):
    """A one-chapter book using the project's own _config.yml and Sphinx extension."""
    root = tmp_path / "book_root"
    (root / "book" / "profiles").mkdir(parents=True)
    shutil.copy(ROOT / "_config.yml", root / "_config.yml")
    shutil.copy(ROOT / "references.bib", root / "references.bib")
    shutil.copytree(ROOT / "book" / "_ext", root / "book" / "_ext")
    shutil.copytree(ROOT / "book" / "_static", root / "book" / "_static")
    (root / "_toc.yml").write_text("format: jb-book\nroot: book/_executed/tiny\n")
    (root / "book" / "tiny.md").write_text(CHAPTER)
    return root


@pytest.mark.parametrize(
    "parameters, message",
    [
        ({"n_pose": 3}, "unknown parameter 'n_pose'"),
        ({"n_poses": 2.5}, "parameter 'n_poses' = 2.5 (float) does not match its default 20 (int)"),
        ({"snr_db": ["loud"]}, "parameter 'snr_db'"),
        ({"title": 3}, "parameter 'title'"),
    ],
)
def test_bad_profile_parameters_are_named(tiny_book, parameters, message):
    (tiny_book / "book" / "profiles" / "bad.yml").write_text(yaml.safe_dump({"tiny": parameters}))
    with pytest.raises(build.BookError, match=re.escape(message)):
        build.load_profile("bad", root=tiny_book)


def test_profile_checks_accept_compatible_values_and_name_unknown_chapters(tiny_book):
    profiles = tiny_book / "book" / "profiles"
    (profiles / "good.yml").write_text(yaml.safe_dump({"tiny": {"n_poses": 5, "snr_db": [1, -3.5]}}))
    assert build.load_profile("good", root=tiny_book) == {"tiny": {"n_poses": 5, "snr_db": [1, -3.5]}}
    (profiles / "stray.yml").write_text(yaml.safe_dump({"tiny2": {}}))
    with pytest.raises(build.BookError, match="'tiny2' is not a chapter"):
        build.load_profile("stray", root=tiny_book)
    with pytest.raises(build.BookError, match="no profile 'nope'.*available: good, stray"):
        build.load_profile("nope", root=tiny_book)


def test_parameters_cell_must_hold_literal_assignments(tiny_book):
    chapter = tiny_book / "book" / "tiny.md"
    chapter.write_text(CHAPTER.replace("n_poses = 20", "n_poses = len('abc')"))
    with pytest.raises(build.BookError, match="'n_poses' must have a literal default"):
        build.parameter_defaults(chapter)
    chapter.write_text(CHAPTER.replace(":tags: [parameters]\n", ""))
    with pytest.raises(build.BookError, match="expected one cell tagged 'parameters', found 0"):
        build.parameter_defaults(chapter)


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["-p", "sizee", "96"], "forward_model: unknown parameter 'sizee'"),
        (["-p", "size", "ninety-six"], "parameter 'size' = 'ninety-six' (str) does not match its default"),
        (["-p", "snr_db_values", "[1, loud]"], "parameter 'snr_db_values'"),
    ],
)
def test_command_line_parameters_are_checked_before_anything_runs(arguments, message, capsys):
    executed = ROOT / "book" / "_executed" / "forward_model.ipynb"
    before = executed.stat().st_mtime_ns if executed.exists() else None
    assert build.main(["--chapters", "forward_model", *arguments, "--no-html"]) == 1
    assert message in capsys.readouterr().err
    assert (executed.stat().st_mtime_ns if executed.exists() else None) == before


def test_command_line_parameters_read_values_as_yaml_and_files_first(tmp_path):
    values = tmp_path / "values.yml"
    values.write_text("size: 96\nseed: 3\n")
    parameters = build.command_line_parameters([["seed", "4"], ["snr_db_values", "[0, -12.5]"], ["title", "x y"]], [values])
    assert parameters == {"size": 96, "seed": 4, "snr_db_values": [0, -12.5], "title": "x y"}
    assert build.check_parameters("forward_model", {"size": 96, "seed": 4, "snr_db_values": [0, -12.5]}) == []
    (tmp_path / "list.yml").write_text("- 1\n")
    with pytest.raises(build.BookError, match="expected a mapping NAME: VALUE"):
        build.command_line_parameters(None, [tmp_path / "list.yml"])
    with pytest.raises(build.BookError, match="no parameters file"):
        build.command_line_parameters(None, [tmp_path / "missing.yml"])


def test_every_chapter_has_the_teaching_shape():
    """Overview, Prerequisites, Time to learn; two or more exercises, each with a solution;
    Summary, What's next and References (the rendered pages are checked in the browser test)."""
    for stem in build.toc_chapters():
        text = (ROOT / "book" / f"{stem}.md").read_text()
        headings = re.findall(r"^## (.+)$", text, flags=re.MULTILINE)
        for heading in ("Overview", "Prerequisites", "Exercises", "Summary", "What's next", "References"):
            assert heading in headings, f"{stem}: no section '{heading}'"
        assert "**Time to learn**" in text, stem
        exercises = re.findall(r"^```\{exercise\}\n:label: (\S+)", text, flags=re.MULTILINE)
        solved = re.findall(r"^```\{solution-start\} (\S+)", text, flags=re.MULTILINE)
        assert len(exercises) >= 2 and sorted(exercises) == sorted(solved), stem
        assert text.count("{solution-start}") == text.count("{solution-end}"), stem
        assert "provenance.banner()" in text, f"{stem}: no banner"


def test_figures_the_book_would_drop_are_refused(tmp_path):
    notebook = {
        "cells": [{"cell_type": "code", "outputs": [{"output_type": "display_data", "data": {build.PLOTLY_MIME: {}}}]}]
    }
    path = tmp_path / "chapter.ipynb"
    path.write_text(json.dumps(notebook))
    with pytest.raises(build.BookError, match="setup_notebook"):
        build.check_figures(path)


# --- building and drawing ------------------------------------------------------------------


@pytest.mark.slow
def test_tiny_book_executes_with_profile_and_draws_its_figure_offline(tiny_book, tmp_path, monkeypatch):
    # A user-level kernel "python3" running another interpreter must not be the one used.
    user_kernel = tmp_path / "user-data" / "kernels" / "python3"
    user_kernel.mkdir(parents=True)
    (user_kernel / "kernel.json").write_text(
        json.dumps({"argv": ["/nonexistent/python", "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                    "display_name": "elsewhere", "language": "python"})
    )
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "user-data"))
    monkeypatch.delenv("JUPYTER_PATH", raising=False)
    with build.this_interpreter_kernel():
        executed = build.execute_chapter("tiny", {"n_poses": 7, "title": "from the profile"}, root=tiny_book,
                                         profile="tiny-profile")
    notebook = json.loads(executed.read_text())
    outputs = [o for cell in notebook["cells"] for o in cell.get("outputs", [])]
    printed = "".join("".join(o.get("text", "")) for o in outputs if o["output_type"] == "stream")
    assert Path(printed.strip()).parent == Path(os.sys.executable).parent  # the project's venv
    html_output = ["".join(o["data"]["text/html"]) for o in outputs if "text/html" in o.get("data", {})]
    assert len(html_output) == 2 and "Executed with the profile tiny-profile on " in html_output[0]
    assert "/blob/main/book/tiny.md" in html_output[0]
    assert "7 from the profile" in html_output[1]

    site = build.build_html(root=tiny_book)
    page = site / "book" / "_executed" / "tiny.html"
    html = page.read_text()
    assert len(html) < 1_000_000  # plotly.js is served from _static, not inlined
    assert list((site / "_static").glob("plotly-*.min.js"))
    assert assert_figures_drawn(html, rendered_dom(page, tmp_path), page) == 1


def test_failing_chapter_fails_with_its_cell_and_keeps_the_traceback(tiny_book):
    chapter = tiny_book / "book" / "tiny.md"
    chapter.write_text(CHAPTER.replace("import sys\n", "import sys\nraise RuntimeError('broken chapter')\n"))
    with build.this_interpreter_kernel():
        with pytest.raises(build.BookError, match="chapter tiny failed.*RuntimeError: broken chapter"):
            build.execute_chapter("tiny", {}, root=tiny_book)
    assert (tiny_book / "book" / "_executed" / "tiny.failed.ipynb").is_file()
    assert not (tiny_book / "book" / "_executed" / "tiny.ipynb").exists()


@pytest.mark.browser
def test_built_book_draws_every_figure(tmp_path):
    site = ROOT / "_build" / "html"
    if not (site / "index.html").is_file():
        pytest.skip("book not built: run `python book/build.py` first")
    pages = [page for page in sorted(site.rglob("*.html")) if "plotly-graph-div" in page.read_text()]
    assert {page.stem for page in pages} >= {"intro", "forward_model"}
    for page in pages:
        assert_figures_drawn(page.read_text(), rendered_dom(page, tmp_path), page)


#: Pages Sphinx writes besides the book's own.
GENERATED_PAGES = {"genindex", "search", "py-modindex"}


def book_pages(site: Path) -> list[Path]:
    return [page for page in sorted(site.rglob("*.html"))
            if page.stem not in GENERATED_PAGES and "_static" not in page.parts and "_sources" not in page.parts]


def broken_internal_links(html: str, page: Path, site: Path) -> list[str]:
    """Links to files of the built book that do not exist (external links are not followed)."""
    broken = []
    for target in re.findall(r'href="([^"#]+)(?:#[^"]*)?"', html):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("//"):
            continue
        path = (page.parent / target.split("?")[0]).resolve()
        if not path.exists() or site.resolve() not in path.parents and path != site.resolve():
            broken.append(target)
    return broken


@pytest.mark.browser
def test_built_book_reads_offline_with_every_teaching_section(tmp_path):
    """Every page: equations typeset by the book's own MathJax (no raw TeX), no traceback or
    progress-bar text, internal links that resolve. Every chapter: its opening and closing
    sections, two or more exercises with hidden solutions, its references."""
    site = ROOT / "_build" / "html"
    if not (site / "index.html").is_file():
        pytest.skip("book not built: run `python book/build.py` first")
    pages = book_pages(site)
    assert {page.stem for page in pages} >= {"intro", "glossary", "notation", "references", "developers"}
    for page in pages:
        html = page.read_text()
        assert not broken_internal_links(html, page, site), f"{page}: {broken_internal_links(html, page, site)}"
        if "_executed" in page.parts:  # (docstrings in the API reference may show tracebacks)
            assert "Traceback (most recent call last)" not in html and "output traceback" not in html, page
        assert not re.search(r"\d+%\|[█▏▎▍▌▋▊▉ ]*\|", html), f"{page}: progress-bar text in an output"
        if 'class="math' not in html:
            continue
        assert re.search(r'<script[^>]+src="[^"]*_static/mathjax/tex-chtml\.js', html), f"{page}: MathJax not local"
        dom = rendered_dom(page, tmp_path)
        text = re.sub(r"<script.*?</script>", "", dom, flags=re.DOTALL)
        assert "<mjx-container" in dom, f"{page}: equations not typeset"
        assert not re.search(r"\\\(|\\\[|\$\$", re.sub(r"<[^>]+>", "", text)), f"{page}: raw TeX left"
        # Math that MyST did not read as math (e.g. a line inside $…$ starting "- ", which
        # makes a list item) leaves TeX commands in the prose, outside code.
        prose = re.sub(r"<(pre|code)\b.*?</\1>", "", text, flags=re.DOTALL)
        leftover = re.search(r"\\(mathrm|sum|hat|frac|overline|lvert|cdot|theta|lVert)\b", re.sub(r"<[^>]+>", "", prose))
        assert not leftover, f"{page}: raw TeX {leftover.group(0)!r} in the text"
    chapters = [site / "book" / "_executed" / f"{stem}.html" for stem in build.toc_chapters()]
    for page in chapters:
        html = page.read_text()
        for section in ("overview", "prerequisites", "exercises", "summary", "what-s-next", "references"):
            assert f'id="{section}"' in html, f"{page}: no section {section}"
        assert html.count('class="exercise admonition"') >= 2, page
        assert html.count('class="solution dropdown admonition"') == html.count('class="exercise admonition"'), page
        references = html[html.index('id="references"'):]
        assert 'role="doc-footnote"' in references, f"{page}: empty reference list"


def test_executed_parameters_cell_shows_the_values_the_page_ran_with(tmp_path):
    notebook = {"cells": [
        {"cell_type": "code", "metadata": {"tags": ["parameters"]},
         "source": 'size = 64  # image side\nsteps = [1,\n         2]  # two lines\nseed = 0'},
        {"cell_type": "code", "metadata": {"tags": ["injected-parameters"]}, "source": "size = 32\nsteps = [5]"},
        {"cell_type": "code", "metadata": {}, "source": "print(size)"}]}
    path = tmp_path / "page.ipynb"
    path.write_text(json.dumps(notebook))
    build.show_parameters_as_run(path, {"size": 32, "steps": [5]})
    cells = json.loads(path.read_text())["cells"]
    assert len(cells) == 2 and cells[1]["source"] == "print(size)"
    assert cells[0]["source"].splitlines()[1:] == ["size = 32  # image side", "steps = [5]  # two lines", "seed = 0"]
