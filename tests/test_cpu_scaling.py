"""What the machine was doing, as a run records it (environment.py) and the report shows it: the CPUs' frequency
scaling read from a fake sysfs tree, since a VM (this suite's usual machine) may expose none."""

import dataclasses
import json
import os

import report_markdown
from conftest import fake_entry
from kerasmnist import environment, records, report
from kerasmnist.launch.matrix import cells, matrix_from
from kerasmnist.report import markdown

OLD_ENVIRONMENT_COLUMNS = ["machine", "memory", "GPUs", "Python", "Keras", "TensorFlow", "torch", "JAX", "dates"]


def fake_sysfs(root, governor="powersave", driver="intel_pstate", khz=(2_400_000, 3_100_000), no_turbo=None,
               boost=None):
    """/sys/devices/system/cpu as Linux lays it out, for the CPUs this process may use (the frequencies in turn)."""
    for place, cpu in enumerate(sorted(os.sched_getaffinity(0))):
        cpufreq = root / f"cpu{cpu}" / "cpufreq"
        cpufreq.mkdir(parents=True)
        for name, value in (("scaling_driver", driver), ("scaling_governor", governor),
                            ("scaling_cur_freq", khz[place % len(khz)])):
            (cpufreq / name).write_text(f"{value}\n")
    for path, value in (("intel_pstate/no_turbo", no_turbo), ("cpufreq/boost", boost)):
        if value is not None:
            (root / path).parent.mkdir(parents=True, exist_ok=True)
            (root / path).write_text(f"{value}\n")
    return root


def test_a_fake_sysfs_tree_gives_the_governor_driver_turbo_and_frequencies(tmp_path, monkeypatch):
    monkeypatch.setattr(environment, "CPU_SYSFS", fake_sysfs(tmp_path, no_turbo=0))
    found = environment.host()
    assert found["cpu_governors"] == ["powersave"] and found["cpu_scaling_drivers"] == ["intel_pstate"]
    assert found["cpu_turbo"] is True  # intel_pstate's no_turbo 0: turbo on
    usable = len(os.sched_getaffinity(0))
    assert found["cpu_mhz"] == [2400, 3100] * (usable // 2) + [2400] * (usable % 2)


def test_boost_is_read_where_intel_pstate_is_absent(tmp_path, monkeypatch):
    monkeypatch.setattr(environment, "CPU_SYSFS", fake_sysfs(tmp_path, "performance", "acpi-cpufreq", boost=0))
    assert environment.cpu_scaling()["cpu_turbo"] is False


def test_a_system_that_exposes_no_cpufreq_records_none(tmp_path, monkeypatch):
    monkeypatch.setattr(environment, "CPU_SYSFS", tmp_path)
    assert environment.cpu_scaling() == {"cpu_scaling_drivers": None, "cpu_governors": None, "cpu_turbo": None,
                                         "cpu_mhz": None}


def plan(rounds=2):
    return cells(matrix_from({"matrix": {"backends": ["torch", "jax"], "models": ["ffn"], "repeats": rounds}}, {}, "t"))


def scaled(entry, **facts):
    """The entry's run as recorded on a machine whose host facts include `facts`."""
    run = entry.record
    host = {**run.environment["host"], **facts}
    return dataclasses.replace(entry, record=dataclasses.replace(run, environment={**run.environment, "host": host}))


def report_text(tmp_path, entries):
    (tmp_path / records.RESULTS_FILE).write_text("".join(json.dumps(e.to_json()) + "\n" for e in entries))
    return report.write([tmp_path], tmp_path).path.read_text()


def test_records_without_the_facts_render_the_environment_table_and_sections_as_before(tmp_path):
    text = report_text(tmp_path, [fake_entry(cell) for cell in plan()])
    [line] = report_markdown.table_with(text, "dates", after="## Environment")
    assert list(line) == OLD_ENVIRONMENT_COLUMNS
    assert "CPU frequency governor" not in text


def test_a_powersave_governor_is_shown_and_named_beside_the_stability_note(tmp_path):
    """torch ran under powersave, jax under performance: both in the machine's line, only torch named."""
    facts = {"cpu_scaling_drivers": ["intel_pstate"], "cpu_turbo": True, "cpu_mhz": [2400, 3100]}
    entries = [scaled(fake_entry(cell), **facts,
                      cpu_governors=["powersave" if cell.config.backend == "torch" else "performance"])
               for cell in plan()]
    assert records.CellEntry.from_json(json.loads(json.dumps(entries[0].to_json()))) == entries[0]
    text = report_text(tmp_path, entries)
    [line] = report_markdown.table_with(text, "dates", after="## Environment")
    assert line["CPU frequency scaling"] == "governor performance, powersave (intel_pstate); turbo on; 2,400–3,100 MHz"
    assert "\nRun under a CPU frequency governor other than performance: torch on cpu (powersave). " in text


def test_a_machine_without_the_facts_beside_one_with_them_says_not_exposed():
    with_facts, without = (fake_entry(cell) for cell in plan(1)[:2])
    with_facts = scaled(with_facts, cpu_governors=["performance"], cpu_turbo=False)
    without = dataclasses.replace(without, host={**without.host, "hostname": "vm"})
    table = markdown.environment_table([(e.host, e.record.environment, e.record.started_at)
                                        for e in (with_facts, without)])
    [lines] = report_markdown.tables("\n".join(table))
    assert [line["CPU frequency scaling"] for line in lines] == ["governor performance; turbo off", "not exposed"]
