"""GitHub Classroom, JUnit and Gradescope formats, hidden checks, and the Classroom workflow.

Three corpus notebooks (a correct one, a wrong answer, and one whose task 1 raises) are
rendered in every format, from the corpus reports graded once per session (conftest.py);
every corpus report proves the formats agree on each check's status. The workflow's grading step is run for
real in a copy of a Classroom template repository, and its `$GITHUB_OUTPUT` decoded the
way the reporter decodes it.
"""

from __future__ import annotations

import base64
import csv
import json
import math
import os
import re
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import jsonschema
import pytest
import xmlschema
import yaml

from conftest import CORPUS, ROOT, write_config
from torchgrade.cli import main as cli_main
from torchgrade.hidden import HiddenSummary, grading_requested, student_view
from torchgrade.render import FAILURE_RENDERERS, RENDERERS, render_failure, render_report
from torchgrade.render.classroom import MESSAGE_LIMIT, classroom_payload, quantized, safe_text
from torchgrade.render.gradescope import report_payload
from torchgrade.render.status import check_status
from torchgrade.results import GradeReport

SCHEMAS = ROOT / "tests" / "schemas"
CLASSROOM_SCHEMA = json.loads((SCHEMAS / "classroom_payload.schema.json").read_text(encoding="utf-8"))
GRADESCOPE_SCHEMA = json.loads((SCHEMAS / "gradescope_results.schema.json").read_text(encoding="utf-8"))
JUNIT_XSD = xmlschema.XMLSchema(str(SCHEMAS / "junit-10.xsd"))
WORKFLOW = ROOT / ".github" / "workflows" / "classroom.yml"
COMMAND_LINE = re.compile(r"(^|\n)[ \t]*(::|##\[)")
NOTEBOOKS = ("correct_solution.ipynb", "wrong_function.ipynb", "error_in_task1.ipynb")
HIDDEN_IDS = ("t1_f_value", "t5_retain_graph")  # 2 + 1 points


def validate_classroom(payload: dict) -> None:
    jsonschema.validate(payload, CLASSROOM_SCHEMA, cls=jsonschema.Draft202012Validator)
    assert type(payload["max_score"]) is int
    for test in payload["tests"]:
        assert float(test["score"] * 64).is_integer()


def reporter_points(payload: dict) -> str:
    """What the reporter's NotifyClassroom posts: the sum of tests[].score over max_score, summed in order."""
    total = 0
    for test in payload["tests"]:
        total += test["score"]
    return f"Points {total:g}/{payload['max_score']}"


