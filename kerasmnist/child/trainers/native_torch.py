"""The native loop under PyTorch: torch.nn.Sequential, F.cross_entropy on logits, Adam by Keras's rule in torch's
foreach ops, torch.compile when jit_compile (native.py says what every native loop shares). Import only after
`backend.pin`."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from kerasmnist.child.backend import Pinned
from kerasmnist.child.data import Splits
from kerasmnist.child.trainers.native import BETA_1, BETA_2, DROPOUT, EPSILON, initial_weights, split_arrays
from kerasmnist.config import RunConfig


def keras_adam_step(params: list[torch.Tensor], grads: list[torch.Tensor], m: list[torch.Tensor], v: list[torch.Tensor],
                    step: int, learning_rate: float) -> None:
    """One Adam update of torch tensors, in place, by Keras's rule rather than torch.optim.Adam's.

    Keras 3.15.1, keras/src/optimizers/adam.py, Adam.update_step (lines 117-137, each
    statement joined onto one line):
        117  alpha = lr * ops.sqrt(1 - beta_2_power) / (1 - beta_1_power)
        119  self.assign_add(m, ops.multiply(ops.subtract(gradient, m), 1 - self.beta_1))
        122  self.assign_add(v, ops.multiply(ops.subtract(ops.square(gradient), v), 1 - self.beta_2))
        132  self.assign_sub(variable, ops.divide(ops.multiply(m, alpha), ops.add(ops.sqrt(v), self.epsilon)))
    with beta_k_power = beta_k ** (iterations + 1) (lines 106-112). torch.optim.Adam instead divides by
    sqrt(v / (1 - beta_2 ** t)) + eps, i.e. adds eps to the bias-corrected sqrt(v_hat): the two differ
    wherever sqrt(v) is not far above eps, i.e. for gradients of about 1e-6 and below.
    `step` counts from 1, as Keras's iterations + 1.
    """
    alpha = learning_rate * math.sqrt(1 - BETA_2 ** step) / (1 - BETA_1 ** step)
    with torch.no_grad():
        torch._foreach_lerp_(m, grads, 1 - BETA_1)  # lerp with a weight below 0.5 is m + (g - m) * weight
        torch._foreach_lerp_(v, torch._foreach_mul(grads, grads), 1 - BETA_2)
        denominators = torch._foreach_sqrt(v)
        torch._foreach_add_(denominators, EPSILON)
        torch._foreach_addcdiv_(params, m, denominators, value=-alpha)


class TorchLoop:
    """torch.nn.Sequential, F.cross_entropy on logits, Keras's Adam rule; torch.compile when jit_compile."""

    def __init__(self, config: RunConfig, splits: Splits, pinned: Pinned, jit_compile: bool):
        self.config = config
        self.device = torch.device("cuda" if pinned.device == "gpu" else "cpu")
        torch.manual_seed(config.seed)  # dropout masks
        if config.model == "cnn":
            layers = [nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
                      nn.Flatten(), nn.Dropout(DROPOUT), nn.Linear(5 * 5 * 64, 10)]
        else:
            sizes = [28 * 28, *config.hidden]
            layers = [nn.Flatten()]
            for n_in, n_out in zip(sizes, sizes[1:]):
                layers += [nn.Linear(n_in, n_out), nn.ReLU()]
            layers.append(nn.Linear(sizes[-1], 10))
        self.model = nn.Sequential(*layers)
        weighted = [layer for layer in layers if isinstance(layer, (nn.Conv2d, nn.Linear))]
        with torch.no_grad():
            for layer, (kernel, bias) in zip(weighted, initial_weights(config)):
                # Keras layout to torch's: HWIO -> OIHW, (in, out) -> (out, in)
                layer.weight.copy_(torch.from_numpy(kernel.transpose(3, 2, 0, 1) if kernel.ndim == 4 else kernel.T))
                layer.bias.copy_(torch.from_numpy(bias))
        self.model.to(self.device)
        self.jit_compile = jit_compile
        self.forward = torch.compile(self.model) if jit_compile else self.model
        self.params = list(self.model.parameters())
        self.m, self.v = ([torch.zeros_like(p) for p in self.params] for _ in range(2))
        self.step = 0
        self.on_device = config.input_pipeline == "device"
        # NHWC -> NCHW once, on the host: torch's own layout, whichever side the batches are gathered on
        arrays = {name: (np.ascontiguousarray(x.transpose(0, 3, 1, 2)), y) for name, (x, y) in split_arrays(splits).items()}
        self.data = {name: (self._to_device(x), self._to_device(y)) for name, (x, y) in arrays.items()} \
            if self.on_device else arrays

    def _to_device(self, array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(array).to(self.device)

    def _batch(self, split: str, index: torch.Tensor | np.ndarray | slice) -> tuple[torch.Tensor, torch.Tensor]:
        """The rows `index` of a split: gathered on the device, or on the host and then copied (as Keras
        does with NumPy input)."""
        x, y = self.data[split]
        return (x[index], y[index]) if self.on_device else (self._to_device(x[index]), self._to_device(y[index]))

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.params)

    def variables(self) -> list[torch.Tensor]:
        return [*self.params, *self.m, *self.v]

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def size(self, split: str) -> int:
        return len(self.data[split][1])

    def start_epoch(self, order: np.ndarray) -> None:
        self.order = self._to_device(order) if self.on_device else order
        self.loss_sum = torch.zeros((), device=self.device)
        self.correct = torch.zeros((), dtype=torch.int64, device=self.device)

    def train_step(self, start: int, end: int) -> None:
        x, y = self._batch("train", self.order[start:end])
        self.model.train()
        for p in self.params:
            p.grad = None
        logits = self.forward(x)
        loss = torch.nn.functional.cross_entropy(logits, y)
        loss.backward()
        self.step += 1
        keras_adam_step(self.params, [p.grad for p in self.params], self.m, self.v, self.step, self.config.learning_rate)
        self.loss_sum += loss.detach() * len(y)
        self.correct += (logits.argmax(1) == y).sum()

    def epoch_sums(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.loss_sum, self.correct

    def evaluate_step(self, split: str, start: int, end: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self._batch(split, slice(start, end))
        self.model.eval()
        with torch.no_grad():
            logits = self.forward(x)
            return torch.nn.functional.cross_entropy(logits, y, reduction="sum"), (logits.argmax(1) == y).sum()
