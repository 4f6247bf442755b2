"""TensorFlow's start-up chatter kept off the terminal of ``xanesdb`` commands.

TensorFlow 2.16+ writes C++ log lines while it is imported (``WARNING: All log messages before
absl::InitializeLog() is called ...``, ``I0000 ... oneDNN custom operations are on ...``) before
``TF_CPP_MIN_LOG_LEVEL`` is read, so every command that loads a Keras model printed them. The CLI
installs :func:`quiet_tensorflow_import`: the first ``import tensorflow`` runs with the process's
standard error (file descriptor 2) sent to a temporary file, and everything written there except
those known lines is written back to standard error afterwards, so real warnings and import errors
still show. Library users (``import xanesdb``) are not affected.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import os
import sys
import tempfile
from contextlib import contextmanager

__all__ = ["quiet_tensorflow_import"]

#: start-up lines of TensorFlow dropped from standard error (substrings)
CHATTER = ("All log messages before absl::InitializeLog() is called", "oneDNN custom operations are on")


@contextmanager
def filtered_stderr(drop=CHATTER):
    """Run the block with file descriptor 2 captured; write back the lines not matching ``drop``."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            kept = [ln for ln in tmp.read().decode(errors="replace").splitlines() if not any(d in ln for d in drop)]
            if kept:
                sys.stderr.write("\n".join(kept) + "\n")
                sys.stderr.flush()


class _QuietTensorflow(importlib.abc.MetaPathFinder):
    """Meta-path finder that wraps the loading of the top-level ``tensorflow`` package once."""

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)  # once, and so that find_spec below finds the real package
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        exec_module = spec.loader.exec_module

        def quiet_exec(module):
            with filtered_stderr():
                exec_module(module)

        spec.loader.exec_module = quiet_exec
        return spec


def quiet_tensorflow_import() -> None:
    """Make the first ``import tensorflow`` of this process drop TensorFlow's start-up log lines."""
    if "tensorflow" not in sys.modules and not any(isinstance(f, _QuietTensorflow) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietTensorflow())