@pytest.fixture(autouse=True)
def no_ambient_ci(monkeypatch):
    """Tests decide the grading mode and the step summary themselves, whatever the environment says."""
    for name in ("TORCHGRADE_GRADING", "TORCHGRADE_HIDDEN_VISIBILITY", "GITHUB_STEP_SUMMARY"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def reports(corpus_reports) -> dict[str, GradeReport]:
    """Three of the shared corpus reports (graded once per session in conftest.py)."""
    return {name: corpus_reports[name] for name in NOTEBOOKS}


@pytest.fixture(scope="session")
def hidden_report(reports) -> GradeReport:
    """wrong_function's report as config.yaml with `hidden: true` on HIDDEN_IDS makes it (scoring copies the flag)."""
    report = reports["wrong_function.ipynb"]
    tasks = tuple(replace(t, checks=tuple(replace(c, hidden=c.id in HIDDEN_IDS) for c in t.checks))
                  for t in report.tasks)
    return replace(report, tasks=tasks)


def with_check(report: GradeReport, check_id: str, **changes) -> GradeReport:
    tasks = tuple(replace(t, checks=tuple(replace(c, **changes) if c.id == check_id else c for c in t.checks))
                  for t in report.tasks)
    return replace(report, tasks=tasks)


# ---- the graded notebooks are what the tests below assume ---------------------------------

def test_fixture_notebooks_grade_as_the_corpus_says(reports):
    assert reports["correct_solution.ipynb"].score == 20
    wrong = reports["wrong_function.ipynb"]
    assert wrong.score == 18 and [c.id for c in wrong.checks if not c.passed] == ["t1_f_value"]
    crashed = reports["error_in_task1.ipynb"]
    assert {c.id for c in crashed.checks if not c.passed} == {"t1_f_value", "t1_f_graph"}


# ---- GitHub Classroom payload -------------------------------------------------------------

@pytest.mark.parametrize("name", NOTEBOOKS)
def test_classroom_payload_is_valid_and_gives_partial_credit_per_check(reports, name):
    report = reports[name]
    payload = json.loads(RENDERERS["classroom"](report))
    validate_classroom(payload)
    assert payload["max_score"] == 20 and len(payload["tests"]) == len(report.checks) == 13
    assert reporter_points(payload) == f"Points {report.score:g}/20"
    assert payload["status"] == ("pass" if report.score == 20 else "fail")
    for test, check in zip(payload["tests"], report.checks):
        assert test["score"] == check.score and check.title in test["name"]
        assert test["filename"] == name and test["message"].startswith(f"{check.score:g}/{check.max_score:g} points.")


def test_classroom_statuses_separate_wrong_answers_from_tasks_that_could_not_run(reports, corpus_reports):
    wrong = json.loads(RENDERERS["classroom"](reports["wrong_function.ipynb"]))
    crashed = json.loads(RENDERERS["classroom"](reports["error_in_task1.ipynb"]))
    assert [t["status"] for t in wrong["tests"]].count("fail") == 1 and wrong["tests"][0]["status"] == "fail"
    assert "different function" in wrong["tests"][0]["message"]
    # Task 1's code ran and raised: a wrong answer (fail), with the exception in the message.
    assert [t["status"] for t in crashed["tests"][:2]] == ["fail", "fail"]
    assert "NameError" in crashed["tests"][0]["message"]
    assert {t["status"] for t in crashed["tests"][2:]} == {"pass"}
    deleted = json.loads(RENDERERS["classroom"](corpus_reports["task_cell_deleted.ipynb"]))
    assert {t["status"] for t in deleted["tests"] if t["test_code"].startswith("check t3_")} == {"error"}


# ---- one status vocabulary: every format says the same thing about every check -------------

def statuses_by_format(report: GradeReport, tmp_path: Path) -> dict[str, list[str]]:
    """passed / failed / error per check, as each format says it (read back from the rendered document)."""
    from torchgrade.batch.exports import StudentRow, write_checks_csv

    back = {"pass": "passed", "fail": "failed", "error": "error"}
    found = {}
    payload = json.loads(render_report("json", report, grading=True))
    jsonschema.validate(payload, GRADESCOPE_SCHEMA)
    assert all(t["status"] == ("passed" if t["outcome"] == "passed" else "failed") for t in payload["tests"])
    found["json"] = [t["outcome"] for t in payload["tests"]]
    found["gradescope"] = [t["outcome"] for t in report_payload(report, visibility="after_published")["tests"]]
    found["classroom"] = [back[t["status"]] for t in json.loads(render_report("classroom", report, grading=True))["tests"]]
    suites = JUNIT_XSD.to_dict(render_report("junit", report, grading=True))["testsuite"]
    found["junit"] = ["error" if "error" in case else "failed" if "failure" in case else "passed"
                      for suite in suites for case in suite.get("testcase", [])]
    path = tmp_path / "checks.csv"
    write_checks_csv(path, [StudentRow("s", "f.ipynb", "graded", report=report)])
    found["csv"] = [row["status"] for row in csv.DictReader(open(path, encoding="utf-8"))]
    return found


def test_every_format_gives_each_check_the_same_status(corpus_reports, tmp_path):
    seen = set()
    for name, report in corpus_reports.items():
        expected = [check_status(c) for c in report.checks]
        for fmt, statuses in statuses_by_format(report, tmp_path).items():
            assert statuses == expected, (name, fmt)
        seen.update(expected)
        if name in ("missing_retain_graph.ipynb", "error_in_task1.ipynb", "hardcoded_task5_sum.ipynb"):
            assert "error" not in expected, name  # the code ran (and raised): a wrong answer, not an error
    assert seen == {"passed", "failed", "error"}
    retain = {c.id: check_status(c) for c in corpus_reports["missing_retain_graph.ipynb"].checks}
    assert retain["t5_retain_graph"] == retain["t5_grad_values"] == "failed"
    deleted = corpus_reports["task_cell_deleted.ipynb"]
    assert {check_status(c) for c in deleted.checks if c.task == 3} == {"error"}


def test_classroom_scores_are_exact_binary_fractions_and_max_score_an_integer(reports):
    report = reports["wrong_function.ipynb"]
    decimals = iter([0.1, 0.2, 0.1, 0.1, 0.3, 0.1, 0.2, 0.1, 0.1, 0.1, 0.2, 0.1, 0.1])  # total 1.8
    tasks = tuple(replace(t, checks=tuple(replace(c, max_score=(p := next(decimals)), score=p if c.passed else 0.0)
                                          for c in t.checks)) for t in report.tasks)
    report = replace(report, tasks=tasks)
    assert sum(c.score for c in report.checks) != round(sum(c.score for c in report.checks), 6)  # the float trap
    payload = classroom_payload(report)
    validate_classroom(payload)
    assert payload["max_score"] == 2  # 1.8 rounded; scores scaled by 2/1.8 to keep the percentage
    total = sum(t["score"] for t in payload["tests"])
    assert float(total * 64).is_integer() and math.isclose(total, report.score * 2 / 1.8, abs_tol=1 / 128)
    assert quantized([0.1] * 3) == [0.09375, 0.109375, 0.09375] and sum(quantized([0.1] * 3)) == 0.296875


def test_classroom_text_never_starts_a_workflow_command_and_is_truncated(reports):
    evil = "\n".join(["", "::add-mask::secret", "   ::error file=x::boom", "##[group]fold", "\x1b[31mred\x00", "x" * 2000])
    report = with_check(reports["wrong_function.ipynb"], "t1_f_value", found=evil, title="::set-output name=a::b")
    payload = json.loads(RENDERERS["classroom"](report))
    validate_classroom(payload)
    test = payload["tests"][0]
    assert not COMMAND_LINE.search(test["message"]) and not COMMAND_LINE.search(test["name"])
    assert len(test["message"]) <= MESSAGE_LIMIT and test["message"].endswith("…")
    assert ": :add-mask: :secret" not in test["message"] and ": :add-mask::secret" in test["message"]
    assert "\x1b" not in test["message"] and "\x00" not in test["message"]
    assert safe_text("a\r\n::x", 50) == "a\n: :x"


def test_step_summary_gets_a_markdown_table_appended(reports, tmp_path, monkeypatch):
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n", encoding="utf-8")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    report = with_check(reports["wrong_function.ipynb"], "t1_f_value", found="a | b <script>")
    RENDERERS["classroom"](report)
    text = summary.read_text(encoding="utf-8")
    assert text.startswith("earlier step\n")
    assert "### Computational graphs and autograd: 18 / 20 points" in text
    assert "| Task | Check | Points | Result |" in text
    assert len([line for line in text.splitlines() if line.startswith("| ") and " / " in line]) == 13
    assert "a \\| b &lt;script&gt;" in text and "<script>" not in text
    assert "| 1. Build f = x³ + y² | f equals x³ + y² | 0 / 2 | ❌" in text


def test_without_step_summary_nothing_is_written(reports, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    RENDERERS["classroom"](reports["correct_solution.ipynb"])
    assert list(tmp_path.iterdir()) == []


# ---- JUnit --------------------------------------------------------------------------------

@pytest.mark.parametrize("name", NOTEBOOKS)
def test_junit_validates_against_junit_10_xsd(reports, name):
    xml = RENDERERS["junit"](reports[name])
    JUNIT_XSD.validate(xml)
    data = JUNIT_XSD.to_dict(xml)
    suites = data["testsuite"]
    assert len(suites) == 5 and sum(len(s["testcase"]) for s in suites) == 13
    cases = {c["@name"].split(":")[0]: c for s in suites for c in s["testcase"]}
    failed = {k for k, c in cases.items() if "failure" in c}
    errored = {k for k, c in cases.items() if "error" in c}
    expected = {"correct_solution.ipynb": (set(), set()),
                "wrong_function.ipynb": ({"t1_f_value"}, set()),
                "error_in_task1.ipynb": ({"t1_f_value", "t1_f_graph"}, set())}[name]  # it ran and raised: failed
    assert (failed, errored) == expected
    assert data["@failures"] == str(len(failed)) and data["@errors"] == str(len(errored)) and data["@tests"] == "13"


def test_junit_failure_carries_the_message(reports):
    xml = RENDERERS["junit"](reports["wrong_function.ipynb"])
    case = JUNIT_XSD.to_dict(xml)["testsuite"][0]["testcase"][0]
    assert case["@name"] == "t1_f_value: f equals x³ + y²" and case["@classname"] == "computational_graph.task1"
    assert case["failure"][0]["@message"].startswith("0/2 points: Expected:")
    assert "exponents look swapped" in case["failure"][0]["$"]


def test_junit_survives_characters_xml_cannot_hold(reports):
    report = with_check(reports["wrong_function.ipynb"], "t1_f_value", found="bell\x07 nul\x00 esc\x1b ]]> &amp;")
    xml = RENDERERS["junit"](report)
    JUNIT_XSD.validate(xml)
    assert "]]&gt;" in xml and "&amp;amp;" in xml


# ---- Gradescope JSON ----------------------------------------------------------------------

def test_gradescope_json_marks_hidden_checks_with_the_configured_visibility(hidden_report, monkeypatch):
    payload = report_payload(hidden_report)
    jsonschema.validate(payload, GRADESCOPE_SCHEMA)
    visibility = {t["check"]: t["visibility"] for t in payload["tests"]}
    assert {k for k, v in visibility.items() if v == "hidden"} == set(HIDDEN_IDS)
    assert set(visibility.values()) == {"hidden", "visible"} and payload["score"] == 18
    assert [t["number"] for t in payload["tests"][:3]] == ["1.1", "1.2", "2.1"]
    assert {t["visibility"] for t in report_payload(hidden_report, visibility="after_published")["tests"]} == \
        {"after_published", "visible"}
    monkeypatch.setenv("TORCHGRADE_HIDDEN_VISIBILITY", "after_due_date")
    assert "after_due_date" in {t["visibility"] for t in report_payload(hidden_report)["tests"]}
    with pytest.raises(ValueError):
        report_payload(hidden_report, visibility="sometimes")


# ---- hidden checks: a student's run against a grading run ----------------------------------

@pytest.mark.parametrize("fmt", sorted(RENDERERS))
def test_student_run_never_shows_what_hidden_checks_test(hidden_report, fmt):
    out = render_report(fmt, hidden_report, grading=False)
    hidden = [c for c in hidden_report.checks if c.hidden]
    for check in hidden:
        assert check.id not in out and check.title not in out
    assert "different function" not in out and "exponents look swapped" not in out  # t1_f_value's feedback
    if fmt == "text":
        assert "Score: 17 / 17" in out
        assert "2 hidden checks (3 points) will also run when your notebook is graded" in out
    elif fmt == "classroom":
        payload = json.loads(out)
        validate_classroom(payload)
        assert payload["max_score"] == 17 and len(payload["tests"]) == 11 and reporter_points(payload) == "Points 17/17"
    elif fmt == "json":
        payload = json.loads(out)
        jsonschema.validate(payload, GRADESCOPE_SCHEMA)
        assert payload["score"] == payload["max_score"] == 17 and "2 hidden checks" in payload["output"]
    elif fmt == "junit":
        JUNIT_XSD.validate(out)
        assert 'tests="11"' in out and "2 hidden checks" in out


def test_grading_run_reports_hidden_checks(hidden_report, monkeypatch):
    text = render_report("text", hidden_report, grading=True)
    assert "Score: 18 / 20" in text and "[FAIL] f equals x³ + y² (hidden)" in text and "hidden checks" not in text
    monkeypatch.setenv("TORCHGRADE_GRADING", "1")  # what run_autograder and an instructor's batch job set
    assert grading_requested() and json.loads(render_report("classroom", hidden_report))["max_score"] == 20


def test_student_view_drops_tasks_left_without_visible_checks(reports):
    report = reports["correct_solution.ipynb"]
    tasks = tuple(replace(t, checks=tuple(replace(c, hidden=t.number == 4) for c in t.checks)) for t in report.tasks)
    view, hidden = student_view(replace(report, tasks=tasks))
    assert [t.number for t in view.tasks] == [1, 2, 3, 5] and hidden == HiddenSummary(3, 5.0)
    assert "Task 4" not in render_report("text", replace(report, tasks=tasks))


# ---- a notebook that cannot be graded still yields a complete document --------------------

@pytest.mark.parametrize("fmt", sorted(FAILURE_RENDERERS))
def test_cli_unreadable_notebook_prints_a_complete_document(fmt, capsys):
    status = cli_main([str(CORPUS / "not_json.ipynb"), "--assignment", "computational_graph", "--format", fmt])
    out, err = capsys.readouterr()
    assert status == 3 and err.startswith("grade.py: could not read the submission")
    if fmt == "classroom":
        payload = json.loads(out)
        validate_classroom(payload)
        assert payload["status"] == "error" and payload["max_score"] == 20 and reporter_points(payload) == "Points 0/20"
        assert "not JSON" in payload["tests"][0]["message"]
    elif fmt == "junit":
        JUNIT_XSD.validate(out)
        assert 'errors="13"' in out and "not JSON" in out
    else:
        payload = json.loads(out)
        jsonschema.validate(payload, GRADESCOPE_SCHEMA)
        assert payload["score"] == 0 and "not JSON" in payload["output"]


def test_failure_documents_leave_hidden_points_out_of_a_students_run(tmp_path, capsys):
    config = write_config(tmp_path, checks__t1_f_value__hidden=True)
    cli_main([str(CORPUS / "empty.ipynb"), "--format", "classroom", "--config", str(config)])
    assert json.loads(capsys.readouterr().out)["max_score"] == 18
    cli_main([str(CORPUS / "empty.ipynb"), "--format", "classroom", "--config", str(config), "--grading"])
    assert json.loads(capsys.readouterr().out)["max_score"] == 20
    xml = render_failure("junit", "boom", name="computational_graph", entry=None)
    JUNIT_XSD.validate(xml)


def test_bad_config_still_gives_the_reporter_a_valid_payload(tmp_path, capsys):
    bad = tmp_path / "config.yaml"
    bad.write_text("version: 1\nassignments: {}\n", encoding="utf-8")
    assert cli_main([str(CORPUS / "wrong_function.ipynb"), "--format", "classroom", "--config", str(bad)]) == 4
    payload = json.loads(capsys.readouterr().out)
    validate_classroom(payload)
    assert payload["status"] == "error" and payload["max_score"] == 0


# ---- the Classroom workflow ---------------------------------------------------------------

@pytest.fixture(scope="module")
def workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))


