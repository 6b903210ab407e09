"""What a batch needs to know of its grader, without loading the grader (and torch) in the batch's own process.

A batch keys its gradebook on two fingerprints of the grader (``evidence_store``), and lays its exports out by the
assignment's tasks and checks. Both need the grader module, which imports torch: 2.5-3.5 s of CPU in the batch's
process, at the very moment the zygote and the fork server import it on the same two cores. A local batch asks a
process forked from its fork server instead, where torch and the grader's code are loaded already, and reads the
answer as JSON. A batch on a Dask cluster, and the commands that only rebuild exports, compute it in their own
process, as does a local batch whose fork server could not answer: the same function either way, so the same
fingerprints and the same error for a broken grader.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from ..config import AssignmentConfig
from .exports import TaskInfo
from .report import CheckInfo

FORK_SERVER_SECONDS = 300  # the fork server's own start (torch, sympy) comes first, on a loaded machine


@dataclass(frozen=True)
class GraderFacts:
    execution: str  # execution_fingerprint: a gradebook row's grader_version
    scoring: str  # scoring_fingerprint: a row's scoring_version
    tasks: tuple[TaskInfo, ...]
    checks: tuple[CheckInfo, ...]  # in task order, then the grader's order
    max_total: float

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "GraderFacts":
        data = json.loads(text)
        return cls(str(data["execution"]), str(data["scoring"]), tuple(TaskInfo(**t) for t in data["tasks"]),
                   tuple(CheckInfo(**c) for c in data["checks"]), float(data["max_total"]))


def load_grader(name: str, entry: AssignmentConfig):
    """The assignment's grader, for re-checking stored snapshots: it never runs a notebook. Imports torch."""
    from ..evidence_store import NoExecution
    from ..pipeline import Grader

    return Grader.from_config(name, entry, executor=NoExecution())


def grader_facts(name: str, entry: AssignmentConfig) -> GraderFacts:
    """Computed here (imports torch). Raises GradingError for a grader that cannot be loaded."""
    from ..evidence_store import execution_fingerprint, scoring_fingerprint

    grader = load_grader(name, entry)
    execution = execution_fingerprint(grader)
    assignment = grader.assignment
    tasks = tuple(TaskInfo(t.number, t.title, sum(entry.checks[c.id].points for c in assignment.checks_of(t.number)))
                  for t in assignment.tasks)
    checks = tuple(CheckInfo(c.id, c.task, c.title, entry.checks[c.id].points)
                   for t in sorted(assignment.tasks, key=lambda t: t.number) for c in assignment.checks_of(t.number))
    return GraderFacts(execution, scoring_fingerprint(grader, execution), tasks, checks,
                       sum(c.points for c in entry.checks.values()))


def facts_from_fork_server(name: str, entry: AssignmentConfig) -> GraderFacts:
    """Computed in a process forked from the batch's fork server; here, if that process gives no answer."""
    from .slots import fork_server_context

    context = fork_server_context()
    receive, send = context.Pipe(duplex=False)
    process = context.Process(target=send_facts, args=(name, entry.model_dump_json(), send), daemon=True)
    try:
        process.start()
        send.close()
        if receive.poll(FORK_SERVER_SECONDS):
            return GraderFacts.from_json(receive.recv_bytes(1 << 20).decode())
    except Exception:  # noqa: BLE001 - it died, could not start, or its answer is not facts: computed here instead
        pass
    finally:
        send.close()
        receive.close()
        if process.pid is not None:
            process.join(5)
            if process.is_alive():
                process.kill()
                process.join()
    return grader_facts(name, entry)


def send_facts(name: str, config_json: str, link) -> None:
    """In the process forked from the fork server. A failure sends nothing: the batch then computes the facts
    itself, and says the grader's error as it always has."""
    try:
        link.send_bytes(grader_facts(name, AssignmentConfig.model_validate_json(config_json)).to_json().encode())
    except BaseException:  # noqa: BLE001
        pass
    finally:
        link.close()
