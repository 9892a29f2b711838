"""Build the book: execute every chapter with papermill under a parameter profile, then render
the executed notebooks with Jupyter Book (which itself executes nothing).

    python book/build.py --profile ci       # small and quick: CI and `make book`
    python book/build.py --profile paper    # full size, the 2021 paper's settings
    python book/build.py --profile ci --chapters forward_model   # re-execute only these
    python book/build.py --chapters forward_model -p size 96 -p n_projections 500
    python book/build.py --chapters forward_model -f my_parameters.yml

``-p NAME VALUE`` (the papermill way; VALUE read as YAML: 96 is an int, 0.5 a float, true a
bool, [1, 2] a list, anything else a string) and ``-f FILE.yml`` (a mapping NAME: VALUE) set
parameters of the chapters executed, on top of the profile's; each name must be in every one
of those chapters' parameters cells with a value of the same type, or nothing runs.

Layout: a chapter is the MyST markdown notebook ``book/<stem>.md`` (the only tracked source).
It is converted with jupytext, executed by papermill (working directory: the repository root)
into ``book/_executed/<stem>.ipynb``, which is what ``_toc.yml`` lists; a page of ``book/``
with no code cells (the API reference) is listed as ``book/<name>`` and built as it is. A profile
``book/profiles/<name>.yml`` maps a chapter stem to the papermill parameters for it; every name
must be assigned in that chapter's cell tagged ``parameters``, with a value of the same type,
or the build stops before executing anything. A chapter that raises stops the build (its
partial output is kept as ``book/_executed/<stem>.failed.ipynb``), and so does any Sphinx
warning (``jupyter-book build -W``), e.g. a figure output the book cannot show.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
EXECUTED = Path("book") / "_executed"
PROFILES = Path("book") / "profiles"
PLOTLY_MIME = "application/vnd.plotly.v1+json"
#: Tells the executing kernel its profile: cryoposes.provenance.PROFILE_ENV (not imported here,
#: so that checking parameters needs no TensorFlow).
PROFILE_ENV = "CRYOPOSES_BOOK_PROFILE"
SOURCE_ENV = "CRYOPOSES_BOOK_SOURCE"


class BookError(Exception):
    """A problem with a chapter, a profile or the build, explained in the message."""


def toc_chapters(root: Path = ROOT) -> list[str]:
    """Stems of the executed chapters listed in ``_toc.yml``, in reading order (reference pages
    of ``book/`` without code cells are listed there too, and built as they are)."""
    toc = yaml.safe_load((root / "_toc.yml").read_text())
    files = []

    def collect(entry):
        if isinstance(entry, dict):
            if "file" in entry:
                files.append(entry["file"])
            for value in entry.values():
                if isinstance(value, list):
                    for child in value:
                        collect(child)

    files.append(toc["root"])
    collect(toc)
    stems = []
    for file in files:
        path = Path(file)
        if path.parent == Path("book") and _is_reference_page(root / f"{file}.md"):
            continue
        if path.parent != EXECUTED:
            raise BookError(f"_toc.yml entry {file!r}: chapters must be listed as {EXECUTED}/<stem> "
                            f"(or be a page of book/ with no code cells)")
        stems.append(path.stem)
    return stems


def _is_reference_page(page: Path) -> bool:
    """A page of the book built as it is, with nothing to execute (the API reference)."""
    return page.is_file() and "{code-cell}" not in page.read_text()


def parameter_defaults(chapter: Path) -> dict:
    """Names and default values assigned in the chapter's cell tagged ``parameters``."""
    import jupytext

    notebook = jupytext.read(chapter)
    cells = [cell for cell in notebook.cells if "parameters" in cell.metadata.get("tags", [])]
    if len(cells) != 1:
        raise BookError(f"{chapter}: expected one cell tagged 'parameters', found {len(cells)}")
    defaults = {}
    for statement in ast.parse(cells[0].source).body:
        targets = (
            statement.targets if isinstance(statement, ast.Assign)
            else [statement.target] if isinstance(statement, ast.AnnAssign) and statement.value
            else None
        )
        if not targets or not all(isinstance(target, ast.Name) for target in targets):
            raise BookError(
                f"{chapter}: the parameters cell may only assign literal values to names "
                f"(line {statement.lineno})"
            )
        try:
            value = ast.literal_eval(statement.value)
        except ValueError:
            raise BookError(
                f"{chapter}: parameter {targets[0].id!r} must have a literal default "
                f"(line {statement.lineno})"
            ) from None
        for target in targets:
            defaults[target.id] = value
    return defaults


def _same_kind(value, default) -> bool:
    """Whether a profile value can stand in for a default (ints pass for floats)."""
    if default is None:
        return True
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    if isinstance(default, (list, tuple)):
        return isinstance(value, (list, tuple)) and (
            not default or all(_same_kind(item, default[0]) for item in value)
        )
    return isinstance(value, type(default))