def steps_of(workflow: dict) -> list[dict]:
    return workflow["jobs"]["run-autograding-tests"]["steps"]


def test_workflow_has_the_shape_classroom_expects(workflow):
    assert workflow["name"] == "Autograding Tests" and list(workflow["jobs"]) == ["run-autograding-tests"]
    job = workflow["jobs"]["run-autograding-tests"]
    assert job["if"] == "github.actor != 'github-classroom[bot]'"
    assert workflow["permissions"] == {"checks": "write", "actions": "read", "contents": "read"}
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true
    assert "push" in triggers
    steps = steps_of(workflow)
    checkout = steps[0]
    assert checkout["uses"].startswith("actions/checkout@") and checkout["with"]["persist-credentials"] is False
    install = "\n".join(s.get("run", "") for s in steps)
    assert "--index-url https://download.pytorch.org/whl/cpu" in install and '"torch==${TORCH_VERSION}"' in install
    grade = next(s for s in steps if s.get("id") == "torchgrade")
    reporter = steps[-1]
    assert reporter["uses"] == "classroom-resources/autograding-grading-reporter@v1"
    assert reporter["with"]["runners"] == "torchgrade"
    assert reporter["env"] == {"TORCHGRADE_RESULTS": "${{ steps.torchgrade.outputs.result }}"}
    assert "grade.py" in grade["run"] and "--format classroom" in grade["run"]
    assert grade["run"].rstrip().endswith("exit 0") and "set +e" in grade["run"]


