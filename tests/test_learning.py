"""Whether each backend still learns as well, end to end: one model file that computes something else under torch
(tests/fixtures/user/torch_bug.py, as a backend bug would), trained under JAX (twice: as is, and with fit told the
steps per epoch, the same computation) and torch in 3 rounds. The report, its terminal headline, comparison.json and
rows.csv say that torch learns worse, with a decided interval, and that the two JAX rows learn as well."""

import csv
import json

import pytest

from conftest import FIXTURE_DIR, run_cli
from kerasmnist.report import analysis, load
from kerasmnist.report.stats import AS_WELL, BETTER, WORSE

BUGGY_MODEL = FIXTURE_DIR.parent / "user" / "torch_bug.py"


@pytest.mark.slow
def test_a_backend_that_computes_something_else_learns_worse_and_equal_rows_learn_as_well(tmp_path):
    plan = tmp_path / "plan.toml"
    plan.write_text(f"""
[matrix]
backends = ["jax", "torch"]
models = ["{BUGGY_MODEL}:build"]
rounds = 3
peak_matmul_size = 0
[run]
data_dir = "{FIXTURE_DIR}"
epochs = 2
validation_size = 1000
progress = "none"
[[variants]]
backends = ["jax"]
fit_steps_per_epoch = true
""")
    out = tmp_path / "out"
    result = run_cli("compare", "--config", str(plan), "--out", str(out), timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]

    answer = json.loads((out / "comparison.json").read_text())
    assert (answer["kind"], answer["schema"], answer["accuracy_margin_points"]) == ("kerasmnist.comparison", 1, 1.0)
    [training] = answer["headlines"]["training"]
    fastest = answer["rows"][training["fastest"]]
    assert len(training["others"]) == 2 and all(other["learning"]["verdict"] != "undecided"
                                                 for other in training["others"])
    for other in training["others"]:
        backends = {fastest["settings"]["backend"], answer["rows"][other["row"]]["settings"]["backend"]}
        learning = other["learning"]
        difference = learning["accuracy_difference_points"]
        if backends == {"jax"}:
            assert learning["verdict"] == AS_WELL and learning["equivalence_p"] < 0.05
        elif answer["rows"][other["row"]]["settings"]["backend"] == "torch":
            assert learning["verdict"] == WORSE and difference["high"] < -1.0  # decided: beyond the margin
            assert learning["said"].startswith("learns worse by ")
        else:  # torch ran fastest: each JAX row learns better than it
            assert learning["verdict"] == BETTER and difference["low"] > 1.0
    assert training["learning_said"] in result.stdout  # the terminal headline says it too
    report_text = (out / "report.md").read_text()
    assert "learns worse" in report_text or "learns better" in report_text

    # Whichever ran fastest, the two JAX rows (one computation, run alike) learn as well as each other.
    rows = load.group(load.gather([out]).cells)
    jax_rows = [row for row in rows if row.backend == "jax"]
    assert len(jax_rows) == 2 and analysis.learning_against(*jax_rows, margin=1.0).verdict == AS_WELL

    with open(out / "rows.csv", newline="") as file:
        by_row = {line["row"]: line for line in csv.DictReader(file)}
    torch_line = next(line for line in by_row.values() if line["backend"] == "torch")
    assert torch_line["learning"] in (WORSE, "") and (torch_line["learning"] or fastest["settings"]["backend"] == "torch")

    # `kerasmnist report --json` prints the same answer the report wrote (rebuilt from the records alone).
    rebuilt = run_cli("report", str(out), "--json")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert json.loads(rebuilt.stdout) == json.loads((out / "comparison.json").read_text()) == answer
