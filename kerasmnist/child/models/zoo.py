"""The zoo: one MNIST model per layer family where the backends' kernels differ (batch normalisation,
recurrence, attention), each a pure function of the data's input shape (H, W, C) and class count
returning an uncompiled keras.Model with a float32 softmax output.

Sized so that an epoch costs a few times the seed CNN's on a CPU while reaching, on full MNIST in 5
epochs with the defaults (Adam 1e-3, batch 128): resnet >= 99.0%, lstm >= 98.0%, vit >= 96.0%.
Import this module only after `backend.pin`: importing Keras fixes the backend.
"""

from __future__ import annotations

import keras

from kerasmnist.child.models.builtin import output_layer


def build_resnet(input_shape: tuple[int, ...], num_classes: int) -> keras.Model:
    """A small residual convnet with batch normalisation (about 150k parameters on MNIST).

    A 3x3 stem at full resolution, then pooled to half, then three residual blocks of 16, 32 and 64
    channels (the last two halving the resolution), global average pooling and the output.
    """
    images = keras.Input(shape=input_shape)
    x = _conv_bn(images, 16, strides=1)
    x = keras.layers.MaxPooling2D(2)(x)
    for filters, strides in ((16, 1), (32, 2), (64, 2), (64, 1)):
        x = _residual_block(x, filters, strides)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(images, output_layer(num_classes)(x), name="resnet")


def _conv_bn(x, filters: int, strides: int, relu: bool = True):
    # No bias: the batch normalisation that follows has its own shift.
    x = keras.layers.Conv2D(filters, 3, strides=strides, padding="same", use_bias=False)(x)
    x = _batch_norm(x)
    return keras.layers.ReLU()(x) if relu else x


def _batch_norm(x):
    # Momentum 0.5 rather than Keras's 0.99: the moving statistics that evaluation uses then follow
    # the weights within a few steps, so a short run (tens of steps on the test fixture) evaluates
    # as it trains; with 0.99 (or 0.9) its test accuracy stays near chance. One batch's statistics
    # already average thousands of values per channel, so the short memory costs nothing.
    return keras.layers.BatchNormalization(momentum=0.5)(x)


def _residual_block(x, filters: int, strides: int):
    """Two 3x3 conv-BN layers around an identity shortcut, or a strided 1x1 projection where the
    block changes the resolution or the width."""
    shortcut = x
    if strides != 1 or x.shape[-1] != filters:
        shortcut = keras.layers.Conv2D(filters, 1, strides=strides, use_bias=False)(x)
        shortcut = _batch_norm(shortcut)
    x = _conv_bn(x, filters, strides)
    x = _conv_bn(x, filters, 1, relu=False)
    return keras.layers.ReLU()(keras.layers.Add()([x, shortcut]))


LSTM_UNITS = 128


def build_lstm(input_shape: tuple[int, ...], num_classes: int, unroll: bool = False) -> keras.Model:
    """The image's rows as a sequence (H steps of W*C features) into one LSTM layer, then the output.

    The LSTM keeps the settings under which Keras 3.15 hands the loop to the cuDNN kernel on a GPU:
    use_cudnn="auto", tanh activation, sigmoid recurrent activation, no recurrent dropout,
    unroll=False, use_bias=True and no mask. Where that is decided (keras/src/...):
      layers/rnn/lstm.py:533-534  LSTM.inner_loop tries `backend.lstm` only when use_cudnn is "auto"
          or True and recurrent_dropout is 0; on NotImplementedError (569-570) it runs the generic
          loop. Lines 517-527: under TensorFlow, a cuDNN-eligible layer turns XLA off for the model;
      backend/tensorflow/rnn.py:523-538  _do_lstm_arguments_support_cudnn (tanh, sigmoid, not
          unroll, use_bias); cudnn_ok at 795-817 adds "a GPU is visible"; lstm at 835-839 raises
          NotImplementedError otherwise;
      backend/torch/rnn.py:522-538  cudnn_ok (the same four settings, CUDA and cuDNN available);
          lstm refuses a mask at 558 and at 584-599 takes cuDNN only for CUDA inputs outside
          torch.compile and tracing, else its fallback loop;
      backend/jax/rnn.py:220-235  cudnn_ok (the same settings, a GPU backend); lstm at 254-263
          refuses a mask and otherwise uses jax.experimental.rnn's cuDNN LSTM.
    `unroll=True` gives the same network with its loop unrolled (and so never cuDNN): XLA's cost
    analysis counts a loop's body once, so the FLOP-count test compares against it.
    """
    rows, columns, channels = input_shape
    images = keras.Input(shape=input_shape)
    x = keras.layers.Reshape((rows, columns * channels))(images)
    x = keras.layers.LSTM(LSTM_UNITS, unroll=unroll)(x)
    return keras.Model(images, output_layer(num_classes)(x), name="lstm")


def build_vit(input_shape: tuple[int, ...], num_classes: int, patch_size: int = 4, width: int = 64,
              heads: int = 4, blocks: int = 2) -> keras.Model:
    """A small vision transformer: non-overlapping patches embedded by a Conv2D whose stride is the
    patch size, a learned position embedding added to each patch, `blocks` pre-norm encoder blocks
    (LayerNormalization, MultiHeadAttention, LayerNormalization, a GELU MLP of twice the width, each
    around a residual), a final LayerNormalization, average pooling over patches and the output.
    """
    images = keras.Input(shape=input_shape)
    x = keras.layers.Conv2D(width, patch_size, strides=patch_size, name="patch_embedding")(images)
    x = keras.layers.Reshape((-1, width))(x)
    x = PositionEmbedding(name="position_embedding")(x)
    for _ in range(blocks):
        x = _encoder_block(x, width, heads)
    x = keras.layers.LayerNormalization()(x)
    x = keras.layers.GlobalAveragePooling1D()(x)
    return keras.Model(images, output_layer(num_classes)(x), name="vit")


def _encoder_block(x, width: int, heads: int):
    attended = keras.layers.LayerNormalization()(x)
    attended = keras.layers.MultiHeadAttention(heads, key_dim=width // heads)(attended, attended)
    x = keras.layers.Add()([x, attended])
    mlp = keras.layers.LayerNormalization()(x)
    mlp = keras.layers.Dense(2 * width, activation="gelu")(mlp)
    mlp = keras.layers.Dense(width)(mlp)
    return keras.layers.Add()([x, mlp])


@keras.saving.register_keras_serializable(package="kerasmnist")
class PositionEmbedding(keras.layers.Layer):
    """Adds a learned vector to each position of a (batch, positions, width) sequence."""

    def build(self, input_shape):
        self.embedding = self.add_weight(shape=tuple(input_shape[1:]), initializer="random_normal",
                                         name="embedding")

    def call(self, inputs):
        return inputs + self.embedding


BUILDERS = {"resnet": build_resnet, "lstm": build_lstm, "vit": build_vit}
