"""The trainers, one per way of training, all run by one skeleton:

    base.py               the Trainer protocol and `train_and_evaluate`: the clocks, the checks, the TrainingResult,
                          and PhaseFailed: the phase a run broke in
    keras.py              Keras's model.fit, under any backend
    native.py             what the native loops share: the epoch loop, the initial weights, Adam's settings
    native_torch.py       the native loop under PyTorch
    native_jax.py         the native loop under JAX
    native_tensorflow.py  the native loop under TensorFlow

Import only after `backend.pin`: the skeleton imports Keras, and `pick` imports the trainer it picks.
"""

from __future__ import annotations

from functools import partial

from kerasmnist.child.trainers.base import PhaseFailed, TrainerType, train_and_evaluate
from kerasmnist.config import RunConfig

__all__ = ["PhaseFailed", "pick", "train_and_evaluate"]


def pick(config: RunConfig) -> TrainerType:
    """The trainer for `config`: Keras's (--implementation keras), or its backend's native loop."""
    if config.implementation == "keras":
        from kerasmnist.child.trainers.keras import KerasTrainer

        return KerasTrainer
    from kerasmnist.child.trainers.native import NativeTrainer

    if config.backend == "torch":
        from kerasmnist.child.trainers.native_torch import TorchLoop as loop
    elif config.backend == "jax":
        from kerasmnist.child.trainers.native_jax import JaxLoop as loop
    else:
        from kerasmnist.child.trainers.native_tensorflow import TensorFlowLoop as loop
    return partial(NativeTrainer, loop)