def test_the_workflow_installs_every_package_a_run_and_its_grading_need(workflow):
    """What a student's push is graded with must be what pyproject.toml declares (a run imports matplotlib for
    `%matplotlib inline`, as a kernel would): else Classroom could score a notebook unlike grade.py at home. Left
    out on purpose: torch (installed first, from the CPU index), dask and psutil (batches and benchmarks only)."""
    import re

    block = (ROOT / "pyproject.toml").read_text(encoding="utf-8").split("dependencies = [", 1)[1].split("]\n", 1)[0]
    declared = re.findall(r'^\s*"([^"]+)"', block, re.M)  # (tomllib would need Python 3.11)
    assert "torch>=2.1" in declared and len(declared) > 8
    names = {re.split(r"[\[<>=!~ ]", spec, maxsplit=1)[0].lower() for spec in declared}
    installed = {name.lower() for name in workflow["env"]["GRADER_PACKAGES"].split()}
    assert names - {"torch", "dask", "psutil"} <= installed, names - installed


def test_workflow_is_valid_github_actions_syntax():
    """Against SchemaStore's GitHub workflow schema, as vendored by check-jsonschema."""
    done = subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows",
                           str(WORKFLOW)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_no_step_can_fail_the_job_before_the_reporter(workflow):
    steps = steps_of(workflow)
    for step in steps[1:-1]:
        assert step.get("continue-on-error") is True or step.get("id") == "torchgrade", step["name"]
    for step in steps[steps.index(next(s for s in steps if s.get("id") == "torchgrade")):]:
        assert step["if"] == "${{ !cancelled() }}"  # runs even when an install step failed


