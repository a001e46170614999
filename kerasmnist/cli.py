"""The `kerasmnist` command. Thin: it parses flags into a RunConfig and calls library functions.

It never imports Keras at module level: the backend must be chosen first (kerasmnist.backend).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from kerasmnist import config as config_module
from kerasmnist.errors import KerasMnistError
from kerasmnist.processes import ERROR_PREFIX, Stopped, stops_cleanly

if TYPE_CHECKING:
    from kerasmnist.records import RunRecord

DEFAULTS = config_module.RunConfig()


class OneLineErrors(click.Group):
    """Every error, ours or click's, is one line on stderr and a non-zero exit: no usage dump, no traceback."""

    def main(self, args: Any = None, prog_name: Any = None, **extra: Any) -> Any:
        extra.pop("standalone_mode", None)
        try:
            with stops_cleanly():
                return super().main(args, prog_name, standalone_mode=False, **extra)
        except click.exceptions.Exit as done:
            sys.exit(done.exit_code)
        except click.ClickException as error:
            click.echo(f"{ERROR_PREFIX}{error.format_message()}", err=True)
            sys.exit(error.exit_code)
        except KerasMnistError as error:
            click.echo(f"{ERROR_PREFIX}{error}", err=True)
            sys.exit(error.exit_code)
        except (click.Abort, KeyboardInterrupt) as interrupt:
            # click turns a KeyboardInterrupt (Stopped included) into Abort, keeping it as the cause.
            stop = interrupt.__cause__ if isinstance(interrupt, click.Abort) else interrupt
            if isinstance(stop, Stopped):
                click.echo(f"kerasmnist: {stop}", err=True)
                sys.exit(128 + stop.signal_number)
            click.echo("kerasmnist: interrupted", err=True)
            sys.exit(130)


@click.group(cls=OneLineErrors)
@click.version_option(package_name="kerasmnist")
def cli() -> None:
    """Train Keras 3 models on MNIST under TensorFlow, PyTorch or JAX, pinned to CPU or GPU, and compare them."""


def _choices(values: tuple[str, ...]) -> str:
    return "|".join(values)


@cli.command()
@click.option("--backend", default=DEFAULTS.backend, show_default=True, metavar=_choices(config_module.BACKENDS),
              help="Keras backend to train under.")
@click.option("--device", default=DEFAULTS.device, show_default=True, metavar=_choices(config_module.DEVICES),
              help="Device to pin the run to; gpu fails (exit 2) when the backend sees no GPU.")
@click.option("--model", default=DEFAULTS.model, show_default=True, metavar=_choices(config_module.MODELS),
              help="cnn: the keras-io convnet; ffn: Flatten, Dense(hidden...), Dense(10).")
@click.option("--implementation", default=DEFAULTS.implementation, show_default=True,
              metavar=_choices(config_module.IMPLEMENTATIONS),
              help="keras: model.fit; native: the same training written directly in the backend's framework.")
@click.option("--dataset", default=DEFAULTS.dataset, show_default=True, metavar=_choices(config_module.DATASETS),
              help="Dataset to train on.")
@click.option("--epochs", type=int, default=DEFAULTS.epochs, show_default=True, help="Training epochs.")
@click.option("--batch-size", type=int, default=DEFAULTS.batch_size, show_default=True, help="Samples per step.")
@click.option("--learning-rate", type=float, default=DEFAULTS.learning_rate, show_default=True,
              help="Adam learning rate.")
@click.option("--hidden", default=",".join(map(str, DEFAULTS.hidden)), show_default=True,
              help="FFN hidden layer sizes, comma-separated, e.g. 256,128.")
@click.option("--seed", type=int, default=DEFAULTS.seed, show_default=True,
              help="Seed for Keras, NumPy and the validation split.")
@click.option("--validation-size", type=int, default=DEFAULTS.validation_size, show_default=True,
              help="Training images held out for validation.")
@click.option("--limit-train", type=int, default=None, show_default="all",
              help="Train on only the first N of the remaining training images.")
@click.option("--data-dir", default=None,
              help="Folder with the four IDX .gz files or mnist.npz.  [default: $KERASMNIST_DATA_DIR, "
                   "then Keras's cache, then a download]")
