"""The one typed configuration of a training run, and its validation.

Command-line flags and TOML files both become a `RunConfig` through `run_config_from`,
so both get the same checks and the same one-line messages.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import tomllib
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from kerasmnist import references
from kerasmnist.errors import ConfigError

BACKENDS = ("tensorflow", "torch", "jax")
DEVICES = ("cpu", "gpu")
MODELS = ("cnn", "ffn")  # the seed models, compared by default
BUILTIN_MODELS = (*MODELS, "resnet", "lstm", "vit")  # kerasmnist's own; any other model is a reference
NATIVE_MODELS = MODELS  # the models --implementation native has a loop for
DATASETS = ("mnist", "fashion-mnist")  # built in; any other dataset is a reference to a loader
JIT_COMPILE = ("auto", "true", "false")
PROGRESS = ("bar", "epoch", "none")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
IMPLEMENTATIONS = ("keras", "native")
DATA_FORMATS = ("channels_last", "channels_first")
INPUT_PIPELINES = ("numpy", "tf.data", "tf.data-repeat", "torch.utils.data", "device")
# A framework's own input pipeline. tf.data-repeat is tf.data repeated without end, fit told the steps per epoch:
# Keras then keeps one iterator for the whole fit instead of one per epoch (reports/tf-two-speeds).
HOST_PIPELINES = {"tf.data": "tensorflow", "tf.data-repeat": "tensorflow", "torch.utils.data": "torch"}
FLOAT32_MATMUL_PRECISIONS = ("float32", "tf32")  # full float32, or TF32 tensor cores (Ampere and newer GPUs)

MNIST_TRAIN_IMAGES = 60_000

# The report's default margin for "learns as well", in points of test accuracy (report/stats.Learning): chosen from
# the seed-to-seed spread of the built-in models' committed runs (reports/learning-margin/README.md).
ACCURACY_MARGIN_POINTS = 1.0


def accuracy_margin(margin: Any, name: str) -> float:
    """A learning margin in points of test accuracy, as given by TOML or a flag (`name` says which), or one line
    saying why it is not one."""
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not 0 < margin < 100:
        raise ConfigError(f"{name} must be points of test accuracy between 0 and 100, e.g. 1.0 (got {margin!r})")
    return float(margin)

# Enough steady epochs in a run for its median to be one of its majority speed's epochs: an odd count
# (an even one takes the mean of the two middle epochs, which with two speeds may be neither), and longer
# than the longest run at one speed seen so far (4 epochs) with room for a longer one. Reasoning and
# evidence in reports/tf-two-speeds/README.md.
MIN_STEADY_EPOCHS = 7

# A run's times are suspect past these: other processes used more than a quarter of the machine's CPU time while
# it trained, or the hypervisor stole over 5% of it (the report calls its row unstable; `train` says so).
BUSY_SHARE, STEAL_SHARE = 0.25, 0.05

XLA_HOST_DEVICES_FLAG = "--xla_force_host_platform_device_count"  # how --cpu-devices splits the CPU
_XLA_FLAG = re.compile(r"--xla_\w+(=\S*)?")


@dataclass(frozen=True)
class RunConfig:
    """Everything that decides what a training run computes and how it is timed."""

    backend: str = "tensorflow"
    device: str = "cpu"
    model: str = "cnn"  # a built-in name, or a user's builder as PATH.py:FUNCTION or MODULE:FUNCTION
    model_args: dict[str, Any] = dataclasses.field(default_factory=dict)  # keyword arguments for the builder
    from_logits: bool = False  # the model's last layer gives logits, not probabilities
    implementation: str = "keras"  # native: the same training written directly in the backend's framework
    dataset: str = "mnist"  # a built-in name, or a loader as PATH.py:FUNCTION or MODULE:FUNCTION
    epochs: int = 5
    batch_size: int = 128
    learning_rate: float = 1e-3
    hidden: tuple[int, ...] = (128,)  # FFN hidden layer sizes; ignored by the CNN
    seed: int = 0
    validation_size: int = 10_000
    limit_train: int | None = None  # use only the first N training images
    limit_test: int | None = None  # evaluate and time inference on only the first N test images
    data_dir: str | None = None  # None: KERASMNIST_DATA_DIR, Keras's cache, then download
    jit_compile: str = "auto"  # auto: XLA where Keras would use it on the pinned device
    steps_per_execution: int = 1  # Keras runs this many batches per call of its compiled train function
    # fit is told the epoch's step count (steps_per_epoch): Keras then keeps the data iterator it makes at each
    # epoch's end for the next epoch, instead of making (and throwing away) a second one per epoch
    # (keras/src/trainers/epoch_iterator.py, lines 110-126). The same batches, fewer iterators.
    fit_steps_per_epoch: bool = False
    progress: str = "bar"  # Keras's per-batch bar, one line per epoch, or silence
    precision: str = "float32"  # a Keras dtype policy
    data_format: str = "channels_last"  # the CNN's image layout; the same network either way
    input_pipeline: str = "numpy"  # what fit gets: NumPy arrays, a tf.data (once or repeated) or torch pipeline, or
    #                                tensors on the device
    data_parallel: bool = False  # one model replicated over every device of the pinned kind
    float32_matmul_precision: str = "float32"  # "tf32": TF32 tensor cores for float32 matmuls and convolutions
    cpu_devices: int = 1  # split the CPU into this many virtual devices (for --data-parallel)
    cpu_threads: int | None = None  # compute threads on the CPU; None: the framework's own default
    xla_flags: str = ""  # extra XLA flags (space-separated) for XLA-compiled runs: JAX, TensorFlow with jit_compile
    profile: bool = False  # cProfile the steady epochs' training steps (slows Python-heavy runs)
    target_accuracy: float | None = None  # for time to accuracy; None: 0.98 for the CNN, 0.97 for the FFN
    inference_batch_size: int | None = None  # model.predict's batch size when timing inference; None: batch_size

    def __post_init__(self) -> None:
        for key, builtin in (("model", BUILTIN_MODELS), ("dataset", DATASETS)):
            if getattr(self, key) not in builtin and not references.is_reference(getattr(self, key)):
                raise InvalidValue(key, f"must be one of {', '.join(builtin)}, or PATH.py:FUNCTION or "
                                        f"MODULE:FUNCTION (got {getattr(self, key)!r})")
        for key, allowed in (
            ("backend", BACKENDS),
            ("device", DEVICES),
            ("jit_compile", JIT_COMPILE),
            ("progress", PROGRESS),
            ("precision", PRECISIONS),
            ("implementation", IMPLEMENTATIONS),
            ("data_format", DATA_FORMATS),
            ("input_pipeline", INPUT_PIPELINES),
            ("float32_matmul_precision", FLOAT32_MATMUL_PRECISIONS),
        ):
            if getattr(self, key) not in allowed:
                raise InvalidValue(key, f"must be one of {', '.join(allowed)} (got {getattr(self, key)!r})"
                                        + suggestion(getattr(self, key), allowed))
        for key, minimum in (("epochs", 1), ("batch_size", 1), ("seed", 0), ("validation_size", 0),
                             ("cpu_devices", 1), ("steps_per_execution", 1)):
            if getattr(self, key) < minimum:
                raise InvalidValue(key, f"must be at least {minimum} (got {getattr(self, key)})")
        self._check_model()
        if self.dataset in DATASETS and self.validation_size >= MNIST_TRAIN_IMAGES:
            raise InvalidValue(
                "validation_size",
                f"must leave training images out of the {MNIST_TRAIN_IMAGES} (got {self.validation_size})",
            )
        most = MNIST_TRAIN_IMAGES - self.validation_size
        if self.dataset in DATASETS and self.limit_train is not None and not 1 <= self.limit_train <= most:
            raise InvalidValue("limit_train", f"must be between 1 and {most}: the {MNIST_TRAIN_IMAGES} training images "
                                              f"less the {self.validation_size} held out for validation "
                                              f"(got {self.limit_train})")
        for key in ("limit_train", "limit_test"):
            if getattr(self, key) is not None and getattr(self, key) < 1:
                raise InvalidValue(key, f"must be at least 1 (got {getattr(self, key)})")
        if self.cpu_threads is not None and self.cpu_threads < 1:
            raise InvalidValue("cpu_threads", f"must be at least 1 (got {self.cpu_threads})")
        if self.target_accuracy is not None and not 0 < self.target_accuracy <= 1:
            raise InvalidValue("target_accuracy", f"must be a fraction in (0, 1] (got {self.target_accuracy})")
        if not self.learning_rate > 0:
            raise InvalidValue("learning_rate", f"must be greater than 0 (got {self.learning_rate})")
        if self.inference_batch_size is not None and self.inference_batch_size < 1:
            raise InvalidValue("inference_batch_size", f"must be at least 1 (got {self.inference_batch_size})")
        if self.implementation == "native" and (self.precision != "float32" or self.data_parallel
                                                 or self.steps_per_execution != 1 or self.fit_steps_per_epoch
                                                 or self.data_format != "channels_last"
                                                 or self.input_pipeline in HOST_PIPELINES):
            raise InvalidValue("implementation", "native runs float32 on one device only, a batch per step, in "
                                                 "each framework's own layout, from NumPy arrays or device tensors "
                                                 "(no --precision, --data-parallel, --steps-per-execution, "
                                                 "--fit-steps-per-epoch, "
                                                 "--data-format, or a tf.data or torch.utils.data pipeline)")
        if self.steps_per_execution > 1 and self.backend == "torch":
            raise InvalidValue("steps_per_execution", f"must be 1 under the torch backend, where Keras runs one "
                                                      f"batch per call (got {self.steps_per_execution})")
        if self.input_pipeline == "device" and self.backend == "tensorflow" and self.implementation == "keras":
            raise InvalidValue("input_pipeline", "device cannot keep the data on the device under the tensorflow "
                                                 "backend: Keras's TensorFlow trainer feeds fit through tf.data on "
                                                 "the host whatever it is given (keras/src/trainers/data_adapters/"
                                                 "array_data_adapter.py, get_tf_dataset, line 107); use numpy or "
                                                 "tf.data")
        if self.data_parallel and self.backend == "torch":
            raise InvalidValue("data_parallel", "is not supported by the torch backend (Keras's distribution API "
                                                "covers JAX; TensorFlow uses tf.distribute); use jax or tensorflow")
        self._check_xla_flags()
        if self.cpu_devices > 1 and (self.device != "cpu" or self.backend == "torch"):
            raise InvalidValue("cpu_devices", "can only split the CPU of a jax or tensorflow run pinned to the cpu "
                                              f"(got {self.cpu_devices} with {self.backend} on {self.device})")

    def _check_model(self) -> None:
        if not self.hidden or any(size < 1 for size in self.hidden):
            raise InvalidValue("hidden", f"needs one or more sizes, each at least 1 (got {list(self.hidden)})")
        if self.model != "ffn" and self.hidden != RunConfig.hidden:
            raise InvalidValue("hidden", f"sets the ffn's hidden layers only (got {list(self.hidden)} "
                                         f"for model {self.model})")
        if self.implementation == "native" and self.model not in NATIVE_MODELS:
            raise InvalidValue("implementation", f"native exists for {' and '.join(NATIVE_MODELS)} only "
                                                 f"(got model {self.model})")
        unusable = [key for key, value in self.model_args.items()
                    if not key.isidentifier() or not isinstance(value, (str, int, float, bool))]
        if unusable:
            raise InvalidValue("model_args", f"must map names to strings, numbers or booleans "
                                             f"(got {unusable[0]!r} = {self.model_args[unusable[0]]!r})")

    def _check_xla_flags(self) -> None:
        flags = self.xla_flags.split()
        malformed = [flag for flag in flags if not _XLA_FLAG.fullmatch(flag)]
        if malformed:
            raise InvalidValue("xla_flags", f"must be XLA flags such as --xla_cpu_use_thunk_runtime=false "
                                            f"(got {malformed[0]!r})")
        if any(flag.startswith(XLA_HOST_DEVICES_FLAG) for flag in flags):
            raise InvalidValue("xla_flags", f"cannot set {XLA_HOST_DEVICES_FLAG}: --cpu-devices does")
        if flags and (self.backend == "torch" or (self.backend == "tensorflow" and self.jit_compile != "true")):
            raise InvalidValue("xla_flags", "act only on XLA-compiled code: jax, or tensorflow with jit_compile "
                                            f"true (got {self.backend} with jit_compile {self.jit_compile})")

    def batches_per_epoch(self, train_size: int) -> int:
        """One pass over `train_size` images in batches, the last one partial as fit(x, y) makes it."""
        return math.ceil(train_size / self.batch_size)

    @property
    def resolved_target_accuracy(self) -> float:
        """MLPerf-style targets for MNIST: the FFN reaches 97% in a few epochs, the convnets and the others 98%."""
        return self.target_accuracy or (0.97 if self.model == "ffn" else 0.98)

    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values["hidden"] = list(self.hidden)
        values["model_args"] = dict(sorted(self.model_args.items()))
        return values


def suggestion(value: Any, allowed: Sequence[str]) -> str:
    """"; did you mean 'torch'?" for a near miss of an allowed name (pytorch), else ""."""
    close = difflib.get_close_matches(str(value), allowed, n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


class InvalidValue(ConfigError):
    """A value out of range; `run_config_from` names where it came from."""

    def __init__(self, key: str, problem: str):
        super().__init__(f"{key} {problem}")
        self.key = key
        self.problem = problem


_FIELD_TYPES = {field.name: field.type for field in dataclasses.fields(RunConfig)}


def run_config_from(values: Mapping[str, Any], source: str, table: str = "") -> RunConfig:
    """Builds a RunConfig from flags or a TOML table, naming `source` and the key in every error.

    `source` is "command line" (keys are shown as --flags) or a file's path; `table` the TOML table, e.g. "[run]".
    """
    typed = coerce(values, source, table)
    try:
        return RunConfig(**typed)
    except InvalidValue as error:
        raise ConfigError(f"{source}: {_shown(error.key, source)} {error.problem}") from None


def coerce(values: Mapping[str, Any], source: str, table: str = "") -> dict[str, Any]:
    """The given (not None) values, typed as RunConfig fields; unknown keys and wrong types raise.
    A TOML table may say `tf32 = true`, as train says --tf32, for float32_matmul_precision = "tf32"."""
    if "tf32" in values:
        values = _tf32(values, source)
    unknown = sorted(set(values) - set(_FIELD_TYPES))
    if unknown:
        raise ConfigError(f"{source}: unknown key {_shown(unknown[0], source)}{f' in {table}' if table else ''}; "
                          f"allowed: {', '.join(sorted(_FIELD_TYPES))}")
    return {key: _coerce(key, value, _shown(key, source), source) for key, value in values.items() if value is not None}


def _tf32(values: Mapping[str, Any], source: str) -> dict[str, Any]:
    settings = dict(values)
    tf32 = settings.pop("tf32")
    if not isinstance(tf32, bool):
        raise ConfigError(f"{source}: tf32 expected true or false (got {tf32!r})")
    if settings.get("float32_matmul_precision") is not None:
        raise ConfigError(f"{source}: sets both tf32 and float32_matmul_precision; keep one")
    return settings | {"float32_matmul_precision": "tf32" if tf32 else "float32"}


def _shown(key: str, source: str) -> str:
    return "--" + key.replace("_", "-") if source == "command line" else key


def parse_hidden(text: str) -> tuple[int, ...]:
    """'256,128' -> (256, 128)."""
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise ValueError(f"expected comma-separated whole numbers such as 256,128 (got {text!r})") from None


def parse_model_args(pairs: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """['width=64', 'name=wide'] -> {'width': 64, 'name': 'wide'}: each value read as a TOML scalar
    (64, 0.5, true, "text"), else taken as the text it is."""
    parsed = {}
    for pair in pairs:
        key, equals, text = pair.partition("=")
        if not equals or not key.strip():
            raise ValueError(f"expected KEY=VALUE such as width=64 (got {pair!r})")
        try:
            parsed[key.strip()] = tomllib.loads(f"value = {text.strip()}")["value"]
        except tomllib.TOMLDecodeError:
            parsed[key.strip()] = text.strip()
    return parsed


def _coerce(key: str, value: Any, shown: str, source: str) -> Any:
    expected = _FIELD_TYPES[key]
    problem = None
    if key == "model_args":
        if isinstance(value, dict):
            return dict(value)
        try:
            return parse_model_args([value] if isinstance(value, str) else list(value))
        except (ValueError, TypeError) as error:
            problem = str(error)
    elif key == "hidden":
        if isinstance(value, str):
            try:
                return parse_hidden(value)
            except ValueError as error:
                problem = str(error)
        elif isinstance(value, int) and not isinstance(value, bool):
            return (value,)
        elif isinstance(value, (list, tuple)) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            return tuple(value)
        else:
            problem = f"expected a list of whole numbers (got {value!r})"
    elif expected in ("int", "int | None"):
        if isinstance(value, bool) or not isinstance(value, int):
            problem = f"expected a whole number (got {value!r})"
    elif expected in ("float", "float | None"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            problem = f"expected a number (got {value!r})"
        else:
            value = float(value)
    elif expected == "bool":
        if not isinstance(value, bool):
            problem = f"expected true or false (got {value!r})"
    elif expected in ("str", "str | None"):
        if isinstance(value, bool) and key == "jit_compile":
            value = "true" if value else "false"  # TOML users write jit_compile = true
        elif not isinstance(value, str):
            problem = f"expected a string (got {value!r})"
    if problem:
        raise ConfigError(f"{source}: {shown} {problem}")
    return value