def run_grading_step(workflow: dict, repo: Path, tmp_path: Path, notebook: str) -> tuple[dict, str, str]:
    """Run the workflow's grading step as Actions would (bash -eo pipefail), then decode its output like the reporter."""
    step = next(s for s in steps_of(workflow) if s.get("id") == "torchgrade")
    script = tmp_path / "step.sh"
    script.write_text(step["run"], encoding="utf-8")
    tools = tmp_path / "bin"  # setup-python puts the job's Python first on PATH as python3
    tools.mkdir(exist_ok=True)
    (tools / "python3").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n', encoding="utf-8")
    (tools / "python3").chmod(0o755)
    output, summary = tmp_path / "github_output", tmp_path / "step_summary.md"
    output.write_text("", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "TORCHGRADE_"))}
    env.update({k: str(v) for k, v in workflow["env"].items()})
    env.update(NOTEBOOK=notebook, GITHUB_OUTPUT=str(output), GITHUB_STEP_SUMMARY=str(summary),
               RUNNER_TEMP=str(tmp_path), PATH=f"{tools}{os.pathsep}{env['PATH']}")
    done = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)], cwd=repo, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr  # the grading step never fails the job
    # The reporter: for each runner id, process.env[`${id.toUpperCase()}_RESULTS`], base64 -> JSON.
    outputs = dict(line.split("=", 1) for line in output.read_text(encoding="utf-8").splitlines() if "=" in line)
    reporter = steps_of(workflow)[-1]
    runner = reporter["with"]["runners"].split(",")[0].strip()
    assert reporter["env"][f"{runner.upper()}_RESULTS"] == f"${{{{ steps.{runner}.outputs.result }}}}"
    payload = json.loads(base64.b64decode(outputs["result"], validate=True).decode("utf-8"))
    validate_classroom(payload)
    return payload, done.stdout, summary.read_text(encoding="utf-8") if summary.exists() else ""