@click.option("--jit-compile", default=DEFAULTS.jit_compile, show_default=True,
              metavar=_choices(config_module.JIT_COMPILE),
              help="XLA (TensorFlow, JAX) or torch.compile (torch); auto: what Keras uses on the pinned device.")
@click.option("--steps-per-execution", type=int, default=DEFAULTS.steps_per_execution, show_default=True,
              help="Batches Keras runs per call of its compiled train function.")
@click.option("--progress", default=DEFAULTS.progress, show_default=True, metavar=_choices(config_module.PROGRESS),
              help="Keras's progress bar, one line per epoch, or nothing.")
@click.option("--precision", default=DEFAULTS.precision, show_default=True,
              metavar=_choices(config_module.PRECISIONS), help="Keras dtype policy (mixed: float16/bfloat16 compute).")
@click.option("--data-format", default=DEFAULTS.data_format, show_default=True,
              metavar=_choices(config_module.DATA_FORMATS),
              help="The CNN's image layout (the same network); channels_first is torch's own.")
@click.option("--input-pipeline", default=DEFAULTS.input_pipeline, show_default=True,
              metavar=_choices(config_module.INPUT_PIPELINES),
              help="What fit gets: NumPy arrays, a shuffled tf.data pipeline or torch DataLoader, or tensors already on the "
                   "device.")
@click.option("--data-parallel", is_flag=True,
              help="Replicate the model over every device of the pinned kind (jax, tensorflow).  [default: off]")
@click.option("--tf32", "float32_matmul_precision", flag_value="tf32", default=DEFAULTS.float32_matmul_precision,
              help="Allow TF32 tensor cores (Ampere and newer GPUs) for float32 matmuls and convolutions on "
                   "every backend.  [default: off: full float32 everywhere]")
@click.option("--cpu-devices", type=int, default=DEFAULTS.cpu_devices, show_default=True,
              help="Split the CPU into N virtual devices, to try --data-parallel without GPUs.")
@click.option("--cpu-threads", type=int, default=None, show_default="the framework's default",
              help="Compute threads on the CPU (the process is also bound to that many cores).")
@click.option("--xla-flags", default=DEFAULTS.xla_flags, metavar="FLAGS",
              help="Extra XLA flags, space-separated, e.g. '--xla_cpu_use_thunk_runtime=false', added to XLA_FLAGS "
                   "for jax, or tensorflow with --jit-compile true; recorded and shown in row names.  [default: none]")
@click.option("--profile", is_flag=True,
              help="cProfile the training steps of epochs 2 on; the record says where the time went. Slows "
                   "Python-heavy runs, so the report keeps profiled runs apart.  [default: off]")
@click.option("--target-accuracy", type=float, default=None,
              help="Validation accuracy for the time-to-accuracy figure.  [default: 0.98 cnn, 0.97 ffn]")
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs"), show_default=True,
              help="Folder the run record is written to.")
def train(out: Path, **options: Any) -> None:
    """Train one model under one backend on one pinned device, and write its record."""
    from kerasmnist.run import run_and_record

    config = config_module.run_config_from(options, "command line")
    if config.precision == "mixed_float16" and config.device == "cpu":
        click.echo("kerasmnist: note: float16 on a CPU is emulated and usually much slower than float32; "
                   "mixed_float16 is meant for GPUs with tensor cores", err=True)
    path, record = run_and_record(config, out)
    click.echo(summary(record, path))


@cli.command()
@click.option("--config", "config_path", type=click.Path(path_type=Path), default=None,
              help="TOML file with [matrix] and [run] tables, or the name of one in configs/ (e.g. colab-t4); "
                   "flags below override it.")
@click.option("--backends", default=None, help="Comma-separated backends.  [default: tensorflow,torch,jax]")
@click.option("--devices", default=None, help="Comma-separated devices.  [default: cpu]")
@click.option("--models", default=None, help="Comma-separated models.  [default: cnn,ffn]")
@click.option("--implementations", default=None, help="Comma-separated: keras, native.  [default: keras]")
@click.option("--repeats", type=int, default=None,
              help="Rounds: passes over every cell (the minimum, with --target-ci).  [default: 1]")
