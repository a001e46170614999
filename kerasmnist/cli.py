"""The `kerasmnist` command. Thin: it parses flags into a RunConfig and calls library functions.

It never imports Keras at module level: the backend must be chosen first (kerasmnist.child.backend).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import click

from kerasmnist import config as config_module
from kerasmnist.errors import ERROR_PREFIX, KerasMnistError
from kerasmnist.launch.matrix import Matrix
from kerasmnist.stops import Stopped, exit_status, stops_cleanly

DEFAULTS = config_module.RunConfig()
MATRIX_DEFAULTS = Matrix()
# compare's and sweep's results go here, in the folder they run in: never into a checkout's committed reports/.
RESULTS_ROOT = Path("kerasmnist-results")


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
            click.echo(f"kerasmnist: {stop}" if isinstance(stop, Stopped) else "kerasmnist: interrupted", err=True)
            sys.exit(exit_status(stop))


@click.group(cls=OneLineErrors)
@click.version_option(package_name="kerasmnist")
def cli() -> None:
    """Train Keras 3 models on MNIST under TensorFlow, PyTorch or JAX, pinned to CPU or GPU, and compare them."""


def _choices(values: tuple[str, ...]) -> str:
    return "|".join(values)


def _shown(value: Any) -> str:
    """A setting's default as --help says it: 128,64 for a tuple, off for False, none for an empty string."""
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return "off" if value is False else "none" if value == "" else str(value)


@dataclass(frozen=True)
class Setting:
    """A RunConfig setting as a flag: `shown` is its default as --help says it, where the value would not."""

    field: str
    help: str
    shown: str | None
    flags: tuple[str, ...]
    click_arguments: dict[str, Any]


def _setting(field: str, help: str, shown: str | None = None, flags: tuple[str, ...] = (), **click_arguments: Any
             ) -> Setting:
    """A Setting whose flag is --FIELD-NAME unless `flags` says otherwise."""
    return Setting(field, help, shown, flags or (f"--{field.replace('_', '-')}",), click_arguments)


# The RunConfig settings that train and compare (and sweep) both take, each written once. The cell's axes
# (backend, device, model, implementation) are not here: train takes one of each, compare lists of them.
RUN_SETTINGS = (
    _setting("model_args", "A keyword argument for the model's builder (repeatable); VALUE is read as a TOML scalar "
                           "(64, 0.5, true, \"text\") or else taken as text.", "none", flags=("--model-arg",),
             metavar="KEY=VALUE", multiple=True, callback=lambda context, parameter, value: list(value) or None),
    _setting("from_logits", "The model's last layer gives logits, not probabilities.", is_flag=True),
    _setting("dataset", "Dataset to train on, or your loader returning ((x_train, y_train), (x_test, y_test)) NumPy "
                        "arrays as keras.datasets' load_data() do.",
             metavar=f"{_choices(config_module.DATASETS)}|PATH.py:FUNCTION|MODULE:FUNCTION"),
    _setting("epochs", "Training epochs (compare: at least 2, for a steady epoch).", type=int),
    _setting("batch_size", "Samples per step.", type=int),
    _setting("learning_rate", "Adam learning rate.", type=float),
    _setting("hidden", "FFN hidden layer sizes, comma-separated, e.g. 256,128."),
    _setting("seed", "Seed for Keras, NumPy and the validation split (compare adds each round's own offset).",
             type=int),
    _setting("validation_size", "Training images held out for validation.", type=int),
    _setting("limit_train", "Train on only the first N of the remaining training images.", "all", type=int),
    _setting("limit_test", "Evaluate, and time inference, on only the first N test images.", "all", type=int),
    _setting("data_dir", "Folder with the four IDX .gz files or mnist.npz.",
             "$KERASMNIST_DATA_DIR, then Keras's cache, then a download"),
    _setting("jit_compile", "XLA (TensorFlow, JAX) or torch.compile (torch); auto: what Keras uses on the pinned "
                            "device.", metavar=_choices(config_module.JIT_COMPILE)),
    _setting("steps_per_execution", "Batches Keras runs per call of its compiled train function.", type=int),
    _setting("fit_steps_per_epoch", "Tell fit the epoch's step count, so that Keras makes one data iterator per "
                                    "epoch instead of two (the same batches).", is_flag=True),
    _setting("progress", "Keras's progress bar, one line per epoch, or nothing.",
             metavar=_choices(config_module.PROGRESS)),
    _setting("precision", "Keras dtype policy (mixed: float16/bfloat16 compute).",
             metavar=_choices(config_module.PRECISIONS)),
    _setting("data_format", "The CNN's image layout (the same network); channels_first is torch's own.",
             metavar=_choices(config_module.DATA_FORMATS)),
    _setting("input_pipeline", "What fit gets: NumPy arrays, a shuffled tf.data pipeline (tf.data-repeat: repeated, "
                               "with the steps per epoch, one iterator for the whole fit) or torch DataLoader, or "
                               "tensors already on the device.", metavar=_choices(config_module.INPUT_PIPELINES)),
    _setting("data_parallel", "Replicate the model over every device of the pinned kind (jax, tensorflow).",
             is_flag=True),
    _setting("float32_matmul_precision", "Allow TF32 tensor cores (Ampere and newer GPUs) for float32 matmuls and "
                                         "convolutions on every backend (in TOML: tf32 = true).",
             "off: full float32 everywhere", flags=("--tf32",), flag_value="tf32"),
    _setting("cpu_devices", "Split the CPU into N virtual devices, to try --data-parallel without GPUs.", type=int),
    _setting("cpu_threads", "Compute threads on the CPU (the process is also bound to that many cores).",
             "the framework's default", type=int),
    _setting("xla_flags", "Extra XLA flags, space-separated, e.g. '--xla_cpu_use_thunk_runtime=false', added to "
                          "XLA_FLAGS for jax, or tensorflow with --jit-compile true; recorded and shown in row names.",
             metavar="FLAGS"),
    _setting("profile", "cProfile the training steps of epochs 2 on; the record says where the time went. Slows "
                        "Python-heavy runs, so the report keeps profiled runs apart.", is_flag=True),
    _setting("target_accuracy", "Validation accuracy for the time-to-accuracy figure.", "0.97 ffn, 0.98 the others",
             type=float),
    _setting("inference_batch_size", "model.predict's batch size when timing inference over the test set.",
             "--batch-size", type=int),
)


