"""`grade.py --validate`: mutation operators (no kernels), and every shipped assignment validated (real kernels)."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
import torch
import yaml

from conftest import CONFIG, ROOT
from torchgrade.config import load_config
from torchgrade.errors import ConfigError
from torchgrade.mutants import Cache, make_mutants, render_table, validate
from torchgrade.mutation_ops import OPERATORS, CellFacts, find_formula

STORED = ROOT / "tests" / "corpus" / "validation_evidence"
CI_MUTANTS = 15  # per assignment: enough for every operator, bounded cost (each mutant runs two kernels)


def mutate(operator: str, source: str, facts: CellFacts | None = None) -> list[tuple[str, str]]:
    return [(d, ast.unparse(ast.fix_missing_locations(t))) for d, t in OPERATORS[operator](ast.parse(source), facts or CellFacts())]


def test_graph_flags_are_dropped_flipped_and_a_needless_retain_added():
    found = mutate("graph_flags", "g = torch.autograd.grad(f, x, create_graph=True)[0]")
    assert [code for _, code in found] == [
        "g = torch.autograd.grad(f, x)[0]",
        "g = torch.autograd.grad(f, x, create_graph=False)[0]",
        "g = torch.autograd.grad(f, x, create_graph=True, retain_graph=True)[0]",
    ]


def test_sum_backward_becomes_backward_and_grad_outputs_dropped():
    assert mutate("nonscalar_backward", "f.sum().backward()")[0][1] == "f.backward()"
    assert mutate("nonscalar_backward", "g = torch.autograd.grad(f, x, grad_outputs=o)[0]")[0][1] == \
        "g = torch.autograd.grad(f, x)[0]"


def test_backward_repeated_and_grad_replaced_by_backward():
    assert mutate("repeated_backward", "a.backward()")[0][1] == "a.backward(retain_graph=True)\na.backward()"
    assert mutate("grad_to_backward", "g = torch.autograd.grad(f, x, grad_outputs=o, create_graph=True)[0]")[0][1] == \
        "f.backward(o, create_graph=True)\ng = x.grad"
    assert mutate("grad_to_backward", "gx, gy = torch.autograd.grad(f, (x, y), o)")[0][1] == \
        "f.backward(o)\ngx, gy = (x.grad, y.grad)"


def test_derivatives_typed_in_as_formula_or_values():
    facts = CellFacts(values={"g": torch.tensor([12.0, 27.0])}, formulas={"g": "3 * x**2"})
    code = "g = torch.autograd.grad(f, x, torch.ones_like(f))[0]"
    assert mutate("derivative_formula", code, facts)[0][1] == "g = 3 * x ** 2"
    assert mutate("derivative_values", code, facts)[0][1] == "g = torch.tensor([12.0, 27.0], dtype=torch.float32)"
    facts = CellFacts(grads={"x": torch.tensor([1.0])}, formulas={"x.grad": "2 * x.detach()"})
    assert mutate("derivative_formula", "a.backward(retain_graph=True)\nb.backward()", facts)[0][1] == \
        "x.grad = 2 * x.detach()\npass"


def test_operator_statement_and_graph_cut():
    assert [c for _, c in mutate("operator", "f = x ** 3 + y")] == ["f = x ** 3 - y", "f = x ** 4 + y"]
    assert [c for _, c in mutate("deleted_statement", "f = x * 2\nprint(f)")] == ["pass\nprint(f)"]
    assert [c for _, c in mutate("graph_cut", "f = x * 2")] == [
        "f = (x * 2).detach()", "with torch.no_grad():\n    f = x * 2"]
    assert mutate("graph_cut", "ones = torch.ones_like(f)", CellFacts(untracked={"ones"})) == []


def test_formulas_are_found_by_evaluation():
    x, y = torch.tensor([[2.0, 3.0]]), torch.tensor([[4.0, 5.0]])
    leaves = {"x": x, "y": y}
    assert find_formula(3 * x**2, leaves) == "3 * x**2"
    assert find_formula(torch.full_like(x, 2), leaves) == "torch.full_like(x, 2)"
    assert find_formula(y + 2 * x * y**2, leaves, detached=True) == "y.detach() + 2 * x.detach() * y.detach()**2"
    assert find_formula(torch.sin(x), leaves) is None


def test_mutants_are_deterministic_and_cover_every_operator():
    entry = CONFIG.assignments["computational_graph"]
    first, second = make_mutants(entry.solution, None), make_mutants(entry.solution, None)
    assert [(m.name, m.notebook) for m in first] == [(m.name, m.notebook) for m in second]
    assert len({m.name for m in first}) == len(first) >= 40
    capped = make_mutants(entry.solution, CI_MUTANTS)
    assert {m.operator for m in capped} == set(OPERATORS)  # the cap keeps one of each operator first


def test_cache_is_keyed_by_content_and_fingerprint(tmp_path):
    cache = Cache(tmp_path, "engine-1")
    cache.put("notebook", "[]")
    cache.put("old mutant", "[]")
    assert Cache(tmp_path, "engine-1").get("notebook") == "[]"
    assert cache.get("other") is None and Cache(tmp_path, "engine-2").get("notebook") is None
    reader = Cache(tmp_path, "engine-1")
    reader.get("notebook")
    reader.forget_unused()
    assert reader.get("notebook") == "[]" and reader.get("old mutant") is None


def test_stored_evidence_is_checked_again_by_the_current_checks(validations, tmp_path):
    """A hit is re-checked (so a changed check counts), and evidence that cannot serve runs the notebook.
    After ``validations``, which (re)writes the stored evidence."""
    from torchgrade.evidence_store import NoExecution
    from torchgrade.evidence_store import recheck
    from torchgrade.pipeline import Grader

    name, entry = "computational_graph", CONFIG.assignments["computational_graph"]
    grader = Grader.from_config(name, entry, executor=NoExecution())
    path = tmp_path / "solution.ipynb"
    path.write_bytes(Path(entry.solution).read_bytes())
    stored = STORED / name
    evidence = next((f.read_text() for f in sorted(stored.glob("*.json"))
                     if recheck(grader, path, f.read_text()) is not None), None)
    assert evidence is not None, f"no stored evidence of the solution in {stored}: run the suite once and commit it"
    assert recheck(grader, path, evidence).score == 20  # checks ran on it: NoExecution would have raised
    assert recheck(grader, path, None) is None and recheck(grader, path, "not json") is None
    edited = tmp_path / "edited.ipynb"
    edited.write_bytes(path.read_bytes() + b" ")  # other content: other random inputs, so the evidence is stale
    assert recheck(grader, edited, evidence) is None


def test_equivalent_mutants_need_a_reason(tmp_path):
    raw = yaml.safe_load((ROOT / "config.yaml").read_text())
    for entry in raw["assignments"].values():
        for key in ("grader", "exercise", "solution"):
            entry[key] = str(ROOT / entry[key])
    next(iter(raw["assignments"].values()))["validation"] = {"equivalent_mutants": {"t1.operator.1": " "}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=r"validation.equivalent_mutants: .*t1.operator.1: give the reason"):
        load_config(tmp_path / "config.yaml")


# ------------------------------------------------------------------------ every shipped assignment (kernels)

@pytest.fixture(scope="session")
def validations():
    """One validation per shipped assignment for the whole session (cached by content between runs of CI)."""
    # Committed evidence (STORED), keyed by content and execution fingerprint: CI re-checks it with the current
    # checks instead of running 3 x 17 notebooks again; a change to the engine runs them and rewrites the folder
    # (commit it then). Only the files this validation used are kept.
    return {name: validate(name, entry, jobs=2, limit=CI_MUTANTS, cache_dir=STORED, forget_unused=True)
            for name, entry in load_config(ROOT / "config.yaml").assignments.items()}


@pytest.mark.parametrize("name", sorted(CONFIG.assignments))
def test_every_shipped_assignment_is_valid(validations, name):
    result = validations[name]
    assert result.solution_score == result.solution_max > 0
    assert result.exercise_score <= result.exercise_floor
    assert len(result.mutants) >= 15
    surviving = [m.name for m in result.mutants if m.survived and not m.equivalent]
    assert not surviving, render_table(result)
    document = json.loads(json.dumps(result.to_dict()))
    assert set(document) >= {"assignment", "solution_score", "exercise_score", "mutants", "mutation_score"}
    assert set(document["mutants"][0]) >= {"name", "operator", "task", "caught_by", "survived"}
    print(f"{name}: mutation score {result.mutation_score:.0%} over {len(result.mutants)} mutants, "
          f"{result.seconds:.0f} s")
