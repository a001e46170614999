"""The `kerasmnist` command. Thin: it parses flags into a RunConfig and calls library functions.

It never imports Keras at module level: the backend must be chosen first (kerasmnist.backend).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from kerasmnist import config as config_module
from kerasmnist.errors import KerasMnistError

DEFAULTS = config_module.RunConfig()


class OneLineErrors(click.Group):
    """Every error, ours or click's, is one line on stderr and a non-zero exit: no usage dump, no traceback."""

    def main(self, args: Any = None, prog_name: Any = None, **extra: Any) -> Any:
        extra.pop("standalone_mode", None)
        try:
            return super().main(args, prog_name, standalone_mode=False, **extra)
        except click.exceptions.Exit as done:
            sys.exit(done.exit_code)
        except click.ClickException as error:
            click.echo(f"kerasmnist: error: {error.format_message()}", err=True)
            sys.exit(error.exit_code)
        except KerasMnistError as error:
            click.echo(f"kerasmnist: error: {error}", err=True)
            sys.exit(error.exit_code)
        except (click.Abort, KeyboardInterrupt):
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
@click.option("--progress", default=DEFAULTS.progress, show_default=True, metavar=_choices(config_module.PROGRESS),
              help="Keras's progress bar, one line per epoch, or nothing.")
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs"), show_default=True,
              help="Folder the run record is written to.")
def train(out: Path, **options: Any) -> None:
    """Train one model under one backend on one pinned device, and write its record."""
    from kerasmnist.run import run_and_record

    config = config_module.run_config_from(options, "command line")
    path, record = run_and_record(config, out)
    click.echo(summary(record, path))


@cli.command()
@click.option("--config", "config_path", type=click.Path(path_type=Path), default=None,
              help="TOML file with [matrix] and [run] tables (see configs/); flags below override it.")
@click.option("--backends", default=None, help="Comma-separated backends.  [default: tensorflow,torch,jax]")
@click.option("--devices", default=None, help="Comma-separated devices.  [default: cpu]")
@click.option("--models", default=None, help="Comma-separated models.  [default: cnn,ffn]")
@click.option("--repeats", type=int, default=None, help="Runs of each cell.  [default: 1]")
@click.option("--cell-timeout", "cell_timeout_seconds", type=int, default=None,
              help="Seconds before a cell is stopped and recorded as failed.  [default: 3600]")
@click.option("--epochs", type=int, default=None, help="Training epochs per cell.  [default: 5]")
@click.option("--batch-size", type=int, default=None, help="Samples per step.  [default: 128]")
@click.option("--limit-train", type=int, default=None, help="Train on the first N images.  [default: all]")
@click.option("--validation-size", type=int, default=None, help="Images held out for validation.  [default: 10000]")
@click.option("--data-dir", default=None, help="Data folder, as for train.  [default: search as for train]")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Folder for results.jsonl and the report.  [default: reports/CONFIG-NAME, or reports/compare]")
@click.option("--force", is_flag=True, help="Rerun cells that are already done.")
def compare(config_path: Path | None, out: Path | None, force: bool, **overrides: Any) -> None:
    """Run the backend x device x model matrix, one fresh process per cell, then write the report."""
    from kerasmnist import compare as compare_module, report
    from kerasmnist.matrix import load_matrix

    matrix = load_matrix(config_path, overrides)
    out = out or Path("reports") / (config_path.stem if config_path else "compare")
    outcome = compare_module.run_matrix(matrix, out, " ".join(["kerasmnist", *sys.argv[1:]]), force=force,
                                        echo=lambda line: click.echo(line, err=True))
    counts = outcome.counts
    click.echo(f"{counts['ok']} ok, {counts['skipped']} skipped, {counts['failed']} failed, "
               f"{counts['already done']} already done")
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


def summary(record: dict[str, Any], path: Path) -> str:
    def seconds(value: float | None) -> str:
        return "n/a (needs 2 or more epochs)" if value is None else f"{value:.2f} s"

    rate = record["samples_per_second"]
    return "\n".join([
        f"backend {record['backend']}, device {record['device']} -> ran on {record['resolved_device']}",
        f"model {record['model']} ({record['parameters']:,} parameters), dataset {record['dataset']}, "
        f"{record['data']['train_size']:,} training images",
        f"test accuracy {record['test_accuracy']:.4f}, test loss {record['test_loss']:.4f}",
        f"first epoch {seconds(record['first_epoch_seconds'])}, steady epoch {seconds(record['steady_epoch_seconds'])}, "
        f"{'n/a' if rate is None else f'{rate:,.0f}'} samples/s",
        f"record: {path}",
    ])


def main() -> None:
    cli(prog_name="kerasmnist")
