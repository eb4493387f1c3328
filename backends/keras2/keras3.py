"""Keras 2's ``hard_sigmoid`` as a Keras 3 activation: what a Keras 2 model needs to compute
the same in Keras 3 (``rnn-ref convert old.h5 new.keras``).

Keras 2 (tf-keras) computes ``hard_sigmoid(x) = clip(0.2 x + 0.5, 0, 1)``
(``tf_keras/src/backend.py`` 5926-5944: ``tf.multiply(x, 0.2)``, ``tf.add(., 0.5)``,
``tf.clip_by_value(., 0, 1)``); Keras 3 has the same name for ``relu6(x + 3) / 6`` (slope
1/6, keras-team/keras PR #19477) and no activation of Keras 2's shape (``sparse_sigmoid``
has slope 1/2; ``hard_tanh``, ``relu6`` and the others are no affine map of it). A Keras 2
LSTM rebuilt in Keras 3 by name computes another function (0.035 apart, ../shared/GATED.md).

So rnn-ref writes that activation into a Keras 3 model as a function of its own, registered
in Keras' serialization registry as ``"rnn_ref>keras2_hard_sigmoid"``
(:data:`rnn_ref.backends.keras.record.KERAS_REGISTERED`): the file records the registered
name, never code, and ``keras.saving.load_model`` (``safe_mode=True`` too) finds the
function in the process that imported this module; without it Keras refuses the file
("Could not locate function 'rnn_ref>keras2_hard_sigmoid'"), it never computes another
activation. The function computes Keras 2's operations in Keras 2's order
(``keras.ops.clip(x * 0.2 + 0.5, 0, 1)``), so on TensorFlow it is bit for bit tf-keras'.

Importing this module imports Keras 3 and registers the function; rnn-ref registers it
itself wherever it uses Keras 3 (:func:`rnn_ref.backends.keras.convert.keras_module`).
"""

from __future__ import annotations

from typing import Any

__all__ = ["KERAS2_HARD_SIGMOID", "keras2_hard_sigmoid", "register"]

#: the registered name (``package>name``) a Keras 3 config holds for Keras 2's hard_sigmoid
KERAS2_HARD_SIGMOID = "rnn_ref>keras2_hard_sigmoid"


def keras2_hard_sigmoid(x: Any) -> Any:
    """Keras 2's ``hard_sigmoid``, ``clip(0.2 x + 0.5, 0, 1)``, elementwise in Keras 3 ops
    (any shape; the dtype of ``x``)."""
    import keras

    return keras.ops.clip(x * 0.2 + 0.5, 0.0, 1.0)


# its __name__ is the registered name, which the readers of live Keras 3 layers look up
keras2_hard_sigmoid.__name__ = keras2_hard_sigmoid.__qualname__ = KERAS2_HARD_SIGMOID


def register(keras_module: Any = None) -> None:
    """Register :func:`keras2_hard_sigmoid` in Keras 3's serialization registry as
    :data:`KERAS2_HARD_SIGMOID` (again is harmless); ``keras_module``: Keras 3, imported
    here when not given."""
    if keras_module is None:
        import keras

        keras_module = keras
    saving = keras_module.saving
    if saving.get_registered_object(KERAS2_HARD_SIGMOID) is not keras2_hard_sigmoid:
        package, _, name = KERAS2_HARD_SIGMOID.partition(">")
        saving.register_keras_serializable(package=package, name=name)(keras2_hard_sigmoid)


register()