@pytest.fixture(scope="module")
def template_repo(tmp_path_factory) -> Path:
    """A Classroom template repository: the grader and the exercise, no solutions; one check hidden."""
    repo = tmp_path_factory.mktemp("template-repo")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "torchgrade", repo / "torchgrade", ignore=ignore)
    shutil.copytree(ROOT / "graders", repo / "graders", ignore=ignore)
    shutil.copy(ROOT / "grade.py", repo / "grade.py")
    raw = yaml.safe_load((ROOT / "config.yaml").read_text(encoding="utf-8"))
    raw["assignments"]["computational_graph"]["checks"]["t5_retain_graph"]["hidden"] = True
    (repo / "config.yaml").write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    (repo / "exercises").mkdir()
    shutil.copy(ROOT / "exercises" / "computational_graph.ipynb", repo / "exercises")
    return repo


def test_workflow_grading_step_hands_the_reporter_partial_credit(workflow, template_repo, tmp_path):
    shutil.copy(CORPUS / "wrong_function.ipynb", template_repo / "computational_graph.ipynb")  # the student's push
    payload, log, summary = run_grading_step(workflow, template_repo, tmp_path, "computational_graph.ipynb")
    assert payload["status"] == "fail" and reporter_points(payload) == "Points 17/19"  # t5_retain_graph hidden
    assert all("retain_graph" not in t["name"] for t in payload["tests"])
    assert "### Computational graphs and autograd: 17 / 19 points" in summary
    assert "1 hidden check (1 point) will also run when your notebook is graded" in summary
    assert not COMMAND_LINE.search(log)


def test_workflow_grading_step_reports_an_unreadable_notebook(workflow, template_repo, tmp_path):
    shutil.copy(CORPUS / "not_json.ipynb", template_repo / "broken.ipynb")
    payload, log, summary = run_grading_step(workflow, template_repo, tmp_path, "broken.ipynb")
    assert payload["status"] == "error" and reporter_points(payload) == "Points 0/19"
    assert "could not read the submission" in log and "not graded" in summary


def test_workflow_grading_step_reports_even_when_the_grader_cannot_start(workflow, tmp_path):
    empty_checkout = tmp_path / "repo"
    empty_checkout.mkdir()  # no grade.py at all: python3 exits 2 before printing anything
    payload, _, summary = run_grading_step(workflow, empty_checkout, tmp_path, "computational_graph.ipynb")
    assert payload["status"] == "error" and payload["tests"][0]["name"] == "Grading"
    assert "exit status 2" in payload["tests"][0]["message"] and "Not graded" in summary
