"""Keras 3 on TensorFlow, on a CPU: model.fit(x, y) pauses before the first step of some epochs (fit drops the
epoch's tf.data iterator and makes a new one); fit on a repeated tf.data pipeline with steps_per_epoch keeps one
iterator for the whole fit (keras/src/trainers/epoch_iterator.py, _enumerate_iterator) and does not pause, but
in some processes fit then takes seconds to return, as it drops that one iterator.
Both see each of the 10,000 images once per epoch, in batches of 128 (the last one 16), reshuffled every epoch.

    python reproduce_epoch_pause.py [--pairs 3] [--mnist mnist.npz]   # keras>=3, tensorflow; ~1 min a pair

Each pipeline trains the keras-io MNIST convnet in a fresh process, the two alternating; each prints its epochs."""
import argparse, subprocess, sys, time

EPOCHS, BATCH, IMAGES = 10, 128, 10_000
PIPELINES = ("fit(x, y)", "repeated tf.data")


def train(pipeline: str, mnist: str | None) -> None:
    import os
    os.environ["KERAS_BACKEND"] = "tensorflow"
    import keras, numpy as np, tensorflow as tf
    x, y = (np.load(mnist)[key] for key in ("x_train", "y_train")) if mnist else keras.datasets.mnist.load_data()[0]
    x, y = (x[:IMAGES, ..., None] / 255).astype("float32"), y[:IMAGES]
    keras.utils.set_random_seed(1)
    layers = keras.layers
    model = keras.Sequential([keras.Input((28, 28, 1)), layers.Conv2D(32, 3, activation="relu"), layers.MaxPooling2D(),
                              layers.Conv2D(64, 3, activation="relu"), layers.MaxPooling2D(), layers.Flatten(),
                              layers.Dropout(0.5), layers.Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    seconds = []

    class Clock(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            seconds.append(time.perf_counter() - self.started)

        def on_train_end(self, logs=None):
            self.ended = time.perf_counter()

    clock = Clock()
    if pipeline == PIPELINES[0]:
        model.fit(x, y, batch_size=BATCH, epochs=EPOCHS, shuffle=True, callbacks=[clock], verbose=0)
    else:
        data = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(IMAGES).batch(BATCH).repeat().prefetch(tf.data.AUTOTUNE)
        model.fit(data, steps_per_epoch=-(-IMAGES // BATCH), epochs=EPOCHS, callbacks=[clock], verbose=0)
    returned = time.perf_counter() - clock.ended  # fit's return: where it drops the last iterator
    steady = sorted(seconds[1:])
    print(f"{pipeline:>16}: epochs {' '.join(f'{s:.2f}' for s in seconds)} s | steady median {steady[len(steady) // 2]:.2f}"
          f" s, slowest {steady[-1]:.2f} s, epochs {sum(seconds):.1f} s, then {returned:.1f} s until fit returned",
          flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=3, help="how many pairs of runs (default 3)")
    parser.add_argument("--mnist", help="an mnist.npz (x_train, y_train) instead of keras.datasets' download")
    parser.add_argument("--pipeline", choices=PIPELINES, help=argparse.SUPPRESS)  # one run, in the child process
    arguments = parser.parse_args()
    if arguments.pipeline:
        train(arguments.pipeline, arguments.mnist)
    else:
        print(f"Keras on TensorFlow, CPU: {EPOCHS} epochs of {IMAGES} MNIST images, batch {BATCH}; the first compiles")
        for pair in range(arguments.pairs):
            for pipeline in PIPELINES if pair % 2 == 0 else PIPELINES[::-1]:  # the order alternates, pair by pair
                subprocess.run([sys.executable, __file__, "--pipeline", pipeline, *sys.argv[1:]], check=True,
                               stderr=subprocess.DEVNULL)
