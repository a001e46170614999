"""What differs between the frameworks, said in one place per framework:

    base.py        the `Framework` base class: what the child needs to know of a framework
    tensorflow.py  TensorFlow
    torch.py       PyTorch
    jax.py         JAX

`for_backend` finds a Keras backend's framework. Each imports its framework inside its methods, so importing this
package imports none: `Framework.load` does, in `child.backend.pin`, once the environment is pinned. What a child's
environment says per backend (read as each framework starts) is `kerasmnist/pinning.py`'s, and what a
configuration allows per backend `config.py`'s.
"""

from __future__ import annotations

from kerasmnist.child.frameworks.base import Framework
from kerasmnist.child.frameworks.jax import Jax
from kerasmnist.child.frameworks.tensorflow import TensorFlow
from kerasmnist.child.frameworks.torch import Torch

__all__ = ["Framework", "for_backend"]

_FRAMEWORKS: dict[str, Framework] = {framework.name: framework for framework in (TensorFlow(), Torch(), Jax())}


def for_backend(name: str) -> Framework:
    """The framework behind Keras backend `name` ("tensorflow", "torch" or "jax")."""
    return _FRAMEWORKS[name]
