"""Build, and run, a Gradescope autograder for one assignment.

Build it on your machine (see docs/classroom_and_gradescope.md)::

    python -m torchgrade.gradescope_bundle --output autograder.zip
        [--config config.yaml] [--assignment NAME] [--hidden-visibility hidden|after_due_date|after_published]

The zip has ``setup.sh`` and ``run_autograder`` at its root, next to a copy of the grader
(``torchgrade/``, ``grade.py``), a ``config.yaml`` holding only this assignment, its grader
module(s), exercise and solution, ``requirements.txt`` (versions pinned from the
environment the zip was built in) and ``torchgrade_bundle.json`` (the bundle's settings).

On Gradescope, ``run_autograder`` calls ``python -m torchgrade.gradescope_bundle --run``
from ``/autograder/source``: it grades the notebook in ``/autograder/submission/`` with the
bundled grader, in a grading run (hidden checks included, with the configured
visibility), and writes ``/autograder/results/results.json`` exactly once. Whatever
happens (no notebook, an unreadable one, a grader crash), a valid results.json with a
clear ``output`` is written; if Python itself cannot start, ``run_autograder`` writes one.
The ``/autograder`` root can be moved with ``--root`` or TORCHGRADE_AUTOGRADER_ROOT
(tests use a temporary folder).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import stat
import sys
import tempfile
import time
import traceback
import zipfile
from importlib import metadata
from pathlib import Path

import yaml

import torchgrade

from .config import load_config, pick_assignment
from .errors import GradingError, SubmissionError
from .hidden import GRADING_ENV, VISIBILITIES

ROOT_ENV = "TORCHGRADE_AUTOGRADER_ROOT"
DEFAULT_ROOT = Path("/autograder")
SETTINGS = "torchgrade_bundle.json"
PACKAGE_DIR = Path(torchgrade.__file__).resolve().parent
PROJECT_DIR = PACKAGE_DIR.parent
DEFAULT_CONFIG = PROJECT_DIR / "config.yaml"
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
# What the grader imports besides torch (pinned in requirements.txt at build time).
RUNTIME_PACKAGES = ("nbclient", "nbformat", "jupyter_client", "ipykernel", "pyzmq", "pydantic", "PyYAML", "numpy")
FIXED_DATE = (1980, 1, 1, 0, 0, 0)  # the same inputs give the same zip, byte for byte

SETUP_SH = """#!/usr/bin/env bash
# Gradescope runs this once, as root, when it builds the autograder image.
# It installs Python 3.10 or newer, a virtual environment, a CPU-only torch from the
# PyTorch CPU index, and the packages pinned in requirements.txt.
set -euo pipefail
ROOT="${{TORCHGRADE_AUTOGRADER_ROOT:-/autograder}}"
SOURCE="$ROOT/source"
VENV="$ROOT/venv"
TORCH_VERSION="{torch_version}"

python_ok() {{ "$1" -c 'import sys; sys.exit(sys.version_info < (3, 10))' >/dev/null 2>&1; }}
PYTHON=""
for candidate in python3.13 python3.12 python3.11 python3.10 python3; do
  if command -v "$candidate" >/dev/null 2>&1 && python_ok "$candidate"; then
    PYTHON="$(command -v "$candidate")"
    break
  fi
done
if [ -z "$PYTHON" ]; then
  apt-get update
  apt-get install -y python3.11 python3.11-venv
  PYTHON="$(command -v python3.11)"
fi
if ! "$PYTHON" -m venv "$VENV"; then
  apt-get update
  apt-get install -y "python$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')-venv"
  "$PYTHON" -m venv "$VENV"
