"""The headline, "which backend for which model", on synthetic rounds with a known answer."""

import dataclasses
import json
import math
import re

import numpy as np
import pytest
import report_markdown
from conftest import fake_entry, with_figures
from kerasmnist import records, report
from kerasmnist.errors import ConfigError
from kerasmnist.launch.matrix import cells, matrix_from
from kerasmnist.report import analysis, headline, load, markdown, stats
from kerasmnist.report.plots import HEADLINE_PLOT


def plan(rounds, models=("ffn",), backends=("tensorflow", "torch", "jax"), epochs=5):
    return cells(matrix_from({"matrix": {"backends": list(backends), "models": list(models), "repeats": rounds},
                              "run": {"epochs": epochs}}, {}, "t"))


def timed(steady_of, rounds, seed=0, **plan_options):
    """Cells whose steady time is steady_of[backend] times a drift shared by each round and 2% noise of their own."""
    rng = np.random.default_rng(seed)
    drift = rng.uniform(0.8, 1.25, rounds)  # the machine slows and speeds up from one round to the next
    return [fake_entry(cell, steady=steady_of[cell.config.backend] * drift[cell.repeat] * rng.lognormal(0, 0.02))
            for cell in plan(rounds, **plan_options)]


def without_steady_figures(entry):
    """The entry as a one-epoch run records it: no steady epochs, so no steady time and no samples/s."""
    return with_figures(entry, epoch_seconds=entry.record.epoch_seconds[:1], steady_epoch_seconds=None,
                        samples_per_second=None)


def built(tmp_path, entries):
    (tmp_path / records.RESULTS_FILE).write_text("".join(json.dumps(e.to_json()) + "\n" for e in entries))
    return report.write([tmp_path], tmp_path)


def outside_the_method(text):
    """report.md less its method paragraph, which explains what "tied within the noise" means."""
    assert markdown.METHOD in text
    return text.replace(markdown.METHOD, "")


def test_a_backend_twice_as_fast_over_four_rounds_is_the_fastest_and_the_other_is_decided_slower(tmp_path):
    result = built(tmp_path, timed({"jax": 1.0, "torch": 2.0}, 4, backends=("torch", "jax")))
    [found] = result.headlines
    assert (found.section, found.device, found.label) == ("ffn", "cpu", "ffn on cpu")
    assert found.fastest.backend == "jax" and found.decided and not found.unranked
    [torch] = found.contenders
    assert torch.row.backend == "torch" and torch.versus_fastest.rounds == 4
    assert torch.versus_fastest.low < 2.0 < torch.versus_fastest.high and torch.versus_fastest.low > 1.5
    assert torch.verdict == "slower"
    assert math.isclose(torch.throughput.estimate, 1 / torch.versus_fastest.estimate)
    text = result.terminal_text()
    assert "ffn on cpu: jax is the fastest" in text
    assert re.search(r"^    torch  2\.\d\d× \[\d\.\d\d–\d\.\d\d\] slower, 4 rounds$", text, re.MULTILINE), text
    assert text.splitlines()[-1] == f"full report: {tmp_path / 'report.md'}"
    assert "\x1b[" not in text  # no colours: it reads the same in a log and a notebook cell
    report_text = result.path.read_text()
    [line] = report_markdown.table_with(report_text, "verdict", after="## Which backend for which model")
    assert re.fullmatch(r"2\.\d\d× \[[\d.]+–[\d.]+\]", line.pop("steady epoch time vs fastest [95%]"))
    assert line == {"model and device": "ffn on cpu", "fastest": "**jax** is the fastest", "other row": "torch",
                    "rounds": "4", "verdict": "slower",  # the same accuracy every round: as well, decided
                    "test accuracy vs fastest, points [95%]": "+0.00 [+0.00, +0.00]", "learning": "learns as well"}
    assert report_text.index("## Which backend for which model") < report_text.index("## Model `ffn`")
    assert (tmp_path / HEADLINE_PLOT).stat().st_size > 0 and f"]({HEADLINE_PLOT})" in report_text


def test_a_backend_as_fast_as_the_fastest_is_tied_and_one_twice_as_slow_is_slower(tmp_path):
    result = built(tmp_path, timed({"jax": 1.0, "tensorflow": 1.0, "torch": 2.0}, 4))
    [found] = result.headlines
    verdicts = {c.row.backend: c.verdict for c in found.contenders}
    assert found.fastest.backend in ("jax", "tensorflow") and not found.decided
    other = ({"jax", "tensorflow"} - {found.fastest.backend}).pop()
    assert verdicts["torch"] == "slower" and verdicts[other].startswith("tied within the noise (")
    assert "ran fastest, but not every order is decided" in result.terminal_text()