def run_settings(from_config: bool) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The options of RUN_SETTINGS. train's defaults are RunConfig's; compare's are None, meaning the --config
    file's value, else its [run] default, which --help names."""
    defaults = MATRIX_DEFAULTS.run if from_config else DEFAULTS

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        for setting in reversed(RUN_SETTINGS):
            value = getattr(defaults, setting.field)
            shown = setting.shown or _shown(value)
            option = click.option(
                *setting.flags, setting.field, **setting.click_arguments,
                default=None if from_config else (_shown(value) if isinstance(value, tuple) else value),
                help=f"{setting.help}  [default: {f'from --config, else {shown}' if from_config else shown}]")
            command = option(command)
        return command
    return decorate


@cli.command()
@click.option("--backend", default=DEFAULTS.backend, show_default=True, metavar=_choices(config_module.BACKENDS),
              help="Keras backend to train under.")
@click.option("--device", default=DEFAULTS.device, show_default=True, metavar=_choices(config_module.DEVICES),
              help="Device to pin the run to; gpu fails (exit 2) when the backend sees no GPU.")
@click.option("--model", default=DEFAULTS.model, show_default=True,
              metavar=f"{_choices(config_module.BUILTIN_MODELS)}|PATH.py:FUNCTION|MODULE:FUNCTION",
              help="cnn: the keras-io convnet; ffn: Flatten, Dense(hidden...), Dense(classes); resnet, lstm, vit: the "
                   "zoo; or your own builder, called with input_shape=, num_classes= and the --model-arg values, "
                   "returning an uncompiled keras.Model.")
@click.option("--implementation", default=DEFAULTS.implementation, show_default=True,
              metavar=_choices(config_module.IMPLEMENTATIONS),
              help="keras: model.fit; native: the same training written directly in the backend's framework.")
@run_settings(from_config=False)
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs"), show_default=True,
              help="Folder the run record is written to.")
def train(out: Path, **options: Any) -> None:
    """Train one model under one backend on one pinned device, and write its record."""
    from kerasmnist.child.run import run_and_record, summary

    config = config_module.run_config_from(options, "command line")
    if config.precision == "mixed_float16" and config.device == "cpu":
        click.echo("kerasmnist: note: float16 on a CPU is emulated and usually much slower than float32; "
                   "mixed_float16 is meant for GPUs with tensor cores", err=True)
    path, record = run_and_record(config, out)
    click.echo(summary(record, path))


def _listed(key: str) -> str:
    return ",".join(getattr(MATRIX_DEFAULTS, key))


ACCURACY_MARGIN_OPTION = click.option(
    "--accuracy-margin", type=float, default=None,
    help="Points of test accuracy within which a row learns as well as the fastest (two one-sided tests at 5%).  "
         f"[default: {config_module.ACCURACY_MARGIN_POINTS}]")


