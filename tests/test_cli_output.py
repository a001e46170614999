"""What the commands print on the way: env says what it probes; train's summary reads as English."""

import dataclasses

from click.testing import CliRunner

from conftest import fake_entry, with_figures
from kerasmnist import cli
from kerasmnist.errors import UNAVAILABLE_EXIT
from kerasmnist.launch import processes
from kerasmnist.child import run
from kerasmnist.launch.matrix import Matrix, cells


def test_env_says_what_it_probes_as_it_goes(monkeypatch):
    probed = []

    def fake_probe(task, folder, python=None, timeout_seconds=None, show_output=False):
        probed.append((task.backend, task.device))
        return processes.ChildResult(UNAVAILABLE_EXIT, (), ("kerasmnist: error: not here",))

    monkeypatch.setattr(processes, "spawn", fake_probe)
    result = CliRunner().invoke(cli.cli, ["env"])
    assert result.exit_code == 0, result.output
    said = [line for line in result.stderr.splitlines() if line.startswith("probing")]
    assert said == [f"probing {backend} on the {device}..." for backend, device in probed] and len(said) == 6
    assert "tensorflow: no: not here" in result.stdout


def test_peak_host_memory_is_in_bytes():
    assert run.peak_host_memory_bytes() > 2**20  # this Python with pytest loaded: megabytes, not kibibytes


def test_the_summary_says_1_epoch():
    entry = fake_entry(cells(Matrix())[0])
    record = entry.record
    reached = with_figures(entry, time_to_accuracy=dataclasses.replace(record.time_to_accuracy, epochs=1)).record
    assert "(1 epoch, checked at epoch ends)" in run.summary(reached, "x.json")
    assert "(2 epochs, checked at epoch ends)" in run.summary(record, "x.json")


def test_the_summary_says_when_other_processes_took_over_a_quarter_of_the_cpu():
    entry = fake_entry(cells(Matrix())[0])
    measured = {"wall_seconds": 10.0, "logical_cores": 2, "own_cpu_seconds": 10.0, "steal_seconds": 0.0}
    busy = with_figures(entry, contention=measured | {"other_cpu_seconds": 8.0}).record
    assert ("note: other processes took 40% of the CPU time while it trained (more than 25%: its times may be "
            "slowed by them; the report marks such a row unstable)") in run.summary(busy, "x.json").splitlines()
    for quiet in (with_figures(entry, contention=measured | {"other_cpu_seconds": 2.0}).record, entry.record):
        assert "other processes" not in run.summary(quiet, "x.json")
