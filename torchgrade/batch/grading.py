"""What a worker process runs (and a Dask task, through ``grade_to_data``): one submission graded into plain
JSON-able data, and the loop of a worker that grades the jobs its pool sends, one at a time (see worker.py)."""

from __future__ import annotations

import ctypes
import json
import os
import resource
import signal
import sys
import time
import traceback
from dataclasses import replace

from .. import processes
from ..config import AssignmentConfig
from ..errors import GradingError, SubmissionError
from ..sanitize import no_surrogates
from ..zygote import ZygoteClient

PR_SET_PDEATHSIG = 1


def prctl(option: int, value: int) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(option, value, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


# ----------------------------------------------------------------------- in the worker

def bare(reason: str) -> str:
    """A row's reason without the "could not grade: " the row itself stands for."""
    return reason.removeprefix("could not grade: ")


def grade_to_data(config_json: str, name: str, path: str, shown: str, zygote=None) -> dict:
    """Grade one notebook; the outcome as plain JSON-able data (what a worker writes, what a Dask task returns)."""
    # imported here: the batch's process imports this module for its pool, and must not import torch with it
    from ..evidence_store import EvidenceError, RecordingGrader, evidence_text

    started = time.monotonic()
    result: dict = {}
    try:
        entry = AssignmentConfig.model_validate_json(config_json)
        grader = RecordingGrader.from_config(name, entry, executor=executor_for(entry, zygote))
        report = replace(grader.grade_notebook(path), submission=shown)
        result = {"status": "graded", "report": report.to_dict()}
        try:
            result["evidence"] = [evidence_text(e) for e in grader.recorded]
        except (EvidenceError, ValueError, TypeError) as problem:  # graded, but cannot be re-scored later
            result["evidence"] = None
            result["notes"] = [f"the snapshots could not be stored ({problem}); a re-score will run it again"]
    except SubmissionError as problem:
        result = {"status": "failed", "failure_kind": "submission", "reason": bare(problem.one_line())}
    except GradingError as problem:
        result = {"status": "failed", "failure_kind": "grader", "reason": bare(problem.one_line())}
    except BaseException as problem:  # noqa: BLE001 - anything at all becomes this submission's row
        traceback.print_exc()
        result = {"status": "failed", "failure_kind": "grader",
                  "reason": f"internal error: {type(problem).__name__}: {problem}"[:500]}
    result["wall_seconds"] = round(time.monotonic() - started, 3)
    result["worker_peak_rss_kb"] = peak_memory_kb()
    result["kernel_peak_rss_kb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return result


def serve_jobs(link, config_json: str, name: str, batch_pid: int) -> None:
    """The worker process's whole life: grade each job the batch sends on ``link``, one at a time, until it closes."""
    os.setsid()
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() in (1, batch_pid):  # the fork server died before the line above took effect
        os._exit(1)
    while True:
        try:
            job = json.loads(link.recv_bytes())
        except (EOFError, OSError, ValueError):
            break
        grade_job(job, config_json, name)
        try:
            link.send_bytes(b"done")
        except OSError:
            break
    os._exit(0)  # no atexit handlers, no waiting for stray threads


def grade_job(job: dict, config_json: str, name: str) -> None:
    """One submission: its log, its grading, its result file (written whole, then renamed)."""
    log = os.open(job["log_path"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    reset_peak_memory()
    zygote = ZygoteClient(*job["zygote"]) if job.get("zygote") else None
    result = grade_to_data(config_json, name, job["path"], job["shown"], zygote)
    temporary = job["result_path"] + ".partial"
    text = no_surrogates(json.dumps(result, ensure_ascii=False))  # a lone surrogate must not lose this row
    with open(temporary, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(temporary, job["result_path"])
    sys.stdout.flush()
    sys.stderr.flush()


def reset_peak_memory() -> None:
    """Start this submission's peak (VmHWM) afresh in a worker that graded others before it."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
            handle.write("5")
    except OSError:
        pass  # the peak then covers the worker's life so far, as ru_maxrss does


def peak_memory_kb() -> int:
    """This process's peak resident set since ``reset_peak_memory`` (or since it started), in KiB."""
    found = processes.status_field("self", "VmHWM")  # ["123456", "kB"]
    return int(found[0]) if found else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def executor_for(entry: AssignmentConfig, zygote):
    """The batch's warm zygote when it has one (a ZygoteClient); else the configured engine."""
    from ..fork_executor import FallbackExecutor, WarmExecutor, make_executor

    if zygote is not None:
        return FallbackExecutor(WarmExecutor(zygote))
    return make_executor(entry.limits.engine)