def test_one_round_is_undecided_never_tied(tmp_path):
    result = built(tmp_path, timed({"jax": 1.0, "tensorflow": 3.19, "torch": 1.01}, 1))
    [found] = result.headlines
    assert not found.decided and all(not c.versus_fastest.has_interval for c in found.contenders)
    verdicts = {c.row.backend: c.verdict for c in found.contenders}
    # A 3.19x gap would be decided by a few rounds; a 1% gap by none worth running.
    assert re.fullmatch(r"undecided: 1 round, no interval \(about [23] rounds would decide it\)", verdicts["tensorflow"])
    assert verdicts["torch"].startswith("undecided: 1 round, no interval (more than 50 rounds")
    text = result.terminal_text()
    assert "ran fastest in a single round: no order is decided" in text
    assert "tied" not in text and "tied" not in outside_the_method(result.path.read_text())


def test_no_fastest_is_named_from_missing_figures(tmp_path):
    """One epoch: no run has a steady epoch time, so no row is fastest (none was 'fastest' by falling back to
    the first row)."""
    entries = [without_steady_figures(entry) for entry in timed({"jax": 1.0, "tensorflow": 2.0, "torch": 3.0}, 2)]
    rows = load.group(entries)
    assert analysis.standings(rows) == {}
    result = built(tmp_path, entries)
    [found] = result.headlines
    assert found.fastest is None and not found.contenders and found.none_finished is None
    assert [why for _, why in found.unranked] == ["no steady epoch time (it needs 2 or more epochs)"] * 3
    assert [markdown.versus_fastest_text(row, analysis.standings(rows)) for row in rows] == ["–"] * 3
    assert not any("is the fastest" in line or "ran fastest" in line for line in markdown.fastest_lines(headline.headlines(rows)))
    assert "ffn on cpu: no fastest: no row has a steady epoch time" in result.terminal_text()


def test_a_row_without_a_steady_figure_is_listed_but_never_fastest(tmp_path):
    entries = timed({"jax": 1.0, "tensorflow": 2.0}, 3, backends=("tensorflow", "jax"))
    entries = [without_steady_figures(e) if e.backend == "jax" else e for e in entries]  # jax would be fastest
    [found] = built(tmp_path, entries).headlines
    assert found.fastest.backend == "tensorflow" and not found.contenders
    assert [(row.backend, why) for row, why in found.unranked] == [
        ("jax", "no steady epoch time (it needs 2 or more epochs)")]


def test_each_model_and_device_gets_its_own_headline_and_a_skipped_backend_says_why(tmp_path):
    entries = timed({"jax": 1.0, "torch": 2.0}, 3, models=("cnn", "ffn"), backends=("torch", "jax"))
    entries = [dataclasses.replace(e, status="skipped", reason="backend torch sees no CUDA GPU", record=None)
               if e.backend == "torch" and e.model == "cnn" else e for e in entries]
    found = built(tmp_path, entries).headlines
    assert [h.label for h in found] == ["cnn on cpu", "ffn on cpu"]
    assert [(row.backend, why) for row, why in found[0].unranked] == [
        ("torch", "no finished run (skipped: backend torch sees no CUDA GPU)")]
    assert found[1].decided


def test_the_sections_are_chosen_in_one_place(monkeypatch):
    """Switching headline.section_of regroups the headline (here: the FFN's hidden sizes as two models) and
    section_title names the sections."""
    matrix = {"matrix": {"backends": ["torch", "jax"], "models": ["ffn"], "repeats": 3},
              "variants": [{"hidden": [256]}]}
    rng = np.random.default_rng(5)
    entries = [fake_entry(cell, steady={"jax": 1.0, "torch": 2.0}[cell.config.backend] * rng.lognormal(0, 0.02))
               for cell in cells(matrix_from(matrix, {}, "t"))]
    rows = load.group(entries)
    assert [h.label for h in headline.headlines(rows)] == ["ffn on cpu (hidden 128)", "ffn on cpu (hidden 256)"]
    monkeypatch.setattr(headline, "section_of", lambda row: (row.model, row.settings["hidden"]))
    monkeypatch.setattr(headline, "section_title", lambda row: f"ffn {row.settings['hidden']}")
    assert [h.label for h in headline.headlines(rows)] == ["ffn (128,) on cpu", "ffn (256,) on cpu"]


