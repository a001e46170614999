import pytest

from kerasmnist.config import RunConfig, run_config_from
from kerasmnist.errors import ConfigError


def test_defaults_are_valid():
    config = RunConfig()
    assert (config.backend, config.device, config.model, config.epochs, config.batch_size) == (
        "tensorflow", "cpu", "cnn", 5, 128)


def test_command_line_values_are_coerced():
    config = run_config_from({"backend": "jax", "model": "ffn", "hidden": "256,128", "learning_rate": 1, "limit_train": None},
                             "command line")
    assert config.hidden == (256, 128)
    assert config.learning_rate == 1.0
    assert config.limit_train is None


def test_xla_flags_are_taken_for_xla_compiled_runs():
    assert run_config_from({"backend": "jax", "xla_flags": "--xla_cpu_use_thunk_runtime=false --xla_cpu_max_isa=AVX2"},
                           "command line").xla_flags == "--xla_cpu_use_thunk_runtime=false --xla_cpu_max_isa=AVX2"
    assert run_config_from({"backend": "tensorflow", "jit_compile": True, "xla_flags": "--xla_cpu_use_onednn=true"},
                           "configs/x.toml").xla_flags == "--xla_cpu_use_onednn=true"


def test_toml_values_are_coerced():
    config = run_config_from({"model": "ffn", "hidden": [64, 32], "jit_compile": True}, "configs/x.toml")
    assert config.hidden == (64, 32)
    assert config.jit_compile == "true"


@pytest.mark.parametrize("values, message", [
    ({"epochs": 0}, "command line: --epochs must be at least 1 (got 0)"),
    ({"batch_size": -1}, "command line: --batch-size must be at least 1 (got -1)"),
    ({"hidden": "0"}, "command line: --hidden needs one or more sizes, each at least 1 (got [0])"),
    ({"hidden": "12,abc"}, "command line: --hidden expected comma-separated whole numbers"),
    ({"backend": "mxnet"}, "command line: --backend must be one of tensorflow, torch, jax (got 'mxnet')"),
    ({"device": "tpu"}, "command line: --device must be one of cpu, gpu (got 'tpu')"),
    ({"learning_rate": 0.0}, "command line: --learning-rate must be greater than 0"),
    ({"limit_train": 70_000}, "command line: --limit-train must be between 1 and 50000"),
    ({"validation_size": 60_000}, "command line: --validation-size must leave training images"),
    ({"backend": "torch", "steps_per_execution": 4}, "command line: --steps-per-execution must be 1 under the torch"),
    ({"backend": "tensorflow", "input_pipeline": "device"},
     "command line: --input-pipeline device cannot keep the data on the device under the tensorflow backend"),
    ({"float32_matmul_precision": "tf16"}, "command line: --float32-matmul-precision must be one of float32, tf32"),
    ({"backend": "jax", "xla_flags": "xla_cpu_use_thunk_runtime=false"},
     "command line: --xla-flags must be XLA flags such as --xla_cpu_use_thunk_runtime=false "
     "(got 'xla_cpu_use_thunk_runtime=false')"),
    ({"backend": "jax", "xla_flags": "--xla_force_host_platform_device_count=4"},
     "command line: --xla-flags cannot set --xla_force_host_platform_device_count: --cpu-devices does"),
    ({"backend": "torch", "xla_flags": "--xla_cpu_use_thunk_runtime=false"},
     "command line: --xla-flags act only on XLA-compiled code: jax, or tensorflow with jit_compile true "
     "(got torch with jit_compile auto)"),
    ({"backend": "tensorflow", "xla_flags": "--xla_cpu_use_thunk_runtime=false"},
     "command line: --xla-flags act only on XLA-compiled code"),
])
def test_bad_command_line_values_name_the_flag(values, message):
    with pytest.raises(ConfigError) as error:
        run_config_from(values, "command line")
    assert str(error.value).startswith(message)


@pytest.mark.parametrize("values, message", [
    ({"epochz": 3}, "configs/x.toml: unknown key epochz; allowed: "),
    ({"epochs": "3"}, "configs/x.toml: epochs expected a whole number (got '3')"),
    ({"epochs": True}, "configs/x.toml: epochs expected a whole number (got True)"),
    ({"learning_rate": "fast"}, "configs/x.toml: learning_rate expected a number"),
    ({"model": 3}, "configs/x.toml: model expected a string (got 3)"),
])
def test_bad_file_values_name_the_file_and_key(values, message):
    with pytest.raises(ConfigError) as error:
        run_config_from(values, "configs/x.toml")
    assert str(error.value).startswith(message)


def test_model_args_are_read_as_toml_scalars_and_a_reference_is_a_model():
    config = run_config_from({"model": "my_models.py:build", "model_args": ["width=64", "rate=0.5", "deep=true",
                                                                             "name=wide", 'tag="64"']},
                             "command line")
    assert config.model_args == {"width": 64, "rate": 0.5, "deep": True, "name": "wide", "tag": "64"}
    assert run_config_from({"model": "pkg.models:build", "model_args": {"width": 8}}, "x.toml").model_args == {"width": 8}


@pytest.mark.parametrize("values, message", [
    ({"model": "resnet", "hidden": [64]}, "--hidden sets the ffn's hidden layers only"),
    ({"model": "lstm", "implementation": "native"}, "--implementation native exists for cnn and ffn only"),
    ({"model": "m.py:build", "model_args": ["width"]}, "--model-args expected KEY=VALUE"),
    ({"dataset": "cifar"}, "--dataset must be one of mnist, fashion-mnist, or PATH.py:FUNCTION"),
])
def test_model_and_dataset_settings_are_checked(values, message):
    with pytest.raises(ConfigError, match=message):
        run_config_from(values, "command line")
