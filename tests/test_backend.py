import sys
from types import SimpleNamespace

import pytest

from kerasmnist import pinning
from kerasmnist.child import backend
from kerasmnist.child.frameworks import for_backend
from kerasmnist.errors import BackendUnavailable


def test_cpu_pinning_hides_gpus_from_every_framework():
    for name in ("tensorflow", "torch", "jax"):
        env = pinning.pinning_environment(name, "cpu")
        assert env["KERAS_BACKEND"] == name
        assert env["CUDA_VISIBLE_DEVICES"] == ""
    assert pinning.pinning_environment("jax", "cpu")["JAX_PLATFORMS"] == "cpu"
    assert pinning.pinning_environment("torch", "cpu")["KERAS_TORCH_DEVICE"] == "cpu"


def test_gpu_pinning_asks_for_the_gpu_and_uses_one_of_the_users_gpus():
    assert pinning.pinning_environment("jax", "gpu", environ={})["JAX_PLATFORMS"] == "cuda"
    assert pinning.pinning_environment("torch", "gpu", environ={})["KERAS_TORCH_DEVICE"] == "cuda"
    assert pinning.pinning_environment("tensorflow", "gpu", environ={})["CUDA_VISIBLE_DEVICES"] == "0"
    users = {"CUDA_VISIBLE_DEVICES": "2,3"}
    assert pinning.pinning_environment("torch", "gpu", environ=users)["CUDA_VISIBLE_DEVICES"] == "2"
    # Data-parallel runs get every GPU the user allowed, and the user's choice is left as it is.
    assert "CUDA_VISIBLE_DEVICES" not in pinning.pinning_environment("jax", "gpu", data_parallel=True, environ=users)
    assert pinning.pinning_environment("jax", "gpu", environ={"CUDA_VISIBLE_DEVICES": ""})["CUDA_VISIBLE_DEVICES"] == ""


def test_gpu_memory_is_shared_unless_the_user_says_otherwise():
    env = pinning.pinning_environment("jax", "gpu", environ={})
    assert env["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false" and env["TF_FORCE_GPU_ALLOW_GROWTH"] == "true"
    users = {"XLA_PYTHON_CLIENT_PREALLOCATE": "true", "TF_FORCE_GPU_ALLOW_GROWTH": "false"}
    env = pinning.pinning_environment("tensorflow", "gpu", environ=users)
    assert env["XLA_PYTHON_CLIENT_PREALLOCATE"] == "true" and env["TF_FORCE_GPU_ALLOW_GROWTH"] == "false"


def test_cpu_devices_add_to_the_users_xla_flags():
    env = pinning.pinning_environment("jax", "cpu", cpu_devices=2,
                                      environ={"XLA_FLAGS": "--xla_cpu_enable_fast_math=false"})
    assert env["XLA_FLAGS"] == "--xla_cpu_enable_fast_math=false --xla_force_host_platform_device_count=2"



def test_a_runs_xla_flags_join_the_users_and_replace_a_flag_of_the_same_name():
    users = {"XLA_FLAGS": "--xla_cpu_enable_fast_math=false --xla_cpu_use_thunk_runtime=true"}
    env = pinning.pinning_environment("jax", "cpu", xla_flags="--xla_cpu_use_thunk_runtime=false", environ=users)
    assert env["XLA_FLAGS"] == "--xla_cpu_enable_fast_math=false --xla_cpu_use_thunk_runtime=false"
    env = pinning.pinning_environment("tensorflow", "gpu", xla_flags="--xla_gpu_autotune_level=0", environ={})
    assert env["XLA_FLAGS"] == "--xla_gpu_autotune_level=0"
    assert "XLA_FLAGS" not in pinning.pinning_environment("jax", "cpu", environ=users)  # left as the user set it


@pytest.mark.slow
def test_a_second_backend_in_one_process_is_refused(keras_jax):
    with pytest.raises(BackendUnavailable, match="already imported with backend jax"):
        backend.pin("torch", "cpu")


@pytest.mark.slow
def test_weights_are_really_on_the_cpu(keras_jax):
    from kerasmnist.child.models import builtin

    pinned = backend.pin("jax", "cpu")
    model = builtin.build_cnn()
    assert backend.resolved_device(pinned, model.weights) == "cpu"


def test_weights_on_another_device_fail_the_check():
    class FakeTensor:
        def __init__(self, device):
            self.device = type("Device", (), {"type": device, "index": 0})()

    class FakeVariable:
        def __init__(self, device):
            self.value = FakeTensor(device)

    pinned = backend.Pinned("torch", "cpu", "2.13.0", (), 1)
    with pytest.raises(RuntimeError, match="placed variables on cpu, gpu:0 although the run was pinned to cpu"):
        backend.resolved_device(pinned, [FakeVariable("cpu"), FakeVariable("cuda")])
    gpu = backend.Pinned("torch", "gpu", "2.13.0", ("Tesla T4",), 1)
    assert backend.resolved_device(gpu, [FakeVariable("cuda")]) == "gpu:0 Tesla T4"


@pytest.mark.slow
def test_cpu_threads_bind_the_process_and_set_the_frameworks_thread_count():
    import subprocess
    import sys

    probe = ("import os, torch; from kerasmnist.child import backend; backend.pin('torch', 'cpu', cpu_threads=1); "
             "print(len(os.sched_getaffinity(0)), torch.get_num_threads())")
    child = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                           env=pinning.child_environment(), timeout=300)
    assert child.stdout.split() == ["1", "1"], child.stderr


def test_more_cpu_threads_than_cores_is_refused():
    import os

    with pytest.raises(BackendUnavailable, match=f"more cores than this process may use \\({len(os.sched_getaffinity(0))}\\)"):
        backend.pin("jax", "cpu", cpu_threads=10_000)


def test_peak_gpu_memory_reads_each_frameworks_counter(monkeypatch):
    torch = SimpleNamespace(cuda=SimpleNamespace(device_count=lambda: 2, max_memory_allocated=lambda i: [5, 9][i]))
    jax = SimpleNamespace(devices=lambda: [SimpleNamespace(memory_stats=lambda: {"peak_bytes_in_use": 7})])
    gpus = [object()]
    tensorflow = SimpleNamespace(config=SimpleNamespace(
        list_logical_devices=lambda kind: gpus,
        experimental=SimpleNamespace(get_memory_info=lambda name: {"GPU:0": {"current": 1, "peak": 11}}[name])))
    for name, module in (("torch", torch), ("jax", jax), ("tensorflow", tensorflow)):
        monkeypatch.setitem(sys.modules, name, module)
    assert [for_backend(name).peak_memory_bytes("gpu") for name in ("torch", "jax", "tensorflow")] == [9, 7, 11]
    assert for_backend("torch").peak_memory_bytes("cpu") is None
