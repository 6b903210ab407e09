"""Shared fixtures: every corpus notebook is graded once per session, then many tests read the reports."""

from __future__ import annotations

import platform
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from torchgrade.config import load_config  # noqa: E402
from torchgrade.pipeline import Grader  # noqa: E402

CORPUS = ROOT / "tests" / "corpus" / "computational_graph"
MANIFEST = yaml.safe_load((CORPUS / "MANIFEST.yaml").read_text(encoding="utf-8"))["files"]
CONFIG = load_config(ROOT / "config.yaml")
ASSIGNMENT = CONFIG.assignments["computational_graph"]
REFERENCE_EVIDENCE = ROOT / "tests" / "corpus" / "reference_evidence"


def corpus_files(*kinds: str) -> list[str]:
    return [name for name, entry in MANIFEST.items() if entry["kind"] in kinds]


def grade_all(grader: Grader, folder: Path, names) -> dict:
    """name -> report for these notebooks of folder, two gradings at a time (each runs two kernels or forked runs)."""
    names = list(names)
    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip(names, pool.map(lambda name: grader.grade_notebook(folder / name), names)))


def kernel_grader(name: str, entry) -> Grader:
    """The assignment's grader with the reference engine (nbclient and ipykernel), whatever the configured one."""
    from torchgrade.executor import NbclientExecutor

    return Grader.from_config(name, entry, executor=NbclientExecutor())


# What shapes a kernel's run beyond the execution fingerprint (torch, the engine, limits, GIVEN code): these
# packages' versions, Python's patch version and the sandbox this host gives a kernel.
KERNEL_PACKAGES = ("nbclient", "ipykernel", "jupyter_client", "pyzmq", "ipython", "traitlets", "nbformat", "numpy",
                   "matplotlib", "matplotlib-inline")


def installed(packages) -> list[str]:
    from torchgrade.gradescope_bundle import installed_version

    return [f"{package}=={installed_version(package) or 'absent'}" for package in packages]


def kernel_reports(name: str, entry, folder: Path, names) -> dict:
    """name -> the reference engine's report, for these notebooks of a corpus folder.

    The kernels' evidence is kept in tests/corpus/reference_evidence/<assignment>, one file per notebook, keyed by
    its content, the engine's execution fingerprint (as the validation evidence is), Python's version, the sandbox
    and KERNEL_PACKAGES' versions. A session re-checks the stored evidence with the current checks, points and
    messages, and starts kernels only for notebooks whose evidence is missing or was recorded by another engine,
    torch, package, limit or GIVEN code; it then records theirs and forgets the rest (commit the folder). The warm
    engine, and the kernel engine on the hostile corpus, always run.
    """
    from torchgrade.evidence_store import execution_fingerprint
    from torchgrade.mutants import Cache, grade_or_recheck
    from torchgrade.sandbox import isolation

    grader = kernel_grader(name, entry)
    engine = " ".join([execution_fingerprint(grader), platform.python_version(),
                       isolation(entry.limits.sandbox).describe(), *installed(KERNEL_PACKAGES)])
    cache = Cache(REFERENCE_EVIDENCE / name, engine)
    names = list(names)

    def report(notebook: str):
        path = folder / notebook
        return grade_or_recheck(grader, path, path.read_text(encoding="utf-8"), cache)

    with ThreadPoolExecutor(max_workers=2) as pool:  # two gradings at a time, each running two kernels
        reports = dict(zip(names, pool.map(report, names)))
    cache.forget_unused()
    return reports


def warm_grader(name: str, entry) -> Grader:
    """The assignment's grader with the warm engine (fork_executor.py) instead of the configured one."""
    from torchgrade.fork_executor import WarmExecutor

    return Grader.from_config(name, entry, executor=WarmExecutor())


def warm_problem() -> str | None:
    from torchgrade.fork_executor import warm_problem as problem

    return problem()


# The warm engine forks runs into Linux namespaces; elsewhere grade.py falls back to the kernel engine (tested).
needs_warm_engine = pytest.mark.skipif(warm_problem() is not None, reason=str(warm_problem()))


def zygote_roots(pids) -> set[int]:
    """Among pids, each zygote itself: a Python process running zygote_runtime.py (bwrap's own command line names
    it too) whose parent is not one (a run's processes are forks of their zygote, with its command line)."""
    from torchgrade import processes

    def is_zygote_python(pid: int) -> bool:
        try:
            return (Path(f"/proc/{pid}/comm").read_text().strip() != "bwrap"
                    and b"zygote_runtime" in Path(f"/proc/{pid}/cmdline").read_bytes())
        except OSError:
            return False

    forks = {pid for pid in pids if is_zygote_python(pid)}
    return {pid for pid in forks if processes.parent_pid(pid) not in forks}


def comparable(report) -> dict:
    """Everything a student or instructor reads in a report, without timings: what two engines must agree on."""
    return {"score": report.score,
            "checks": [(c.id, c.score, c.passed, c.expected, c.found, c.hint, c.note, c.error) for c in report.checks],
            "notes": sorted(report.notes), "runs": report.runs}


@pytest.fixture(scope="session")
def grader() -> Grader:
    """The reference engine's grader: the warm engine's reports are compared with what it gives."""
    return kernel_grader("computational_graph", ASSIGNMENT)


@pytest.fixture(scope="session")
def corpus_reports():
    """Every readable corpus notebook's report by the reference engine (from its stored evidence when current)."""
    return kernel_reports("computational_graph", ASSIGNMENT, CORPUS, corpus_files("correct", "mistake", "format"))


def write_config(directory: Path, **overrides) -> Path:
    """A copy of config.yaml with only the computational_graph assignment (so a batch writes its files at the top of
    its output folder), pointing at the repo's real files, with some settings changed."""
    raw = yaml.safe_load((ROOT / "config.yaml").read_text(encoding="utf-8"))
    entry = raw["assignments"]["computational_graph"]
    raw["assignments"] = {"computational_graph": entry}
    for key in ("grader", "exercise", "solution"):
        entry[key] = str(ROOT / entry[key])
    for dotted, value in overrides.items():
        target = entry
        *parents, last = dotted.split("__")
        for parent in parents:
            target = target.setdefault(parent, {})
        target[last] = value
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return path


def slow_notebook(source: Path, target: Path, seconds: float) -> Path:
    """`source` with a pause at the top of task 1 (its checks and points unchanged): a test can find it running, kill
    what grades it, or interrupt the batch while it is graded."""
    import nbformat

    notebook = nbformat.read(source, as_version=4)
    cell = next(c for c in notebook.cells if c.source.startswith("# TASK 1"))
    cell.source = f"# TASK 1\nimport time\ntime.sleep({seconds})\n" + cell.source
    nbformat.write(notebook, target)
    return target