fi
# The kernel sandbox (limits.sandbox: auto) uses bubblewrap when the container allows it.
{{ apt-get update -qq && apt-get install -y -qq bubblewrap; }} || echo "bubblewrap not installed: kernels will run without the sandbox"
"$VENV/bin/python" -m pip install --upgrade pip
"$VENV/bin/python" -m pip install --index-url {torch_index} "torch==$TORCH_VERSION"
"$VENV/bin/python" -m pip install -r "$SOURCE/requirements.txt"
"$VENV/bin/python" -c "import torch, nbclient, ipykernel; print('torch', torch.__version__, 'is ready')"
"""

RUN_AUTOGRADER = """#!/usr/bin/env bash
# Gradescope runs this for every submission, from /autograder. It grades the notebook in
# /autograder/submission with the grader bundled in /autograder/source, and never ends
# without /autograder/results/results.json.
ROOT="${TORCHGRADE_AUTOGRADER_ROOT:-/autograder}"
SOURCE="$ROOT/source"
RESULTS="$ROOT/results/results.json"
PYTHON="${TORCHGRADE_PYTHON:-$ROOT/venv/bin/python}"
if [ ! -x "$PYTHON" ]; then PYTHON="$(command -v python3 || echo python3)"; fi
mkdir -p "$ROOT/results"
cd "$SOURCE" || exit 0
export PYTHONPATH="$SOURCE"
TORCHGRADE_GRADING=1 "$PYTHON" -m torchgrade.gradescope_bundle --run --root "$ROOT"
status=$?
if [ ! -s "$RESULTS" ]; then
  printf '{"score": 0, "execution_time": 0, "output": "The autograder stopped before it could grade this submission (exit status %s). This is not a problem with your notebook: please tell your instructor.", "tests": []}\\n' "$status" > "$RESULTS"