def matrix_options(default_out: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """compare's and sweep's own options: the matrix, its rounds, and where results go."""
    options = (
        click.option("--config", "config_path", type=click.Path(path_type=Path), default=None,
                     help="TOML file with [matrix] and [run] tables, or the name of one in configs/ (e.g. quick); "
                          "its keys are the flags' names with underscores (rounds, cell_timeout in [matrix]; "
                          "the training settings in [run]), and flags given here override it."),
        click.option("--backends", default=None, help=f"Comma-separated backends.  [default: {_listed('backends')}]"),
        click.option("--devices", default=None, help=f"Comma-separated devices.  [default: {_listed('devices')}]"),
        click.option("--models", default=None, help=f"Comma-separated models.  [default: {_listed('models')}]"),
        click.option("--implementations", default=None,
                     help=f"Comma-separated: keras, native.  [default: {_listed('implementations')}]"),
        click.option("--batch-sizes", default=None,
                     help="Comma-separated batch sizes, each a row of its own.  [default: --batch-size alone]"),
        click.option("--rounds", "--repeats", "rounds", type=int, default=None,
                     help="Passes over every cell, each with its own seed; 3 or more give each ratio an interval "
                          f"(the minimum, with --target-ci).  [default: {MATRIX_DEFAULTS.rounds}]"),
        click.option("--target-ci", type=float, default=None,
                     help="Add rounds until every ratio's 95% interval is within ± this share, e.g. 0.05.  "
                          "[default: off]"),
        click.option("--max-rounds", "--max-repeats", "max_rounds", type=int, default=None,
                     help="With --target-ci: the most rounds to run.  [default: 3 x --rounds]"),
        click.option("--cell-timeout", "cell_timeout", type=int, default=None,
                     help=f"Seconds before a cell is stopped and recorded as failed.  "
                          f"[default: {MATRIX_DEFAULTS.cell_timeout}]"),
        click.option("--peak-matmul-size", type=int, default=None,
                     help="N of the N x N matrix multiply timed per backend and device, the peak each cell's GFLOP/s "
                          f"is set against; 0 skips it.  [default: {MATRIX_DEFAULTS.peak_matmul_size}]"),
        ACCURACY_MARGIN_OPTION,
        click.option("--out", type=click.Path(path_type=Path), default=None,
                     help=f"Folder for results.jsonl and the report.  [default: {default_out}]"),
        click.option("--force", is_flag=True, help="Rerun cells that are already done."),
    )
    return _all_of(options)


def _all_of(options: tuple[Callable[..., Any], ...]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """One decorator applying `options` in order, as if written one above the other."""
    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(options):
            command = option(command)
        return command
    return decorate


# compare's and sweep's environments: which Python each backend's cells run (launch/environments.py).
environment_options = _all_of((
    click.option("--env", "env", multiple=True, metavar="BACKEND=PYTHON", callback=lambda context, parameter, value:
                 value or None,
                 help="Run BACKEND's cells with the interpreter PYTHON, of a Python environment you made with "
                      "kerasmnist installed; repeatable.  [default: kerasmnist's own]"),
    click.option("--envs", default=None, metavar="NAME,NAME",
                 help="The config's [[environments]] to run cells in, by name.  [default: all of them]"),
))


# compare's Slurm options, each a [slurm] key too (launch/executors/machines.py SLURM_KEYS).
slurm_options = _all_of((
    click.option("--slurm/--no-slurm", "slurm", default=None,
                 help="Run on a Slurm cluster, each round of each machine kind one job; --no-slurm runs a config "
                      "with [slurm] or [[machines]] here.  [default: Slurm when the config has either]"),
    click.option("--slurm-partition", default=None, help="Slurm partition ([slurm] partition)."),
    click.option("--slurm-constraint", default=None, help="Slurm node features, e.g. a100 ([slurm] constraint)."),
    click.option("--slurm-gres", default=None, help="Generic resources per job, e.g. gpu:1 ([slurm] gres)."),
    click.option("--slurm-time-minutes", type=int, default=None,
                 help="Time limit of each job, one round ([slurm] time_minutes).  [default: the partition's]"),
    click.option("--slurm-cpus-per-task", type=int, default=None, help="CPUs per job ([slurm] cpus_per_task)."),
    click.option("--slurm-mem-gb", type=float, default=None, help="Memory per job in GB ([slurm] mem_gb)."),
    click.option("--slurm-setup", multiple=True, default=None,
                 help="A shell line run on the node before kerasmnist, e.g. 'module load cuda'; repeatable "
                      "([slurm] setup)."),
    click.option("--slurm-parallel", type=int, default=None,
                 help="Rounds of one machine kind running at once ([slurm] parallel).  [default: 4]"),
    click.option("--slurm-exclusive/--slurm-shared", "slurm_exclusive", default=None,
                 help="Whole nodes to each job, or share them with others ([slurm] exclusive).  "
                      "[default: exclusive]"),
))


@cli.command()
@matrix_options(f"{RESULTS_ROOT}/CONFIG-NAME in this folder, or {RESULTS_ROOT}/compare")
@environment_options
@run_settings(from_config=True)
@slurm_options
def compare(config_path: Path | None, out: Path | None, force: bool, **overrides: Any) -> None:
    """Run the backend x device x model matrix, one fresh process per cell, then write the report."""
    run_matrix_and_report(config_path, out or RESULTS_ROOT / (config_path.stem if config_path else "compare"),
                          force, overrides)


@cli.command()
@matrix_options(f"{RESULTS_ROOT}/sweep in this folder")
@environment_options
@run_settings(from_config=True)
def sweep(config_path: Path | None, out: Path | None, force: bool, **overrides: Any) -> None:
    """Throughput and accuracy per batch size per backend: a compare over --batch-sizes (required, or batch_sizes
    in the config's [matrix])."""
    run_matrix_and_report(config_path, out or RESULTS_ROOT / "sweep", force, overrides, needs_batch_sizes=True)


def run_matrix_and_report(config_path: Path | None, out: Path, force: bool, overrides: dict[str, Any],
                          needs_batch_sizes: bool = False) -> None:
    from kerasmnist import records, report
    from kerasmnist.launch import compare as compare_module

    matrix, executor = compare_module.load(config_path, overrides)
    if needs_batch_sizes and not matrix.batch_sizes:
        raise click.UsageError("sweep needs --batch-sizes (or batch_sizes in the config's [matrix]), e.g. 64,128,256")
    outcome = compare_module.run_matrix(matrix, out, " ".join(["kerasmnist", *sys.argv[1:]]), force=force,
                                        echo=lambda line: click.echo(line, err=True), executor=executor)
    counts = outcome.counts
    click.echo(f"{counts['ok']} ok, {counts['skipped']} skipped, {counts['failed']} failed, "
               f"{counts['already done']} already done")
    if (out / records.RESULTS_FILE).is_file():  # not when stopped before any cell finished
        click.echo(report.write([out], out, matrix.accuracy_margin, matrix.headline_environments).terminal_text())
    sys.exit(outcome.exit_code)


@cli.command(name="report")
@click.argument("results_dirs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Folder for the report; needed to merge several RESULTS_DIRs.  [default: the one RESULTS_DIR]")
@ACCURACY_MARGIN_OPTION
@click.option("--json", "as_json", is_flag=True,
              help="Print the answer as data (comparison.json, also written beside report.md) instead of the headline.")
@click.option("--headline-env", "headline_environments", multiple=True, metavar="NAME",
              help="Rank the backends this environment serves in it, rather than in their newest environment "
                   "(repeatable; as a config's headline = true).  [default: each backend's newest]")
def report_command(results_dirs: tuple[Path, ...], out: Path | None, accuracy_margin: float | None,
                   as_json: bool, headline_environments: tuple[str, ...]) -> None:
    """Rebuild the report from the results.jsonl of one or more compare folders (no training).

    Several folders, e.g. a laptop's and a Colab GPU's, are merged into one report, written to --out.
    """
    from kerasmnist import report
    from kerasmnist.errors import ConfigError

    if out is None and len(results_dirs) > 1:
        raise ConfigError(f"merging {len(results_dirs)} results folders needs --out DIR for the merged report "
                          f"(without it, it would replace {results_dirs[0]}'s own report)")
    margin = config_module.accuracy_margin(config_module.ACCURACY_MARGIN_POINTS if accuracy_margin is None
                                           else accuracy_margin, "--accuracy-margin")
    built = report.write(list(results_dirs), out or results_dirs[0], margin, headline_environments)
    click.echo(json.dumps(built.comparison, indent=1) if as_json else built.terminal_text())


@cli.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print the inventory as JSON.")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Also save it as OUT/env.json, which the report of that folder shows.  [default: not saved]")
@click.pass_context
def env(context: click.Context, as_json: bool, out: Path | None) -> None:
    """What each backend is and sees here, and whether --device cpu / gpu would work; its commands make, list and
    remove the Python environments that compare's cells can run in ([[environments]], --env)."""
    if context.invoked_subcommand is not None:
        return
    import json

    from kerasmnist.launch import inventory
    from kerasmnist import records

    facts = inventory.collect(echo=lambda line: click.echo(line, err=True))
    if out is not None:
        records.ensure_writable(out)
        records.replace_atomically(out / inventory.INVENTORY_FILE, json.dumps(facts, indent=2) + "\n")
    click.echo(json.dumps(facts, indent=2) if as_json else inventory.render(facts))


def environments_config_option(required: bool) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return click.option("--config", "config_path", type=click.Path(path_type=Path), required=required,
                        help="TOML file with [[environments]] tables, or the name of one in configs/.")


@env.command(name="create")
@environments_config_option(required=True)
@click.argument("names", nargs=-1)
def env_create(config_path: Path, names: tuple[str, ...]) -> None:
    """Make the config's managed environments (NAMES, else all of them; packages = [...]), each reused while its
    specification is unchanged, and check every named one's interpreter."""
    from kerasmnist.errors import ConfigError
    from kerasmnist.launch import environments, venvs
    from kerasmnist.launch.matrix import read_config

    file_values, source = read_config(config_path)
    chosen = environments.chosen(file_values.get("environments", []), ",".join(names) if names else None, None,
                                 source)
    if not chosen:
        raise ConfigError(f"{source} has no [[environments]] tables")
    for line in venvs.ready(chosen, echo=lambda line: click.echo(line, err=True)):
        click.echo(line)


@env.command(name="list")
@environments_config_option(required=False)
def env_list(config_path: Path | None) -> None:
    """Each managed environment made (with --config: each of the config's environments): its interpreter, and its
    Python's, kerasmnist's and the frameworks' versions."""
    from kerasmnist.launch import environments, venvs
    from kerasmnist.launch.matrix import read_config

    if config_path is None:
        listed = [venvs.describe(made_of["name"], str(folder / "bin" / "python")) for folder, made_of in venvs.made()]
        click.echo("\n".join(listed) or f"no managed environments in {environments.cache_root()}")
        return
    file_values, source = read_config(config_path)
    listed = [f"{environment.name}: not made yet (kerasmnist env create --config {config_path} {environment.name})"
              if environment.managed and not venvs.is_made(environment.folder)
              else venvs.describe(environment.name, environment.interpreter)
              for environment in environments.from_tables(file_values.get("environments", []), source)]
    click.echo("\n".join(listed) or f"{source} has no [[environments]] tables")


@env.command(name="remove")
@click.argument("name")
def env_remove(name: str) -> None:
    """Remove the managed environment NAME from the cache."""
    from kerasmnist.launch import venvs

    for folder in venvs.remove(name):
        click.echo(f"removed {folder}")


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
@click.option("--out", type=click.Path(path_type=Path), default=RESULTS_ROOT / "matmul", show_default=True,
              help="Folder for bench.jsonl and the report (may be a compare folder).")
def matmul(backends: str, devices: str, sizes: str, repeats: int, float32_matmul_precision: str, out: Path) -> None:
    """Time a scalar multiply and N x N matrix multiplies; find where the GPU starts to win."""
    from kerasmnist.launch import bench as bench_module
    from kerasmnist import report
    from kerasmnist.launch.matrix import choices

    chosen = {flag: choices(value, allowed, flag, "command line") for flag, value, allowed in (
        ("--backends", backends, config_module.BACKENDS), ("--devices", devices, config_module.DEVICES))}
    try:
        size_list = tuple(int(size) for size in sizes.split(","))
    except ValueError:
        raise click.BadParameter(f"expected comma-separated whole numbers (got {sizes!r})", param_hint="--sizes")
    bench_module.run_bench(chosen["--backends"], chosen["--devices"], size_list, repeats, out,
                           " ".join(["kerasmnist", *sys.argv[1:]]), echo=lambda line: click.echo(line, err=True),
                           float32_matmul_precision=float32_matmul_precision)
    click.echo(report.write([out], out).terminal_text())


@cli.command()
@click.option("--out", type=click.Path(path_type=Path), required=True, help="The notebook to write (.ipynb).")
@click.option("--install-from-repo", is_flag=True,
              help="Install kerasmnist from the repository in the notebook's REPO_URL parameter, instead of "
                   "carrying this installation in the notebook as a wheel.  [default: carry it]")
def colab(out: Path, install_from_repo: bool) -> None:
    """Write a notebook that runs the Colab T4 comparison on a fresh runtime with no edits."""
    from kerasmnist.launch.colab import write_notebook

    click.echo(f"notebook: {write_notebook(out, from_repo=install_from_repo)}")


def main() -> None:
    cli(prog_name="kerasmnist")