@click.option("--target-ci", type=float, default=None,
              help="Add rounds until every ratio's 95% interval is within ± this share, e.g. 0.05.  [default: off]")
@click.option("--max-repeats", type=int, default=None,
              help="With --target-ci: the most rounds to run.  [default: 3 x --repeats]")
@click.option("--cell-timeout", "cell_timeout_seconds", type=int, default=None,
              help="Seconds before a cell is stopped and recorded as failed.  [default: 3600]")
@click.option("--epochs", type=int, default=None, help="Training epochs per cell.  [default: 5]")
@click.option("--batch-size", type=int, default=None, help="Samples per step.  [default: 128]")
@click.option("--limit-train", type=int, default=None, help="Train on the first N images.  [default: all]")
@click.option("--validation-size", type=int, default=None, help="Images held out for validation.  [default: 10000]")
@click.option("--precision", default=None, help="Keras dtype policy for every cell.  [default: float32]")
@click.option("--tf32", "float32_matmul_precision", flag_value="tf32", default=None,
              help="Allow TF32 tensor cores in every cell and peak measurement (see train --tf32).  [default: off]")
@click.option("--data-dir", default=None, help="Data folder, as for train.  [default: search as for train]")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Folder for results.jsonl and the report.  [default: reports/CONFIG-NAME, or reports/compare]")
@click.option("--force", is_flag=True, help="Rerun cells that are already done.")
@click.option("--batch-sizes", default=None, help="Comma-separated batch sizes to sweep.  [default: --batch-size alone]")
@click.option("--input-pipeline", default=None, help="numpy, tf.data, torch.utils.data or device, for every cell.  [default: numpy]")
@click.option("--cpu-threads", type=int, default=None, help="Compute threads per cell.  [default: the framework's]")
@click.option("--profile", is_flag=True, default=None,
              help="cProfile every cell's steady training steps (see train --profile).  [default: off]")
@click.option("--peak-matmul-size", type=int, default=None,
              help="N of the N x N matrix multiply timed per backend and device, the peak each cell's GFLOP/s is "
                   "set against; 0 skips it.  [default: 4096]")
@click.option("--slurm/--no-slurm", "slurm", default=None,
              help="Run on a Slurm cluster, each round of each machine kind one job; --no-slurm runs a config with "
                   "[slurm] or [[machines]] here.  [default: Slurm when the config has either]")
@click.option("--slurm-partition", default=None, help="Slurm partition ([slurm] partition).")
@click.option("--slurm-constraint", default=None, help="Slurm node features, e.g. a100 ([slurm] constraint).")
@click.option("--slurm-gres", default=None, help="Generic resources per job, e.g. gpu:1 ([slurm] gres).")
@click.option("--slurm-time-minutes", type=int, default=None,
              help="Time limit of each job, one round ([slurm] time_minutes).  [default: the partition's]")
@click.option("--slurm-cpus-per-task", type=int, default=None, help="CPUs per job ([slurm] cpus_per_task).")
@click.option("--slurm-mem-gb", type=float, default=None, help="Memory per job in GB ([slurm] mem_gb).")
@click.option("--slurm-setup", multiple=True, default=None,
              help="A shell line run on the node before kerasmnist, e.g. 'module load cuda'; repeatable "
                   "([slurm] setup).")
@click.option("--slurm-parallel", type=int, default=None,
              help="Rounds of one machine kind running at once ([slurm] parallel).  [default: 4]")
@click.option("--slurm-exclusive/--slurm-shared", "slurm_exclusive", default=None,
              help="Whole nodes to each job, or share them with others ([slurm] exclusive).  [default: exclusive]")
def compare(config_path: Path | None, out: Path | None, force: bool, **overrides: Any) -> None:
    """Run the backend x device x model matrix, one fresh process per cell, then write the report."""
    run_matrix_and_report(config_path, out or Path("reports") / (config_path.stem if config_path else "compare"),
                          force, overrides)


