"""Does an XLA flag change JAX's optimised program for the Keras CNN's train step? Prints the flags, a hash
of the compiled program's text and its length; run it once per flag (XLA reads XLA_FLAGS at start-up), from the
checkout with kerasmnist installed:

    for f in "" --xla_cpu_use_onednn=true --xla_cpu_use_xnnpack=true; do
        XLA_FLAGS="$f" python reports/xla-cpu/compiled_program.py; done

Flags that act in code generation or the runtime (vector width, thunk runtime, Eigen threads) leave the
text alike by design; a flag that rewrites the program (oneDNN or XNNPACK calls, other fusions) changes it.
"""

import argparse
import hashlib
import os

from kerasmnist.child import backend
from kerasmnist.config import RunConfig

argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args()  # no options: --help only

backend.pin("jax", "cpu")

import jax  # noqa: E402  (after pinning)
import jax.numpy as jnp  # noqa: E402

from kerasmnist.child import models  # noqa: E402  (imports Keras)

model, _ = models.build(RunConfig(backend="jax", model="cnn"), (28, 28, 1), 10)
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"], jit_compile=True)
x, y = jnp.zeros((128, 28, 28, 1)), jnp.zeros((128,), jnp.int32)
model.fit(x, y, batch_size=128, epochs=1, verbose=0)  # builds the optimizer's and the metrics' variables
state = jax.tree.map(lambda variable: variable.value, (model.trainable_variables, model.non_trainable_variables,
                                                       model.optimizer.variables, model.metrics_variables))
text = jax.jit(model.train_step).lower(state, (x, y)).compile().as_text()
print(os.environ.get("XLA_FLAGS") or "no XLA flags", hashlib.sha256(text.encode()).hexdigest()[:12], len(text))
