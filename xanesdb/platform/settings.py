"""xanesdb settings: defaults, environment variables (``XANESDB_*``) and an optional YAML file.

Like jobflow's and atomate2's ``settings.py``: one pydantic-settings class whose fields are
UPPER_CASE and described; values come, in increasing priority, from the defaults, the YAML
file (``~/.xanesdb.yaml`` or ``XANESDB_CONFIG_FILE``) and ``XANESDB_*`` environment variables.

The Materials Project API key is never a setting: it is read from ``MP_API_KEY`` at the moment
it is needed (see :func:`mp_api_key`), so it is never stored, printed or logged.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from xanesdb.platform.errors import XanesdbUserError

DEFAULT_CONFIG_FILE = "~/.xanesdb.yaml"

__all__ = ["XanesdbSettings", "SETTINGS", "SettingsError", "get_settings", "mp_api_key", "apply_keras_backend",
           "missing_backend_error", "FEFF_PRESET_NAMES"]

#: the FEFF presets a setting may name (those of ``xanesdb.jobs.feff.sets.PRESETS``, which
#: tests/test_feff.py keeps equal; written out here so that reading settings imports no FEFF code)
FeffPresetName = Literal["mp", "fast", "scf", "scflite", "scfwide", "scfrpa"]
FEFF_PRESET_NAMES: tuple[str, ...] = get_args(FeffPresetName)


class XanesdbSettings(BaseSettings):
    """Settings of xanesdb; every field may be set as ``XANESDB_<FIELD>``."""

    HOME: Path = Field(
        Path("~/.xanesdb"),
        description="Folder for the local database server's data, pid/port files, caches and plots.",
    )
    DB_URI: SecretStr | None = Field(
        None,
        description=(
            "MongoDB URI (mongodb:// or mongodb+srv://). When unset, xanesdb starts and uses its "
            "own local server (SecantusDB) with data under HOME."
        ),
    )
    DB_NAME: str = Field("xanesdb", description="Database name inside the MongoDB server.")
    DB_HOST: str = Field("127.0.0.1", description="Address the local server binds to.")
    DB_PORT: int = Field(
        0, description="Port of the local server; 0 picks a free port on first start."
    )
    DB_TIMEOUT_S: float = Field(
        10.0, gt=0, description="Seconds to wait for the database before giving up with an error."
    )
    DB_RETRIES: int = Field(
        3,
        description=(
            "Further attempts, with exponential backoff, when the database does not answer at "
            "connection; DB_TIMEOUT_S is shared between the attempts."
        ),
    )
    FEFF_CMD: str | None = Field(
        None,
        description=(
            "External FEFF command run in the job directory (e.g. 'feff' or a FEFF9 binary). "
            "When unset, FEFF10 from the feff10-rs package runs in a worker process."
        ),
    )
    FEFF_PRESET: FeffPresetName = Field("fast", description="Default FEFF preset.")
    FEFF_TIMEOUT_S: float = Field(
        1800.0, description="Wall-time limit of one FEFF run, in seconds."
    )
    FEFF_HANDLE_UNSUCCESSFUL: bool | Literal["error"] = Field(
        False,
        description="Policy for failed FEFF runs: True stop children, False carry on, 'error' raise.",
    )
    WORKERS: int = Field(
        0, description="Worker processes for FEFF and labelling; 0 means one per CPU core."
    )
    SYMPREC: float = Field(0.1, description="Symmetry precision for site equivalence (Angstrom).")
    CHEMENV_TIMEOUT_S: float = Field(
        300.0, description="Time limit for labelling one structure, in seconds."
    )
    KERAS_BACKEND: Literal["tensorflow", "jax", "torch"] | None = Field(
        None,
        description=(
            "Keras backend for training and prediction (jax or torch on a GPU: see the README's "
            "'Training on a GPU'). Applied when xanesdb.ml is first imported, before Keras; a "
            "KERAS_BACKEND environment variable set by the user wins. Unset: Keras's own choice "
            "(~/.keras/keras.json, else tensorflow)."
        ),
    )
    CONFIG_FILE: str = Field(
        DEFAULT_CONFIG_FILE, description="YAML file with settings (overridden by env vars)."
    )

    model_config = SettingsConfigDict(env_prefix="xanesdb_", extra="ignore")

    @model_validator(mode="before")
    @classmethod
    def _load_yaml(cls, values: dict[str, Any]) -> dict[str, Any]:
        """Merge the YAML config file under the explicitly given values."""
        config_file = values.get(
            "CONFIG_FILE", os.environ.get("XANESDB_CONFIG_FILE", DEFAULT_CONFIG_FILE)
        )
        path = Path(config_file).expanduser()
        if path.is_file():
            import yaml

            try:
                data = yaml.safe_load(path.read_text()) or {}
            except yaml.YAMLError as err:
                raise ValueError(f"config file {path} is not valid YAML: {err}") from err
            if not isinstance(data, dict):
                raise ValueError(f"config file {path} must hold a mapping of settings")
            data = {k.upper(): v for k, v in data.items()}
            if "DB_URI" in data and path.stat().st_mode & 0o077:
                raise ValueError(
                    f"config file {path} holds a database URI but is readable by others; "
                    f"run `chmod 600 {path}`"
                )
            values = {**data, **values}
        return values

    @field_validator("HOME", mode="after")
    @classmethod
    def _expand_home(cls, v: Path) -> Path:
        return Path(v).expanduser().resolve()

    @field_validator("DB_URI", mode="after")
    @classmethod
    def _check_uri(cls, v: SecretStr | None) -> SecretStr | None:
        if v is None or not v.get_secret_value().strip():
            return None
        if not v.get_secret_value().startswith(("mongodb://", "mongodb+srv://")):
            raise ValueError("XANESDB_DB_URI must start with mongodb:// or mongodb+srv://")
        return v

    @property
    def n_workers(self) -> int:
        """Worker count with 0 resolved to the number of CPU cores."""
        return self.WORKERS if self.WORKERS > 0 else max(1, os.cpu_count() or 1)


class SettingsError(XanesdbUserError, ValueError):
    """Invalid settings (environment or config file); one line, never the values themselves."""


def _settings_error(err: ValidationError) -> SettingsError:
    """The first problem, without pydantic's echo of the input (which may hold a password)."""
    first = err.errors(include_input=False, include_url=False)[0]
    msg = str(first.get("msg", "invalid settings")).removeprefix("Value error, ")
    loc = ".".join(str(p) for p in first.get("loc", ()))
    return SettingsError(f"invalid setting {loc}: {msg}" if loc else f"invalid settings: {msg}")