@cli.command()
@click.option("--batch-sizes", required=True, help="Comma-separated batch sizes, e.g. 64,128,256,512,1024.")
@click.option("--backends", default=None, help="Comma-separated backends.  [default: tensorflow,torch,jax]")
@click.option("--devices", default=None, help="Comma-separated devices.  [default: cpu]")
@click.option("--models", default=None, help="Comma-separated models.  [default: cnn,ffn]")
@click.option("--epochs", type=int, default=None, help="Training epochs per cell.  [default: 5]")
@click.option("--limit-train", type=int, default=None, help="Train on the first N images.  [default: all]")
@click.option("--data-dir", default=None, help="Data folder, as for train.  [default: search as for train]")
@click.option("--out", type=click.Path(path_type=Path), default=Path("reports/sweep"), show_default=True,
              help="Folder for results.jsonl and the report.")
@click.option("--force", is_flag=True, help="Rerun cells that are already done.")
def sweep(out: Path, force: bool, **overrides: Any) -> None:
    """Throughput and accuracy per batch size per backend: a compare over --batch-sizes."""
    run_matrix_and_report(None, out, force, overrides)


def run_matrix_and_report(config_path: Path | None, out: Path, force: bool, overrides: dict[str, Any]) -> None:
    from kerasmnist import compare as compare_module, records, report
    from kerasmnist.matrix import load_matrix

    matrix = load_matrix(config_path, overrides)
    outcome = compare_module.run_matrix(matrix, out, " ".join(["kerasmnist", *sys.argv[1:]]), force=force,
                                        echo=lambda line: click.echo(line, err=True))
    counts = outcome.counts
    click.echo(f"{counts['ok']} ok, {counts['skipped']} skipped, {counts['failed']} failed, "
               f"{counts['already done']} already done")
    if (out / records.RESULTS_FILE).is_file():  # not when stopped before any cell finished
        click.echo(f"report: {report.build([out], out)}")
    sys.exit(outcome.exit_code)


@cli.command(name="report")
@click.argument("results_dirs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Folder for the report.  [default: the first RESULTS_DIR]")
def report_command(results_dirs: tuple[Path, ...], out: Path | None) -> None:
    """Rebuild the report from the results.jsonl of one or more compare folders (no training).

    Several folders, e.g. a laptop's and a Colab GPU's, are merged into one report.
    """
    from kerasmnist import report

    click.echo(f"report: {report.build(list(results_dirs), out or results_dirs[0])}")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the inventory as JSON.")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Also save it as OUT/env.json, which the report of that folder shows.  [default: not saved]")
def env(as_json: bool, out: Path | None) -> None:
    """What each backend is and sees here, and whether --device cpu / gpu would work."""
    import json

    from kerasmnist import inventory, records

    facts = inventory.collect()
    if out is not None:
        records.ensure_writable(out)
        records.replace_atomically(out / inventory.INVENTORY_FILE, json.dumps(facts, indent=2) + "\n")
    click.echo(json.dumps(facts, indent=2) if as_json else inventory.render(facts))


@cli.group()
def bench() -> None:
    """Micro-benchmarks, measured per backend and device like the training cells."""


@bench.command()
@click.option("--backends", default=",".join(config_module.BACKENDS), show_default=True, help="Comma-separated.")
@click.option("--devices", default="cpu,gpu", show_default=True, help="Comma-separated; missing GPUs are skipped.")
@click.option("--sizes", default="1,16,128,1024,4096,10000", show_default=True, help="Matrix sizes N (N x N).")
@click.option("--repeats", type=int, default=5, show_default=True, help="Timed calls per size, after a warm-up.")
@click.option("--tf32", "float32_matmul_precision", flag_value="tf32", default="float32",
              help="Allow TF32 tensor cores (Ampere and newer GPUs).  [default: off: full float32]")
@click.option("--out", type=click.Path(path_type=Path), default=Path("reports/matmul"), show_default=True,
              help="Folder for bench.jsonl and the report (may be a compare folder).")