fi
exit 0
"""


# ---- building ------------------------------------------------------------------------

def installed_version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def _declared_dependencies() -> list[str]:
    """Names in pyproject.toml's [project] dependencies, when the project has one."""
    pyproject = PROJECT_DIR / "pyproject.toml"
    if not pyproject.is_file():
        return []
    import tomllib

    try:
        declared = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("project", {}).get("dependencies", [])
    except (OSError, ValueError):
        return []
    return [m.group(0) for m in (re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", spec.strip()) for spec in declared) if m]


def requirements_text() -> str:
    """RUNTIME_PACKAGES and pyproject's dependencies, pinned to the versions installed here (never torch)."""
    lines = ["# Pinned from the environment this autograder was built in; torch comes from the CPU index in setup.sh."]
    seen = set()
    for name in (*RUNTIME_PACKAGES, *_declared_dependencies()):
        key = re.sub(r"[-_.]+", "-", name).lower()
        if key in seen or key == "torch":
            continue
        seen.add(key)
        version = installed_version(name)
        lines.append(f"{name}=={version}" if version else name)
    return "\n".join(lines) + "\n"


def torch_version() -> str:
    version = installed_version("torch")
    if version is None:
        raise GradingError("torch is not installed here, so the bundle cannot pin its version")
    return version.split("+")[0]  # 2.13.0+cpu -> 2.13.0: the CPU index serves the CPU build


def _package_files() -> list[tuple[Path, str]]:
    files = []
    for path in sorted(PACKAGE_DIR.rglob("*")):
        relative = path.relative_to(PACKAGE_DIR)
        if path.is_file() and "__pycache__" not in relative.parts and path.suffix not in (".pyc", ".pyo"):
            files.append((path, f"torchgrade/{relative.as_posix()}"))
    return files


def bundle_files(config_path: Path, assignment: str | None, hidden_visibility: str) -> dict[str, bytes]:
    """Every file of the zip, by its path inside the zip."""
    if hidden_visibility not in VISIBILITIES:
        raise GradingError(f"--hidden-visibility must be one of {', '.join(VISIBILITIES)}")
    config = load_config(config_path)
    name, entry = pick_assignment(config, assignment)
    if not entry.grader.is_file():
        raise GradingError(f"{entry.grader}: the grader module does not exist")
    files: dict[str, bytes] = {}
    for path, inside in _package_files():
        files[inside] = path.read_bytes()
    if (PROJECT_DIR / "grade.py").is_file():
        files["grade.py"] = (PROJECT_DIR / "grade.py").read_bytes()
    for module in sorted(entry.grader.parent.glob("*.py")):  # the grader and any helper modules beside it
        files[f"graders/{module.name}"] = module.read_bytes()
    data = entry.model_dump(mode="json")
    data["grader"] = f"graders/{entry.grader.name}"
    for key, folder in (("exercise", "exercises"), ("solution", "solutions")):
        path = getattr(entry, key)
        data[key] = f"{folder}/{path.name}"
        if path.is_file():
            files[data[key]] = path.read_bytes()
    header = f"# Generated by torchgrade.gradescope_bundle from {config_path.name}: only assignment {name!r}.\n"
    files["config.yaml"] = (header + yaml.safe_dump({"version": 1, "assignments": {name: data}},
                                                    sort_keys=False, allow_unicode=True)).encode("utf-8")
    settings = {"assignment": name, "hidden_visibility": hidden_visibility, "exercise": entry.exercise.name,
                "grader_version": torchgrade.__version__, "torch": torch_version()}
    files[SETTINGS] = (json.dumps(settings, indent=2) + "\n").encode("utf-8")
    files["requirements.txt"] = requirements_text().encode("utf-8")
    files["setup.sh"] = SETUP_SH.format(torch_version=settings["torch"], torch_index=TORCH_CPU_INDEX).encode("utf-8")
    files["run_autograder"] = RUN_AUTOGRADER.encode("utf-8")
    return files


def _check_bundle(files: dict[str, bytes]) -> None:
    """The bundled config must load and name a grader that is in the bundle."""
    with tempfile.TemporaryDirectory(prefix="torchgrade-bundle-") as scratch:
        for inside, content in files.items():
            if inside == "config.yaml" or inside.startswith("graders/"):
                target = Path(scratch, inside)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(content)
        settings = json.loads(files[SETTINGS])
        _, entry = pick_assignment(load_config(Path(scratch, "config.yaml")), settings["assignment"])
        if not entry.grader.is_file():
            raise GradingError("internal error: the bundled config names a grader missing from the bundle")


def build_bundle(output: str | Path, config_path: str | Path = DEFAULT_CONFIG, assignment: str | None = None,
                 hidden_visibility: str = "hidden") -> Path:
    output = Path(output)
    files = bundle_files(Path(config_path), assignment, hidden_visibility)
    _check_bundle(files)
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".partial")
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for inside in sorted(files):
            info = zipfile.ZipInfo(inside, date_time=FIXED_DATE)
            executable = inside in ("setup.sh", "run_autograder")
            info.external_attr = ((0o755 if executable else 0o644) | stat.S_IFREG) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, files[inside])
    os.replace(partial, output)
    return output


# ---- running inside Gradescope -------------------------------------------------------

IGNORED_PARTS = ("__MACOSX", ".ipynb_checkpoints")


def find_submission(folder: Path, preferred: str | None = None) -> Path:
    """The one notebook in the submission folder (searched recursively); the exercise's name wins a tie."""
    if not folder.is_dir():
        raise SubmissionError(f"{folder}: no submission folder")
    notebooks = sorted(
        path for path in folder.rglob("*")
        if path.is_file() and path.suffix.lower() == ".ipynb"
        and not any(part in IGNORED_PARTS or part.startswith(".") for part in path.relative_to(folder).parts)
    )
    if len(notebooks) == 1:
        return notebooks[0]
    if not notebooks:
        found = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
        listing = ", ".join(found[:10]) + (", ..." if len(found) > 10 else "") if found else "nothing"
        raise SubmissionError(f"no .ipynb notebook was submitted (found: {listing}); upload your notebook file")
    named = [p for p in notebooks if preferred and p.name == preferred]
    if len(named) == 1:
        return named[0]
    names = ", ".join(p.relative_to(folder).as_posix() for p in notebooks)
    wanted = f" named {preferred}" if preferred else ""
    raise SubmissionError(f"several notebooks were submitted ({names}); submit exactly one notebook{wanted}")