def check_parameters(stem: str, parameters: dict, root: Path = ROOT) -> list[str]:
    """Problems of ``parameters`` for chapter ``stem``: names its parameters cell lacks, values
    of another type than the default's."""
    defaults = parameter_defaults(root / "book" / f"{stem}.md")
    problems = []
    for name, value in parameters.items():
        if name not in defaults:
            problems.append(
                f"{stem}: unknown parameter {name!r} (the parameters cell has "
                f"{', '.join(defaults) or 'none'})"
            )
        elif not _same_kind(value, defaults[name]):
            problems.append(
                f"{stem}: parameter {name!r} = {value!r} ({type(value).__name__}) does not "
                f"match its default {defaults[name]!r} ({type(defaults[name]).__name__})"
            )
    return problems


def command_line_parameters(pairs, files) -> dict:
    """Parameters from ``-p NAME VALUE`` pairs (values read as YAML) and ``-f`` YAML files."""
    parameters = {}
    for file in files or []:
        path = Path(file)
        if not path.is_file():
            raise BookError(f"no parameters file {path}")
        content = yaml.safe_load(path.read_text()) or {}
        if not isinstance(content, dict) or not all(isinstance(name, str) for name in content):
            raise BookError(f"{path}: expected a mapping NAME: VALUE")
        parameters.update(content)
    for name, value in pairs or []:
        parameters[name] = yaml.safe_load(value)
    return parameters


def load_profile(name: str, root: Path = ROOT) -> dict[str, dict]:
    """The profile's parameters per chapter, checked against the chapters' parameters cells."""
    path = root / PROFILES / f"{name}.yml"
    if not path.is_file():
        available = sorted(p.stem for p in (root / PROFILES).glob("*.yml"))
        raise BookError(f"no profile {name!r} ({path}); available: {', '.join(available)}")
    profile = yaml.safe_load(path.read_text()) or {}
    if not isinstance(profile, dict):
        raise BookError(f"{path}: expected a mapping chapter stem → parameters")
    chapters = toc_chapters(root)
    problems = []
    for stem, parameters in profile.items():
        if stem not in chapters:
            problems.append(f"{stem!r} is not a chapter in _toc.yml ({', '.join(chapters)})")
            continue
        if not isinstance(parameters, dict):
            problems.append(f"{stem}: expected a mapping parameter → value")
            continue
        problems += check_parameters(stem, parameters, root)
    if problems:
        raise BookError(f"profile {path}:\n  " + "\n  ".join(problems))
    return {stem: profile.get(stem) or {} for stem in chapters}


@contextlib.contextmanager
def this_interpreter_kernel():
    """Within the block, the kernel ``python3`` runs this interpreter (the project's venv),
    whatever kernelspecs the user has: JUPYTER_PATH is searched before every other place."""
    from ipykernel.kernelspec import write_kernel_spec

    previous = os.environ.get("JUPYTER_PATH")
    with tempfile.TemporaryDirectory() as directory:
        write_kernel_spec(Path(directory) / "kernels" / "python3")
        os.environ["JUPYTER_PATH"] = os.pathsep.join(filter(None, [directory, previous]))
        try:
            yield
        finally:
            if previous is None:
                del os.environ["JUPYTER_PATH"]
            else:
                os.environ["JUPYTER_PATH"] = previous


def execute_chapter(stem: str, parameters: dict, root: Path = ROOT, profile: str | None = None) -> Path:
    """Convert ``book/<stem>.md`` and execute it with ``parameters``; return the notebook path.
    ``profile`` describes the parameters for the page's banner (``cryoposes.provenance``)."""
    import jupytext
    import papermill

    notebook = jupytext.read(root / "book" / f"{stem}.md")
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    out_dir = root / EXECUTED
    out_dir.mkdir(parents=True, exist_ok=True)
    executed = out_dir / f"{stem}.ipynb"
    failed = out_dir / f"{stem}.failed.ipynb"
    executed.unlink(missing_ok=True)
    previous = {name: os.environ.get(name) for name in (PROFILE_ENV, SOURCE_ENV)}
    if profile is not None:
        os.environ[PROFILE_ENV] = profile  # the kernel inherits these
    os.environ[SOURCE_ENV] = source_url(stem, root)
    try:
        papermill.execute_notebook(
            notebook,
            str(failed),
            parameters=parameters,
            kernel_name="python3",
            cwd=str(root),
            progress_bar=False,
            request_save_on_cell_execute=False,
            start_timeout=180,
        )
    except papermill.PapermillExecutionError as error:
        raise BookError(
            f"chapter {stem} failed in cell {error.exec_count}: {error.ename}: {error.evalue}\n"
            f"  executed notebook with the traceback: {failed.relative_to(root)}"
        ) from None
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    check_figures(failed)
    show_parameters_as_run(failed, parameters)
    failed.replace(executed)
    return executed