def get_settings(**overrides: Any) -> XanesdbSettings:
    """Fresh settings read from the environment now (tests and the CLI use this).

    Raises :class:`SettingsError` (a one-line user error and a ``ValueError``) when the
    environment or the config file is invalid.
    """
    try:
        return XanesdbSettings(**overrides)
    except ValidationError as err:
        raise _settings_error(err) from None


try:
    SETTINGS = XanesdbSettings()
except ValidationError:  # reported, one line, by get_settings() where it is used (e.g. the CLI)
    SETTINGS = XanesdbSettings.model_construct()


def mp_api_key() -> str | None:
    """The Materials Project API key from ``MP_API_KEY``; never stored or logged."""
    key = os.environ.get("MP_API_KEY", "").strip()
    return key or None


#: Keras backend -> (module it imports, how to install it: the extra that brings it)
KERAS_BACKENDS = {
    "tensorflow": ("tensorflow", "pip install xanesdb (tensorflow-cpu is a core dependency)"),
    "jax": ("jax", "pip install 'xanesdb[jax]' (CPU) or 'xanesdb[gpu]' (CUDA 12)"),
    "torch": ("torch", "pip install 'xanesdb[torch]'"),
}


def missing_backend_error(backend: str) -> XanesdbUserError:
    """The one-line error for a Keras backend whose package is not installed."""
    module, extra = KERAS_BACKENDS[backend]
    return XanesdbUserError(f"the Keras backend {backend!r} needs the {module} package, which is not installed; "
                            f"{extra}, or choose another backend with XANESDB_KERAS_BACKEND")


def apply_keras_backend(settings: XanesdbSettings | None = None) -> str | None:
    """Set ``KERAS_BACKEND`` from ``XANESDB_KERAS_BACKEND`` before Keras is imported; returns the backend.

    A ``KERAS_BACKEND`` the user set wins over the setting. A backend named either way (a
    setting or the variable) whose package is missing raises :class:`XanesdbUserError` naming the
    extra to install. Once Keras is imported its backend is fixed: a different setting is then
    reported as a warning and changes nothing.
    """
    import importlib.util
    import sys
    import warnings

    wanted = (settings or get_settings()).KERAS_BACKEND
    if not os.environ.get("KERAS_BACKEND") and wanted:
        os.environ["KERAS_BACKEND"] = wanted
    backend = os.environ.get("KERAS_BACKEND") or None
    if "keras" in sys.modules:
        try:
            current = sys.modules["keras"].backend.backend()
        except AttributeError:  # keras half-imported
            return backend
        if wanted and current != wanted:
            warnings.warn(f"XANESDB_KERAS_BACKEND={wanted} has no effect: Keras was imported before xanesdb.ml "
                          f"with the {current} backend; set it before importing keras", stacklevel=3)
        return current
    if backend in KERAS_BACKENDS:
        try:
            found = importlib.util.find_spec(KERAS_BACKENDS[backend][0]) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            raise missing_backend_error(backend)
    return backend