def matmul(backends: str, devices: str, sizes: str, repeats: int, float32_matmul_precision: str, out: Path) -> None:
    """Time a scalar multiply and N x N matrix multiplies; find where the GPU starts to win."""
    from kerasmnist import bench as bench_module, report
    from kerasmnist.matrix import choices

    chosen = {flag: choices(value, allowed, flag, "command line") for flag, value, allowed in (
        ("--backends", backends, config_module.BACKENDS), ("--devices", devices, config_module.DEVICES))}
    try:
        size_list = tuple(int(size) for size in sizes.split(","))
    except ValueError:
        raise click.BadParameter(f"expected comma-separated whole numbers (got {sizes!r})", param_hint="--sizes")
    bench_module.run_bench(chosen["--backends"], chosen["--devices"], size_list, repeats, out,
                           " ".join(["kerasmnist", *sys.argv[1:]]), echo=lambda line: click.echo(line, err=True),
                           float32_matmul_precision=float32_matmul_precision)
    click.echo(f"report: {report.build([out], out)}")


@cli.command()
@click.option("--out", type=click.Path(path_type=Path), required=True, help="The notebook to write (.ipynb).")
@click.option("--install-from-repo", is_flag=True,
              help="Install kerasmnist from the repository in the notebook's REPO_URL parameter, instead of "
                   "carrying this installation in the notebook as a wheel.  [default: carry it]")
def colab(out: Path, install_from_repo: bool) -> None:
    """Write a notebook that runs the Colab T4 comparison on a fresh runtime with no edits."""
    from kerasmnist.colab import write_notebook

    click.echo(f"notebook: {write_notebook(out, from_repo=install_from_repo)}")


@cli.group(hidden=True)
def worker() -> None:
    """The pinned child processes that bench and env spawn (kerasmnist.processes.run_pinned); each writes
    its JSON into --out."""


@worker.command(name="matmul")
@click.argument("backend_name", metavar="BACKEND")
@click.argument("device")
@click.option("--sizes", required=True, help="Matrix sizes N, comma-separated.")
@click.option("--repeats", type=int, required=True, help="Timed calls per size.")
@click.option("--tf32", "float32_matmul_precision", flag_value="tf32", default="float32", help="Allow TF32.")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Folder for matmul.json.")
def worker_matmul(backend_name: str, device: str, sizes: str, repeats: int, float32_matmul_precision: str,
                  out: Path) -> None:
    """Time the matrix multiplies of one backend on one device, in this pinned process."""
    import json

    from kerasmnist import bench as bench_module, records

    entry = bench_module.measure(backend_name, device, tuple(int(size) for size in sizes.split(",")), repeats,
                                 float32_matmul_precision)
    records.replace_atomically(out / "matmul.json", json.dumps(entry.to_json()))


@worker.command(name="probe")
@click.argument("backend_name", metavar="BACKEND")
@click.argument("device")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Folder for probe.json.")
def worker_probe(backend_name: str, device: str, out: Path) -> None:
    """Pin one backend to one device as a run does, and report what it sees."""
    import json

    from kerasmnist import inventory, records

    records.replace_atomically(out / "probe.json", json.dumps(inventory.probe(backend_name, device)))


def summary(record: "RunRecord", path: Path) -> str:
    def seconds(value: float | None) -> str:
        return "n/a (needs 2 or more epochs)" if value is None else f"{value:.2f} s"

    rate, reached = record.samples_per_second, record.time_to_accuracy
    return "\n".join([
        f"backend {record.backend}, device {record.device} -> ran on {record.resolved_device}",
        f"model {record.model} ({record.parameters:,} parameters), dataset {record.dataset}, "
        f"{record.data['train_size']:,} training images",
        f"test accuracy {record.test_accuracy:.4f}, test loss {record.test_loss:.4f}",
        f"first epoch {seconds(record.first_epoch_seconds)}, steady epoch {seconds(record.steady_epoch_seconds)}, "
        f"{'n/a' if rate is None else f'{rate:,.0f}'} samples/s",
        f"time to {reached['target']:.0%} validation accuracy: "
        + (f"{reached['seconds']:.1f} s ({reached['epochs']} epochs, checked at epoch ends)"
           if reached["seconds"] is not None else "not reached"),
        f"record: {path}",
    ])


def main() -> None:
    cli(prog_name="kerasmnist")