def show_parameters_as_run(executed: Path, parameters: dict) -> None:
    """Show one parameters cell holding the values the page ran with: papermill leaves the
    defaults cell and adds a cell of injected values below it; the values replace the defaults
    in place (comments kept) and the injected cell is dropped. Nothing is executed again."""
    notebook = json.loads(executed.read_text())
    cells = notebook["cells"]
    tagged = [index for index, cell in enumerate(cells) if "parameters" in cell["metadata"].get("tags", [])]
    if len(tagged) != 1:
        return
    cell = cells[tagged[0]]
    lines = "".join(cell["source"]).split("\n")
    for node in reversed(ast.parse("\n".join(lines)).body):
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name) \
                and node.targets[0].id in parameters:
            first, last = node.lineno - 1, node.end_lineno - 1
            comment = lines[last][node.end_col_offset:]
            lines[first:last + 1] = [f"{node.targets[0].id} = {parameters[node.targets[0].id]!r}{comment}"]
    header = "# The values this page ran with (its profile's, see the banner; defaults otherwise)"
    cell["source"] = "\n".join([header, *lines])
    notebook["cells"] = [other for other in cells
                         if "injected-parameters" not in other["metadata"].get("tags", [])]
    executed.write_text(json.dumps(notebook, indent=1) + "\n")


def source_url(stem: str, root: Path = ROOT) -> str:
    """The chapter's MyST source in the repository named by ``_config.yml`` (or its path)."""
    config = yaml.safe_load((root / "_config.yml").read_text()) or {}
    repository = config.get("repository") or {}
    if not repository.get("url"):
        return f"book/{stem}.md"
    return f"{repository['url'].rstrip('/')}/blob/{repository.get('branch', 'main')}/book/{stem}.md"


def check_figures(executed: Path) -> None:
    """Fail on plotly figures the book would drop: plotly's own output type alone (Jupyter Book
    skips it, and the build is told not to warn since our renderer also writes it)."""
    notebook = json.loads(executed.read_text())
    for index, cell in enumerate(notebook["cells"]):
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if PLOTLY_MIME in data and "text/html" not in data:
                raise BookError(
                    f"{executed.name}, cell {index}: a plotly figure without HTML; call "
                    f"cryoposes.plotting.setup_notebook() at the top of the chapter"
                )


def build_html(root: Path = ROOT) -> Path:
    """Render the executed chapters; any Sphinx warning fails the build."""
    jupyter_book = Path(sys.executable).with_name("jupyter-book")
    command = [str(jupyter_book), "build", str(root), "--builder", "html", "--all", "-W", "--keep-going"]
    if subprocess.run(command, cwd=root).returncode != 0:
        raise BookError("jupyter-book build failed (warnings are errors); see its output above")
    return root / "_build" / "html"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="ci", help="book/profiles/<PROFILE>.yml (default: ci)")
    parser.add_argument(
        "--chapters", nargs="+", metavar="STEM",
        help="execute only these chapters (the others must have been executed already)",
    )
    parser.add_argument("-p", "--parameter", nargs=2, action="append", metavar=("NAME", "VALUE"),
                        help="set a parameter of the chapters executed (VALUE read as YAML)")
    parser.add_argument("-f", "--parameters-file", action="append", metavar="FILE.yml",
                        help="set parameters of the chapters executed from a YAML mapping NAME: VALUE")
    parser.add_argument("--no-html", action="store_true", help="execute the chapters only")
    args = parser.parse_args(argv)
    try:
        profile = load_profile(args.profile)
        chapters = args.chapters or list(profile)
        unknown = sorted(set(chapters) - set(profile))
        if unknown:
            raise BookError(f"unknown chapters {unknown}; _toc.yml has {', '.join(profile)}")
        given = command_line_parameters(args.parameter, args.parameters_file)
        problems = [problem for stem in chapters for problem in check_parameters(stem, given)]
        if problems:
            raise BookError("parameters from the command line:\n  " + "\n  ".join(problems))
        described = f"{args.profile}" + "".join(f", {name} = {value!r}" for name, value in given.items())
        with this_interpreter_kernel():
            failures = []
            for stem in chapters:
                start = time.perf_counter()
                parameters = {**profile[stem], **given}
                print(f"executing {stem} ({described}: {parameters or 'defaults'})", flush=True)
                try:
                    execute_chapter(stem, parameters, profile=described)
                except BookError as error:
                    failures.append(str(error))
                    print(f"  FAILED: {error}", flush=True)
                else:
                    print(f"  done in {time.perf_counter() - start:.0f} s", flush=True)
            if failures:
                raise BookError(f"{len(failures)} chapter(s) failed:\n" + "\n".join(failures))
        missing = [stem for stem in profile if not (ROOT / EXECUTED / f"{stem}.ipynb").is_file()]
        if missing:
            raise BookError(f"chapters not executed yet: {', '.join(missing)}")
        if not args.no_html:
            html = build_html()
            print(f"book: {html / 'index.html'}")
    except BookError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
