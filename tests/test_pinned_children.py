"""The GPU side's environment policy, read inside real pinned child processes on the CPU.

What truly needs a GPU (the memory a GPU run takes, TF32 arithmetic) rests on the frameworks' own
settings, which every build has: these tests read those settings, and the environment, in a child.
"""

import json
import subprocess
import sys
import textwrap

import pytest

from conftest import FIXTURE_DIR, QUICK_ARGS, error_line, records_in, run_cli
from kerasmnist import pinning
from kerasmnist.child import backend

pytestmark = pytest.mark.slow


def in_child(script: str, env: dict[str, str] | None = None) -> dict:
    """Runs `script` in a fresh Python with the user's environment plus `env`; returns the JSON it prints last."""
    child_env = pinning.child_environment() | (env or {})
    child = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True,
                           env=child_env, timeout=300)
    assert child.returncode == 0, child.stderr
    return json.loads(child.stdout.strip().splitlines()[-1])


def test_the_users_gpu_choice_and_xla_flags_reach_the_pinned_child():
    seen = in_child("""
        import json, os
        from kerasmnist import pinning
        from kerasmnist.child import backend
        from kerasmnist.errors import BackendUnavailable
        try:
            backend.pin("torch", "gpu")   # fails here (no GPU), after setting the environment as a GPU run does
        except BackendUnavailable:
            pass
        names = ("CUDA_VISIBLE_DEVICES", "XLA_PYTHON_CLIENT_PREALLOCATE", "TF_FORCE_GPU_ALLOW_GROWTH", "XLA_FLAGS")
        print(json.dumps({name: os.environ.get(name) for name in names}
                         | {"child": pinning.child_environment().get("CUDA_VISIBLE_DEVICES")}))
    """, {"CUDA_VISIBLE_DEVICES": "1,2", "XLA_FLAGS": "--xla_dump_to=/tmp/x"})
    assert seen == {"CUDA_VISIBLE_DEVICES": "1", "XLA_PYTHON_CLIENT_PREALLOCATE": "false",
                    "TF_FORCE_GPU_ALLOW_GROWTH": "true", "XLA_FLAGS": "--xla_dump_to=/tmp/x",
                    "child": "1,2"}  # what this process's own children get: the user's choice, not its pinning


def test_virtual_cpu_devices_combine_with_the_users_xla_flags_in_jax_itself():
    seen = in_child("""
        import json
        from kerasmnist.child import backend
        backend.pin("jax", "cpu", cpu_devices=2)
        import jax
        print(json.dumps({"devices": len(jax.devices()), "platform": jax.devices()[0].platform}))
    """, {"XLA_FLAGS": "--xla_cpu_enable_fast_math=false", "JAX_PLATFORMS": "cuda"})
    assert seen == {"devices": 2, "platform": "cpu"}


FLOAT32_FLAGS = {
    "torch": "import torch; flags = [torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32]",
    "tensorflow": "import tensorflow as tf; flags = [tf.config.experimental.tensor_float_32_execution_enabled()]",
    "jax": "import jax; flags = [jax.config.jax_default_matmul_precision]",
}


@pytest.mark.parametrize("name", ["torch", "tensorflow", "jax"])
def test_one_float32_policy_in_each_frameworks_own_flags(name):
    seen = {}
    for precision in ("float32", "tf32"):
        seen[precision] = in_child(f"""
            import json
            from kerasmnist.child import backend
            backend.pin("{name}", "cpu", float32_matmul_precision="{precision}")
            {FLOAT32_FLAGS[name]}
            print(json.dumps(flags))
        """)
    expected = {"torch": ([False, False], [True, True]), "tensorflow": ([False], [True]),
                "jax": (["float32"], ["tensorfloat32"])}[name]
    assert (seen["float32"], seen["tf32"]) == expected


@pytest.mark.parametrize("name", ["torch", "jax"])
def test_torch_and_jax_seed_as_keras_does_without_loading_tensorflow(name):
    seen = in_child(f"""
        import json, random, sys
        import numpy as np
        from kerasmnist.child import backend
        backend.pin("{name}", "cpu")
        import keras
        from kerasmnist.child.trainers import keras as keras_trainer

        def draws():
            return [keras.ops.convert_to_numpy(keras.random.normal((3,))).tolist(), np.random.rand(), random.random()]

        keras_trainer.set_random_seed(7, "{name}", seed_tensorflow=False)
        ours = draws()
        loaded = "tensorflow" in sys.modules
        keras.utils.set_random_seed(7)
        print(json.dumps({{"same": ours == draws(), "tensorflow_loaded": loaded}}))
    """)
    assert seen == {"same": True, "tensorflow_loaded": False}


def test_a_torch_run_never_loads_tensorflow(tmp_path):
    seen = in_child(f"""
        import json, sys
        from pathlib import Path
        from kerasmnist.config import RunConfig
        from kerasmnist.child.run import run_and_record
        config = RunConfig(backend="torch", model="ffn", epochs=1, validation_size=1000, limit_train=500,
                           data_dir="{FIXTURE_DIR}", progress="none")
        run_and_record(config, Path("{tmp_path}"))
        print(json.dumps({{"tensorflow_loaded": "tensorflow" in sys.modules}}))
    """)
    assert seen == {"tensorflow_loaded": False}


def test_tensorflow_for_input_under_another_backend_sees_no_gpu():
    seen = in_child("""
        import json
        from kerasmnist.child import backend
        backend.pin("torch", "cpu")
        import tensorflow as tf
        hidden = []
        tf.config.set_visible_devices = lambda devices, kind=None: hidden.append([devices, kind])
        backend.import_tensorflow()
        print(json.dumps(hidden))
    """)
    assert seen == [[[], "GPU"]]


@pytest.mark.parametrize("split_args, split", [
    (["--limit-train", "1001"], "training"),
    (["--validation-size", "1001", "--limit-train", "2000"], "validation"),
])
def test_data_parallel_refuses_a_last_batch_that_does_not_split(tmp_path, split_args, split):
    result = run_cli("train", "--backend", "jax", "--model", "ffn", *QUICK_ARGS, "--data-parallel",
                     "--cpu-devices", "2", *split_args, "--out", str(tmp_path))
    assert result.returncode == 2
    assert f"the last {split} batch has 41 images" in error_line(result.stderr)
    assert not records_in(tmp_path)


def test_a_cpu_run_records_its_float32_policy_its_host_memory_and_no_gpu_memory(tmp_path):
    result = run_cli("train", "--backend", "jax", "--model", "ffn", *QUICK_ARGS, "--epochs", "1", "--tf32",
                     "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    (record,) = records_in(tmp_path)
    assert record["config"]["float32_matmul_precision"] == "tf32"
    assert "peak_device_memory_bytes" in record and record["peak_device_memory_bytes"] is None
    assert record["peak_host_memory_bytes"] > 100 * 2**20  # bytes: Python with JAX and Keras loaded takes more