def write_results(path: Path, payload: dict) -> None:
    """Write results.json once, atomically: Gradescope never reads a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(partial, path)


def grade_submission(root: Path) -> dict:
    """The results.json payload for the submission under `root` (never raises)."""
    from .pipeline import Grader  # heavy imports only when grading
    from .render.gradescope import failure_payload, report_payload
    from .render.terminal import render_terminal

    source = root / "source"
    print(f"torchgrade {torchgrade.__version__} from {PACKAGE_DIR}")
    try:
        settings = json.loads((source / SETTINGS).read_text(encoding="utf-8"))
        name, entry = pick_assignment(load_config(source / "config.yaml"), settings.get("assignment"))
    except (OSError, ValueError, GradingError) as problem:
        traceback.print_exc()
        detail = problem.one_line() if isinstance(problem, GradingError) else f"{type(problem).__name__}: {problem}"
        return failure_payload(f"the autograder is not set up correctly ({detail}). "
                               "This is not a problem with your notebook: please tell your instructor.")
    try:
        notebook = find_submission(root / "submission", settings.get("exercise"))
        print(f"Grading {notebook.relative_to(root)} for assignment {name!r}")
        report = Grader.from_config(name, entry).grade_notebook(notebook)
    except GradingError as problem:
        print(f"Not graded: {problem.one_line()}")
        return failure_payload(problem.one_line(), entry=entry, grading=True)
    except Exception as problem:  # a grader bug must still leave a valid results.json
        traceback.print_exc()
        return failure_payload(f"internal error of the grader ({type(problem).__name__}: {problem}). "
                               "This is not a problem with your notebook: please tell your instructor.",
                               entry=entry, grading=True)
    print(render_terminal(report))  # stdout is shown to instructors only
    return report_payload(report, visibility=settings.get("hidden_visibility", "hidden"))


def run_autograder(root: str | Path | None = None) -> Path:
    root = Path(root or os.environ.get(ROOT_ENV) or DEFAULT_ROOT)
    os.environ[GRADING_ENV] = "1"  # a grading run: hidden checks are graded and reported
    started = time.monotonic()
    payload = grade_submission(root)
    payload["execution_time"] = round(time.monotonic() - started, 3)
    results = root / "results" / "results.json"
    write_results(results, payload)
    print(f"Wrote {results}: score {payload.get('score')}")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m torchgrade.gradescope_bundle",
                                     description="Build a Gradescope autograder zip (or, inside it, grade a submission).")
    parser.add_argument("--output", type=Path, help="where to write the autograder zip, e.g. autograder.zip")
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="config.yaml to bundle")
    parser.add_argument("--assignment", help="assignment name in config.yaml (default: the only one)")
    parser.add_argument("--hidden-visibility", choices=VISIBILITIES, default="hidden",
                        help="Gradescope visibility of hidden checks (default: hidden)")
    parser.add_argument("--run", action="store_true", help="grade /autograder/submission (what run_autograder does)")
    parser.add_argument("--root", type=Path, help=f"the autograder root for --run (default: ${ROOT_ENV} or /autograder)")
    args = parser.parse_args(argv)
    if args.run:
        run_autograder(args.root)
        return 0
    if args.output is None:
        parser.error("--output is required to build a bundle (or use --run inside Gradescope)")
    try:
        path = build_bundle(args.output, args.config, args.assignment, args.hidden_visibility)
    except GradingError as problem:
        print(f"gradescope_bundle: {problem.one_line()}", file=sys.stderr)
        return problem.exit_status
    print(f"Wrote {path}: upload it as the autograder of a Gradescope programming assignment.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
