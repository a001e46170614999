from kerasmnist import backend
from kerasmnist.errors import BackendUnavailable

import pytest


def test_cpu_pinning_hides_gpus_from_every_framework():
    for name in ("tensorflow", "torch", "jax"):
        env = backend.pinning_environment(name, "cpu")
        assert env["KERAS_BACKEND"] == name
        assert env["CUDA_VISIBLE_DEVICES"] == ""
    assert backend.pinning_environment("jax", "cpu")["JAX_PLATFORMS"] == "cpu"
    assert backend.pinning_environment("torch", "cpu")["KERAS_TORCH_DEVICE"] == "cpu"


def test_gpu_pinning_asks_for_the_gpu_and_keeps_the_users_gpu_choice():
    assert backend.pinning_environment("jax", "gpu")["JAX_PLATFORMS"] == "cuda"
    assert backend.pinning_environment("torch", "gpu")["KERAS_TORCH_DEVICE"] == "cuda"
    assert "CUDA_VISIBLE_DEVICES" not in backend.pinning_environment("tensorflow", "gpu")


def test_unpinned_environment_drops_only_pinning_variables():
    env = {"KERAS_BACKEND": "jax", "CUDA_VISIBLE_DEVICES": "", "JAX_PLATFORMS": "cpu", "HOME": "/root"}
    assert backend.unpinned_environment(env) == {"HOME": "/root"}


def test_a_second_backend_in_one_process_is_refused(keras_jax):
    with pytest.raises(BackendUnavailable, match="already imported with backend jax"):
        backend.pin("torch", "cpu")


def test_weights_are_really_on_the_cpu(keras_jax):
    from kerasmnist import models

    pinned = backend.pin("jax", "cpu")
    model = models.build_cnn()
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


def test_cpu_threads_bind_the_process_and_set_the_frameworks_thread_count():
    import subprocess
    import sys

    probe = ("import os, torch; from kerasmnist import backend; backend.pin('torch', 'cpu', cpu_threads=1); "
             "print(len(os.sched_getaffinity(0)), torch.get_num_threads())")
    child = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                           env=backend.unpinned_environment(), timeout=300)
    assert child.stdout.split() == ["1", "1"], child.stderr


def test_more_cpu_threads_than_cores_is_refused():
    import os

    with pytest.raises(BackendUnavailable, match=f"more cores than this process may use \\({len(os.sched_getaffinity(0))}\\)"):
        backend.pin("jax", "cpu", cpu_threads=10_000)