def test_groups_of_one_section_and_device_are_told_apart_by_what_they_computed(tmp_path):
    """A batch sweep: each batch size is its own computation, ranked on its own."""
    matrix = matrix_from({"matrix": {"backends": ["torch", "jax"], "models": ["ffn"], "batch_sizes": [64, 256],
                                     "repeats": 3}}, {}, "t")
    rng = np.random.default_rng(4)
    entries = [fake_entry(cell, steady={"jax": 1.0, "torch": 2.0}[cell.config.backend] * 64 / cell.config.batch_size
                          * rng.lognormal(0, 0.02)) for cell in cells(matrix)]
    found = built(tmp_path, entries).headlines
    assert [h.label for h in found] == ["ffn on cpu (batch 64)", "ffn on cpu (batch 256)"]
    assert all(h.fastest.backend == "jax" and h.decided for h in found)


def test_compare_ends_by_printing_the_headline_and_the_report_path(tmp_path, monkeypatch):
    """`kerasmnist compare` (cells stubbed: no training) prints the headline, then where the full report is."""
    from click.testing import CliRunner

    from kerasmnist import cli
    from kerasmnist.launch import compare, rounds

    rng = np.random.default_rng(6)
    monkeypatch.setattr(rounds, "run_cell", lambda cell, timeout_seconds, out_dir: fake_entry(
        cell, steady={"jax": 1.0, "torch": 2.0}[cell.config.backend] * rng.lognormal(0, 0.02)))
    out = tmp_path / "out"
    result = CliRunner().invoke(cli.cli, ["compare", "--backends", "torch,jax", "--models", "ffn", "--repeats", "3",
                                          "--peak-matmul-size", "0", "--out", str(out)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[-1] == f"full report: {out / 'report.md'}"
    assert ("ffn on cpu: jax is the fastest; both learn as well (within ±1.0 points of test accuracy, paired by "
            "round)") in lines
    assert any(re.fullmatch(r"    torch  2\.\d\d× \[[\d.–]+\] slower, 3 rounds", line) for line in lines), lines


def test_inference_is_ranked_by_its_own_paired_times(tmp_path):
    """Training and inference can disagree: here torch trains slower but predicts faster than jax."""
    entries = timed({"jax": 1.0, "torch": 2.0}, 4, backends=("torch", "jax"))
    entries = [with_figures(entry, inference_seconds=[
        entry.record.steady_epoch_seconds * (0.1 if entry.backend == "torch" else 0.5)] * 3) for entry in entries]
    rows = load.group(entries)
    [training], [inference] = headline.headlines(rows), headline.headlines(rows, headline.INFERENCE)
    assert training.fastest.backend == "jax" and inference.fastest.backend == "torch" and inference.decided
    [jax] = inference.contenders
    assert jax.versus_fastest.low < 2.5 < jax.versus_fastest.high and jax.verdict == "slower"
    text = built(tmp_path, entries).path.read_text()
    [line] = report_markdown.table_with(text, "verdict", after="## Which backend infers fastest")
    assert (line["fastest"], line["other row"], line["verdict"]) == ("**torch** is the fastest", "jax", "slower")


def on_two_kinds(rounds=3, noise=0.0, seed=0):
    """Slurm kind "one" runs jax at 1 s and torch at 2 s a steady epoch; kind "two" everything twice as fast; each run
    off by log-normal `noise` of its own."""
    rng = np.random.default_rng(seed)
    return [dataclasses.replace(fake_entry(cell, steady=scale * {"jax": 1.0, "torch": 2.0}[cell.config.backend]
                                           * rng.lognormal(0.0, noise), invocation=kind), machine_kind=kind)
            for kind, scale in (("one", 1.0), ("two", 0.5)) for cell in plan(rounds, backends=("torch", "jax"))]


def test_across_machines_pairs_only_the_fastests_machine_and_gives_other_machines_welchs_interval():
    [group] = headline.across_machines(load.group(on_two_kinds(4, noise=0.03)))
    assert (group.section, group.fastest.backend, group.fastest.machine) == ("ffn", "jax", "Slurm machine kind two")
    by_place = {(other.row.backend, other.row.machine): other for other in group.others}
    same_kind = by_place[("torch", "Slurm machine kind two")]
    assert same_kind.paired and same_kind.versus_fastest == stats.ratio(
        *(row.by_round("steady_epoch_seconds") for row in (same_kind.row, group.fastest)))  # paired by round
    for backend, true_ratio in (("jax", 2.0), ("torch", 4.0)):  # kind one never shared a round with two
        other = by_place[(backend, "Slurm machine kind one")]
        found = other.versus_fastest
        assert not other.paired and found == stats.unpaired_ratio(
            *(row.values("steady_epoch_seconds") for row in (other.row, group.fastest)))  # each run one sample
        assert found.rounds == 4 and found.excludes(1.0) and math.isclose(found.estimate, true_ratio, rel_tol=0.1)


def test_report_md_gives_cross_machine_ratios_welchs_interval_and_with_one_run_the_ratio_of_medians(tmp_path):
    """(tests/golden/two-machine-kinds.md has the table as a whole, with the paragraph saying why.) Kind one's torch
    ran once: no interval."""
    built(tmp_path, [entry for entry in on_two_kinds(4, noise=0.03)
                     if (entry.machine_kind, entry.backend) != ("one", "torch") or entry.repeat == 0])
    table = report_markdown.table_with((tmp_path / "report.md").read_text(), "from", after="## Across machines")
    said = {(line["other row"], line["machine"]): (line["steady epoch time vs fastest"], line["from"]) for line in table}
    interval = r"\d\.\d\d× \[\d\.\d\d–\d\.\d\d\]"
    ratio_of_medians, from_one_run = said[("torch", "Slurm machine kind one")]
    assert re.fullmatch(r"\d\.\d\d×", ratio_of_medians) and from_one_run == headline.UNPAIRED
    welch, from_runs = said[("jax", "Slurm machine kind one")]
    assert re.fullmatch(interval, welch) and from_runs == f"{headline.UNPAIRED_WELCH} (4 and 4 runs), slower"
    paired, from_rounds = said[("torch", "Slurm machine kind two")]
    assert re.fullmatch(interval, paired) and from_rounds == "paired, slower"


def test_one_machine_has_no_cross_machine_table():
    assert headline.cross_machine_table(load.group(timed({"jax": 1.0, "torch": 2.0}, 3, backends=("torch", "jax")))) \
        == []


def test_a_device_whose_every_cell_was_skipped_says_so_and_why(tmp_path):
    """No GPU here: every GPU cell skipped. The headline says that, with the reason, not that no row had a
    steady epoch time (which would send the user to --epochs)."""
    no_gpu = "backend sees no GPU; use --device cpu"
    entries = [fake_entry(cell, status="skipped", reason=no_gpu) if cell.config.device == "gpu"
               else fake_entry(cell, steady={"jax": 1.0, "torch": 2.0}[cell.config.backend] * (1 + 0.01 * cell.order))
               for cell in cells(matrix_from({"matrix": {"backends": ["torch", "jax"], "devices": ["cpu", "gpu"],
                                                         "models": ["ffn"], "repeats": 2}}, {}, "t"))]
    result = built(tmp_path, entries)
    cpu, gpu = result.headlines
    assert cpu.fastest.backend == "jax" and gpu.fastest is None
    assert gpu.none_finished == f"every cell was skipped: {no_gpu}" and cpu.none_finished is None
    assert gpu.fastest_text() == f"no fastest: every cell was skipped: {no_gpu}"
    assert f"ffn on gpu: no fastest: every cell was skipped: {no_gpu}" in result.terminal_text()
    assert "2 or more epochs" not in result.terminal_text() + result.path.read_text()


def test_where_no_cell_finished_for_several_reasons_each_row_says_its_own():
    entries = [fake_entry(cell, status="skipped", reason=f"backend {cell.config.backend} sees no GPU")
               if cell.config.backend != "jax" or cell.repeat else fake_entry(cell, status="failed", reason="crashed")
               for cell in plan(2, models=("cnn",), backends=("torch", "jax"))]
    [found] = headline.headlines(load.group(entries))
    assert found.none_finished == "no cell finished (3 skipped, 1 failed); each row says why"
    assert [why for _, why in found.unranked] == ["no finished run (skipped: backend torch sees no GPU)",
                                                  "no finished run (skipped: backend jax sees no GPU)"]
    skipped = [fake_entry(cell, status="skipped", reason=f"backend {cell.config.backend} sees no GPU")
               for cell in plan(1, models=("cnn",), backends=("torch", "jax"))]
    [found] = headline.headlines(load.group(skipped))
    assert found.fastest_text() == "no fastest: every cell was skipped; each row says why"


def test_a_model_whose_every_cell_failed_says_so_and_why_not_that_it_needs_epochs(tmp_path):
    """The CNN's every cell failed (some with no record, some with a failed record) while the FFN finished: the
    CNN's headline says every cell failed and why, never that a row needs 2 or more epochs (which would send the
    user to --epochs)."""
    why = "training failed: too many values to unpack (expected 2)"
    entries = []
    for cell in plan(3, models=("cnn", "ffn"), backends=("torch", "jax")):
        entry = fake_entry(cell, steady={"jax": 1.0, "torch": 2.0}[cell.config.backend] * (1 + 0.01 * cell.order))
        if cell.config.model == "cnn":
            record = dataclasses.replace(entry.record, status="running", result=None).failed(why, entry.finished_at) \
                if cell.repeat % 2 else None
            entry = dataclasses.replace(entry, status="failed", reason=why, record=record)
        entries.append(entry)
    result = built(tmp_path, entries)
    cnn, ffn = result.headlines
    assert (cnn.label, cnn.fastest_text()) == ("cnn on cpu", f"no fastest: every cell failed: {why}")
    assert ffn.fastest.backend == "jax"
    assert f"cnn on cpu: no fastest: every cell failed: {why}" in result.terminal_text()
    assert "2 or more epochs" not in result.terminal_text() + result.path.read_text()


def with_accuracy(entries, accuracy_of, seed=0):
    """Each ok entry's test accuracy: accuracy_of[backend] plus 0.2 points of noise of its own."""
    rng = np.random.default_rng(seed)
    return [with_figures(e, test_accuracy=accuracy_of[e.backend] + rng.normal(0, 0.002)) for e in entries]


def test_a_backend_that_learns_five_points_worse_is_said_to_in_every_form_of_the_answer(tmp_path):
    """jax fastest, torch as accurate, tensorflow 5 points lower, 6 rounds: the headline, report.md, rows.csv, the
    plot's labels and comparison.json all say tensorflow learns worse with a decided interval, torch as well."""
    import csv

    from kerasmnist.report import comparison, plots
    from kerasmnist.report.stats import AS_WELL, WORSE

    entries = with_accuracy(timed({"jax": 1.0, "torch": 2.0, "tensorflow": 1.5}, 6),
                            {"jax": 0.95, "torch": 0.95, "tensorflow": 0.90})
    result = built(tmp_path, entries)
    [found] = result.headlines
    learning = {c.row.backend: c.learning for c in found.contenders}
    assert learning["torch"].verdict == AS_WELL and learning["tensorflow"].verdict == WORSE
    worse = learning["tensorflow"].difference
    assert worse.low < -5.0 < worse.high and worse.high < -1.0
    assert found.learning_text().startswith("against jax's test accuracy (within ±1.0 points")
    assert "tensorflow learns worse by 5." in found.learning_text() and "torch learns as well (" in found.learning_text()
    assert f"ffn on cpu: jax is the fastest; {found.learning_text()}" in result.terminal_text()
    assert f"- ffn on cpu: {found.learning_text()}" in result.path.read_text()

    answer = json.loads((tmp_path / comparison.FILE).read_text())
    assert answer == result.comparison and (answer["kind"], answer["schema"]) == (comparison.KIND, comparison.SCHEMA)
    [group] = answer["headlines"]["training"]
    assert answer["rows"][group["fastest"]]["settings"]["backend"] == "jax" and group["decided"]
    by_backend = {answer["rows"][other["row"]]["settings"]["backend"]: other for other in group["others"]}
    assert by_backend["tensorflow"]["learning"]["verdict"] == WORSE
    assert by_backend["tensorflow"]["learning"]["accuracy_difference_points"]["high"] < -1.0
    assert by_backend["torch"]["learning"]["verdict"] == AS_WELL and by_backend["torch"]["verdict"] == "slower"
    assert by_backend["torch"]["time_ratio"]["low"] > 1 and by_backend["torch"]["time_ratio"]["rounds"] == 6
    assert all(other["learning"] is None for found_group in answer["headlines"]["inference"]
               for other in found_group["others"])  # learning is judged against the training headline's fastest

    with open(tmp_path / "rows.csv", newline="") as file:
        lines = {line["backend"]: line for line in csv.DictReader(file)}
    assert (lines["tensorflow"]["learning"], lines["torch"]["learning"], lines["jax"]["learning"]) == (WORSE, AS_WELL, "")
    assert float(lines["torch"]["vs_fastest_ci_low"]) > 1 and lines["torch"]["verdict"] == "slower"
    labels = [label for label, _, _ in plots.headline_bars(result.headlines)["cpu"]]
    assert "ffn: tensorflow (learns worse)" in labels and "ffn: torch" in labels


def test_a_wider_margin_calls_the_same_rows_as_well(tmp_path):
    entries = with_accuracy(timed({"jax": 1.0, "tensorflow": 1.5}, 6, backends=("tensorflow", "jax")),
                            {"jax": 0.95, "tensorflow": 0.90})
    (tmp_path / records.RESULTS_FILE).write_text("".join(json.dumps(e.to_json()) + "\n" for e in entries))
    result = report.write([tmp_path], tmp_path, accuracy_margin=8.0)
    [found] = result.headlines
    assert found.learning_text() == "both learn as well (within ±8.0 points of test accuracy, paired by round)"
    assert result.comparison["accuracy_margin_points"] == 8.0


def test_the_accuracy_margin_is_a_flag_and_a_toml_key_and_a_bad_one_is_refused(tmp_path):
    from click.testing import CliRunner

    from kerasmnist import cli
    from kerasmnist.errors import ConfigError

    assert matrix_from({"matrix": {"accuracy_margin": 0.5}}, {}, "t").accuracy_margin == 0.5
    assert matrix_from({}, {"accuracy_margin": 2.0}, "command line").accuracy_margin == 2.0
    with pytest.raises(ConfigError, match="t: accuracy_margin must be points of test accuracy between 0 and 100"):
        matrix_from({"matrix": {"accuracy_margin": -1}}, {}, "t")
    result = CliRunner().invoke(cli.cli, ["report", str(tmp_path), "--accuracy-margin", "0"])
    assert result.exit_code == 2 and "--accuracy-margin must be points of test accuracy" in result.output


def test_time_to_accuracy_is_ranked_paired_by_round_and_runs_that_never_reached_it_are_counted(tmp_path):
    """fake_entry reaches the target at 3 steady epochs' time: jax first, torch about 2x later; 2 of torch's 6 runs
    never reach it, so its ratio pairs the 4 rounds where both did."""
    never = records.TimeToAccuracy(target=0.98, epochs=None, seconds=None, resolution="epoch ends")
    entries = timed({"jax": 1.0, "torch": 2.0}, 6, backends=("torch", "jax"))
    entries = [with_figures(e, time_to_accuracy=never) if e.backend == "torch" and e.repeat < 2 else e
               for e in entries]
    result = built(tmp_path, entries)
    text = result.path.read_text()
    assert "## Which backend reaches the target accuracy first" in text
    [line] = report_markdown.table_with(text, "verdict", after="## Which backend reaches the target accuracy first")
    assert line["other row"] == "torch (not reached in 2 of 6 runs)" and line["rounds"] == "4"
    assert line["verdict"] == "slower" and re.fullmatch(r"2\.\d\d× \[[\d.]+–[\d.]+\]",
                                                         line["time to accuracy vs fastest [95%]"])
    [group] = result.comparison["headlines"]["time_to_accuracy"]
    assert group["ranked_by"] == "time_to_accuracy_seconds" and group["fastest_name"] == "jax"
    torch_row = result.comparison["rows"][group["others"][0]["row"]]
    assert torch_row["time_to_accuracy"]["reached_runs"] == 4 and torch_row["time_to_accuracy"]["runs"] == 6


def in_environment(entry, name, version, package="torch"):
    """The entry as a cell run in environment `name` (None: kerasmnist's own), whose `package` is `version`,
    records it."""
    environment = {**entry.record.environment,
                   "packages": {**entry.record.environment["packages"], package: version}}
    record = dataclasses.replace(entry.record, environment=environment)
    return dataclasses.replace(entry, environment=name, record=record,
                               software={**entry.software, package: version})


def test_two_environments_of_one_backend_are_set_against_each_other_by_round(tmp_path):
    """torch in two environments, 10% slower with 2.14.1 in every one of 6 rounds (a shared drift): the report's
    'What changed between environments' sets the older environment's row against the newest's (the headline's),
    gives the ratio with its interval, names the package that differs, and says it learns as well."""
    rng = np.random.default_rng(5)
    drift = rng.uniform(0.8, 1.25, 6)
    entries = []
    for cell in plan(6, backends=("torch",)):
        for name, version, factor in (("torch-2.13", "2.13.0", 1.0), ("torch-2.14", "2.14.1", 1.1)):
            steady = factor * drift[cell.repeat] * rng.lognormal(0, 0.01)
            entries.append(in_environment(fake_entry(cell, steady=steady), name, version))
    result = built(tmp_path, entries)
    [change] = analysis.environment_changes(load.group(load.gather([tmp_path]).cells), margin=1.0)
    assert (change.row.environment, change.baseline.environment) == ("torch-2.13", "torch-2.14")
    assert change.paired and change.slower.rounds == 6
    assert change.slower.low < 1 / 1.1 < change.slower.high < 1
    assert change.packages == {"torch": ("2.14.1", "2.13.0")}
    [line] = report_markdown.table_with(result.path.read_text(), "what differs",
                                        after="## What changed between environments")
    assert (line["environment"], line["against"], line["what differs"]) == ("torch-2.13", "torch-2.14",
                                                                             "torch 2.13.0 vs 2.14.1")
    assert line["verdict"] == "faster" and line["learning"].startswith("learns as well (")
    [as_data] = result.comparison["environment_changes"]
    assert (as_data["environment"], as_data["against"], as_data["verdict"]) == ("torch-2.13", "torch-2.14", "faster")
    assert as_data["packages"] == {"torch": {"baseline": "2.14.1", "row": "2.13.0"}} and as_data["paired"]
    assert as_data["time_ratio"]["high"] < 1 and as_data["learning"]["verdict"] == "learns as well"
    assert "torch in torch-2.13 against torch-2.14 (torch 2.13.0 vs 2.14.1)" in result.terminal_text()


def environments_of_three_backends(rounds=4):
    """tensorflow in kerasmnist's own environment (1 s), torch in torch-2.13 (1.5 s) and torch-2.14 (3 s), jax in
    jax-0.10 (2 s): each backend's environments are alternatives, the other backends' rows are not."""
    entries = []
    for cell in plan(rounds):
        if cell.config.backend == "tensorflow":
            entries.append(fake_entry(cell, steady=1.0))
        elif cell.config.backend == "jax":
            entries.append(in_environment(fake_entry(cell, steady=2.0), "jax-0.10", "0.10.2", "jax"))
        else:
            entries += [in_environment(fake_entry(cell, steady=1.5), "torch-2.13", "2.13.0"),
                        in_environment(fake_entry(cell, steady=3.0), "torch-2.14", "2.14.1")]
    return entries


def test_the_headline_ranks_each_backend_in_its_newest_environment_beside_backends_in_others(tmp_path):
    """Rows of different environments (and versions) rank against each other, each backend once: torch in its
    newest environment (torch 2.14.1, though its older one ran faster), jax in its one, tensorflow in kerasmnist's
    own; torch's older environment is set against its newest, not ranked."""
    result = built(tmp_path, environments_of_three_backends())
    [found] = result.headlines
    assert found.fastest.backend == "tensorflow" and found.fastest.environment is None and not found.unranked
    assert [(c.row.backend, c.row.environment) for c in found.contenders] == [("jax", "jax-0.10"),
                                                                               ("torch", "torch-2.14")]
    assert [c.name for c in found.contenders] == ["jax in jax-0.10", "torch in torch-2.14"]
    assert found.decided and 2.9 < found.contenders[1].versus_fastest.estimate < 3.1
    [change] = result.changes
    assert (change.row.environment, change.baseline.environment, change.slower.estimate) == ("torch-2.13", "torch-2.14",
                                                                                             pytest.approx(0.5))
    rows = {row["row"]: row for row in report_markdown.table_with(result.path.read_text(), "vs fastest [95%]",
                                                                  after="## Model")}
    assert rows["torch in torch-2.13"]["vs fastest [95%]"] == "set against torch-2.14 (below)"
    assert rows["torch in torch-2.14"]["vs fastest [95%]"].startswith("3.00×")
    assert "torch 2.14.1" in rows["torch in torch-2.14"]["machine"]  # each row says what it ran
    as_data = result.comparison
    superseded = [row for row in as_data["rows"] if row["superseded_by"] is not None]
    assert [row["environment"] for row in superseded] == ["torch-2.13"]
    assert as_data["rows"][superseded[0]["superseded_by"]]["environment"] == "torch-2.14"


def test_a_newest_environment_whose_every_cell_failed_stays_in_the_headline_saying_why(tmp_path):
    """torch's newest environment failed in every round: the headline names it with the reason rather than rank
    the older environment in its place."""
    entries = [entry if entry.environment != "torch-2.14" else
               dataclasses.replace(entry, status="failed", record=None, reason="ImportError: no torch")
               for entry in environments_of_three_backends()]
    [found] = built(tmp_path, entries).headlines
    assert [(row.environment, why) for row, why in found.unranked] == [
        ("torch-2.14", "no finished run (failed: ImportError: no torch)")]
    assert [c.row.environment for c in found.contenders] == ["jax-0.10"]


def test_a_config_or_the_report_can_choose_the_environment_a_backend_is_ranked_in(tmp_path):
    """headline = true in the config (compare passes it on) or report --headline-env: torch is ranked in its
    older environment; an environment no cell ran in is refused, naming those that ran."""
    (tmp_path / records.RESULTS_FILE).write_text(
        "".join(json.dumps(e.to_json()) + "\n" for e in environments_of_three_backends()))
    found = report.write([tmp_path], tmp_path, headline_environments=("torch-2.13",))
    assert [c.row.environment for c in found.headlines[0].contenders] == ["torch-2.13", "jax-0.10"]
    assert found.changes[0].row.environment == "torch-2.14"
    with pytest.raises(ConfigError, match="no cell ran in environment 'torch-2.12'; they ran in jax-0.10, "
                                          "torch-2.13, torch-2.14"):
        report.write([tmp_path], tmp_path, headline_environments=("torch-2.12",))
    tables = {"matrix": {"backends": ["torch"]}, "environments": [
        {"name": "old", "python": "/usr/bin/python3", "backends": ["torch"], "headline": True},
        {"name": "new", "python": "/usr/bin/python3", "backends": ["torch"]}]}
    assert matrix_from(tables, {}, "test.toml").headline_environments == ("old",)
    tables["environments"][1]["headline"] = True
    with pytest.raises(ConfigError, match="environments 'old' and 'new' both have headline = true for torch"):
        matrix_from(tables, {}, "test.toml")


def test_rows_of_one_backend_run_with_other_versions_in_another_compare_are_set_against_the_newest(tmp_path):
    """No environments named: torch rows with keras 3.14.1 and 3.15.1 from two compares (no shared round) are
    alternatives; the newest Keras is ranked, the other set against it from unpaired runs (Welch)."""
    entries = [fake_entry(cell, steady=2.0) for cell in plan(3, backends=("torch", "jax"))]
    entries += [in_environment(fake_entry(cell, steady=1.0, invocation="older"), None, "3.14.1", "keras")
                for cell in plan(3, backends=("torch",))]
    result = built(tmp_path, entries)
    [found] = result.headlines
    assert {c.row.versions["keras"] for c in found.contenders} | {found.fastest.versions["keras"]} == {"3.15.1"}
    [change] = result.changes
    assert not change.paired and change.row.versions["keras"] == "3.14.1" and change.slower.rounds == 3
    assert change.packages == {"keras": ("3.15.1", "3.14.1")} and change.slower.estimate == pytest.approx(0.5)


def test_the_fastest_is_picked_on_the_rounds_every_row_ran(tmp_path):
    """jax 10% faster than torch in the 3 rounds both ran, but jax's row also holds 3 runs of an earlier compare on
    a slower day: judged on all its runs its median is the slower, judged on the shared rounds it is the fastest,
    as its paired ratio says."""
    today = [fake_entry(cell, steady={"jax": 0.9, "torch": 1.0}[cell.config.backend] * (1 + 0.01 * cell.repeat),
                        invocation="today") for cell in plan(3, backends=("torch", "jax"))]
    earlier = [fake_entry(cell, steady=2.0, invocation="earlier") for cell in plan(3, backends=("jax",))]
    [found] = built(tmp_path, earlier + today).headlines
    assert found.fastest.backend == "jax" and found.decided
    [torch] = found.contenders
    assert torch.versus_fastest.rounds == 3 and torch.versus_fastest.low > 1
