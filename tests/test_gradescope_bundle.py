"""The Gradescope autograder zip: built, unpacked into an /autograder-shaped folder, and run.

`run_autograder` runs for real (bash, the bundled grader, kernels) with the autograder root
moved to a temporary folder through TORCHGRADE_AUTOGRADER_ROOT. setup.sh is not run (it
installs packages); its content and place are checked instead.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import jsonschema
import pytest
import yaml

from conftest import CORPUS, ROOT, write_config
from torchgrade.errors import SubmissionError
from torchgrade.gradescope_bundle import build_bundle, find_submission

SCHEMA = json.loads((ROOT / "tests" / "schemas" / "gradescope_results.schema.json").read_text(encoding="utf-8"))
HIDDEN = "t1_f_value"  # the check wrong_function.ipynb fails


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    """A bundle of a config with one hidden check, shown on Gradescope after grades are published."""
    folder = tmp_path_factory.mktemp("bundle")
    config = write_config(folder, **{f"checks__{HIDDEN}__hidden": True})
    return build_bundle(folder / "autograder.zip", config, hidden_visibility="after_published")


def unpack(bundle: Path, root: Path, submission: dict[str, Path | bytes]) -> Path:
    """What Gradescope does: unzip into source/ (modes kept), copy run_autograder to the root, add the submission."""
    source = root / "source"
    with zipfile.ZipFile(bundle) as archive:
        for info in archive.infolist():
            target = Path(archive.extract(info, source))
            target.chmod((info.external_attr >> 16) & 0o777)
    shutil.copy2(source / "run_autograder", root / "run_autograder")
    for name, content in submission.items():
        target = root / "submission" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content if isinstance(content, bytes) else content.read_bytes())
    (root / "results").mkdir()
    return root


def run_autograder(root: Path, python: str = sys.executable) -> tuple[dict, subprocess.CompletedProcess]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TORCHGRADE_")}
    env.update(TORCHGRADE_AUTOGRADER_ROOT=str(root), TORCHGRADE_PYTHON=python)
    done = subprocess.run([str(root / "run_autograder")], cwd=root, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    results = root / "results" / "results.json"
    assert sorted(p.name for p in results.parent.iterdir()) == ["results.json"]  # written once, no leftovers
    payload = json.loads(results.read_text(encoding="utf-8"))
    jsonschema.validate(payload, SCHEMA)
    return payload, done


def test_zip_has_setup_and_run_autograder_at_its_root(bundle):
    with zipfile.ZipFile(bundle) as archive:
        infos = {info.filename: info for info in archive.infolist()}
        read = lambda name: archive.read(name).decode("utf-8")  # noqa: E731
        for script in ("setup.sh", "run_autograder"):
            assert script in infos  # at the root, not inside a folder
            assert stat.S_IMODE(infos[script].external_attr >> 16) == 0o755
            assert read(script).startswith("#!/usr/bin/env bash\n")
        setup = read("setup.sh")
        assert 'pip install --index-url https://download.pytorch.org/whl/cpu "torch==$TORCH_VERSION"' in setup
        assert 'TORCH_VERSION="2.13.0"' in setup and "requirements.txt" in setup
        requirements = read("requirements.txt").splitlines()
        assert not any(line.lower().startswith("torch") for line in requirements)
        assert all("==" in line for line in requirements if not line.startswith("#"))
        names = set(infos)
        assert {"torchgrade/__init__.py", "torchgrade/pipeline.py", "torchgrade/render/gradescope.py",
                "graders/computational_graph.py", "config.yaml", "torchgrade_bundle.json"} <= names
        assert not any("__pycache__" in name or name.endswith(".pyc") for name in names)
        config = yaml.safe_load(read("config.yaml"))
        entry = config["assignments"]["computational_graph"]
        assert list(config["assignments"]) == ["computational_graph"]
        assert entry["grader"] == "graders/computational_graph.py" and entry["checks"][HIDDEN]["hidden"] is True
        settings = json.loads(read("torchgrade_bundle.json"))
        assert settings["hidden_visibility"] == "after_published" and settings["assignment"] == "computational_graph"


def test_building_twice_gives_the_same_bytes(tmp_path):
    config = write_config(tmp_path, **{f"checks__{HIDDEN}__hidden": True})
    first = build_bundle(tmp_path / "first.zip", config).read_bytes()
    assert build_bundle(tmp_path / "again.zip", config).read_bytes() == first
    assert build_bundle(tmp_path / "other.zip", config, hidden_visibility="after_due_date").read_bytes() != first


def test_build_command_writes_a_zip(tmp_path):
    several = subprocess.run([sys.executable, "-m", "torchgrade.gradescope_bundle", "--output", str(tmp_path / "c.zip")],
                             cwd=ROOT, capture_output=True, text=True, timeout=120)  # config.yaml holds three
    assert several.returncode == 2 and "--assignment" in several.stderr and not (tmp_path / "c.zip").exists()
    done = subprocess.run([sys.executable, "-m", "torchgrade.gradescope_bundle", "--output", str(tmp_path / "a.zip"),
                           "--assignment", "pinn_residual"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Wrote" in done.stdout and zipfile.is_zipfile(tmp_path / "a.zip")
    bad = subprocess.run([sys.executable, "-m", "torchgrade.gradescope_bundle", "--output", str(tmp_path / "b.zip"),
                          "--assignment", "nope"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 4 and "nope" in bad.stderr and not (tmp_path / "b.zip").exists()


def test_run_autograder_grades_the_submission_with_the_bundled_grader(bundle, tmp_path):
    root = unpack(bundle, tmp_path / "autograder", {"wrong_function.ipynb": CORPUS / "wrong_function.ipynb"})
    payload, done = run_autograder(root)
    assert f"from {root / 'source' / 'torchgrade'}" in done.stdout  # the bundled copy, not the repo's
    assert payload["score"] == 18 and payload["output"].startswith("Computational graphs and autograd: 18 / 20")
    tests = {t["check"]: t for t in payload["tests"]}
    assert len(tests) == 13 and sum(t["max_score"] for t in tests.values()) == 20
    assert tests[HIDDEN]["visibility"] == "after_published" and tests[HIDDEN]["status"] == "failed"
    assert {t["visibility"] for c, t in tests.items() if c != HIDDEN} == {"visible"}
    assert "exponents look swapped" in tests[HIDDEN]["output"]


def test_run_autograder_explains_an_unreadable_submission(bundle, tmp_path):
    root = unpack(bundle, tmp_path / "autograder", {"notebook.ipynb": CORPUS / "not_json.ipynb"})
    payload, _ = run_autograder(root)
    assert payload["score"] == 0 and payload["tests"] == []
    assert "could not be graded" in payload["output"] and "not JSON" in payload["output"]


def test_run_autograder_writes_results_even_when_python_cannot_start(bundle, tmp_path):
    root = unpack(bundle, tmp_path / "autograder", {"wrong_function.ipynb": CORPUS / "wrong_function.ipynb"})
    payload, _ = run_autograder(root, python="/bin/false")
    assert payload["score"] == 0 and "exit status 1" in payload["output"] and "instructor" in payload["output"]


def test_find_submission_picks_the_one_notebook(tmp_path):
    folder = tmp_path / "submission"
    (folder / "work" / ".ipynb_checkpoints").mkdir(parents=True)
    (folder / "__MACOSX").mkdir()
    (folder / "work" / "mine.ipynb").write_text("{}")
    (folder / "work" / ".ipynb_checkpoints" / "mine-checkpoint.ipynb").write_text("{}")
    (folder / "__MACOSX" / "._mine.ipynb").write_text("")
    (folder / "notes.txt").write_text("")
    assert find_submission(folder, "computational_graph.ipynb") == folder / "work" / "mine.ipynb"
    (folder / "computational_graph.ipynb").write_text("{}")
    assert find_submission(folder, "computational_graph.ipynb") == folder / "computational_graph.ipynb"
    with pytest.raises(SubmissionError, match="several notebooks"):
        find_submission(folder, "other.ipynb")
    for notebook in (folder / "work" / "mine.ipynb", folder / "computational_graph.ipynb"):
        notebook.unlink()
    with pytest.raises(SubmissionError, match=r"no \.ipynb notebook was submitted \(found: .*notes\.txt"):
        find_submission(folder, "computational_graph.ipynb")
