"""Datasets from queries, Keras models, training, evaluation, the registry, prediction.

Importing this package chooses the Keras backend (``XANESDB_KERAS_BACKEND``, see
:func:`xanesdb.platform.settings.apply_keras_backend`) before any of its modules imports Keras.
"""

from xanesdb.platform.settings import apply_keras_backend as _apply_keras_backend

_apply_keras_backend()
