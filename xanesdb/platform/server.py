"""Lifecycle of xanesdb's own local MongoDB server (SecantusDB, run as a separate process).

SecantusDB is GPL-2.0, so it is never imported: it runs as its own process, started from its
console script (``secantusd-py``) found beside the running Python. Its files live under
``<XANESDB_HOME>/db``::

    db/data/          WiredTiger storage
    db/server.json    pid, host, port, start time of the running server
    db/server.lock    serialises starts between concurrent xanesdb processes
    db/server.log     server log
    db/secantusd.toml empty config, so no stray ./secantusd.toml is picked up

The first command that needs the database starts the server (in its own session, so it
outlives that command); later commands find it through ``server.json`` and reuse it. A stale
``server.json`` (its pid is gone, or the pid answers no ping) is detected and replaced; a port
in use by another program is reported, or avoided when the port was chosen automatically.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import signal
import stat
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from xanesdb.platform.errors import DatabaseUnavailableError

logger = logging.getLogger(__name__)

__all__ = ["LocalServer", "ServerInfo", "find_free_port", "server_command"]


def find_free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex((host if host != "0.0.0.0" else "127.0.0.1", port)) == 0


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child of ours counts as dead
    with contextlib.suppress(ChildProcessError, OSError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    return True


def _ping(host: str, port: int, timeout_s: float = 1.0) -> bool:
    import pymongo

    client = pymongo.MongoClient(
        host=host if host != "0.0.0.0" else "127.0.0.1",
        port=port,
        directConnection=True,
        serverSelectionTimeoutMS=int(timeout_s * 1000),
        connectTimeoutMS=int(timeout_s * 1000),
    )
    try:
        client.admin.command("ping")
        return True
    except Exception:  # noqa: BLE001 - any failure means "not answering"
        return False
    finally:
        client.close()


def _make_private(root: Path) -> None:
    """chmod ``root`` and everything under it (that this user owns) to 0700 folders, 0600 files."""
    uid = os.getuid()
    for path in (root, *root.rglob("*")):
        try:
            st = path.lstat()
        except OSError:
            continue
        if st.st_uid != uid or stat.S_ISLNK(st.st_mode):
            continue
        wanted = 0o700 if stat.S_ISDIR(st.st_mode) else 0o600
        if stat.S_IMODE(st.st_mode) & 0o077:
            os.chmod(path, stat.S_IMODE(st.st_mode) & ~0o077 | (wanted & 0o700))


def server_command() -> list[str]:
    """The command that runs SecantusDB as a separate process."""
    script = Path(sys.executable).parent / "secantusd-py"
    if script.exists():
        return [str(script)]
    found = shutil.which("secantusd-py")
    if found:
        return [found]
    # same interpreter, still a separate process
    return [sys.executable, "-c", "import sys; from secantus.cli import main; sys.exit(main())"]


@dataclass
class ServerInfo:
    """What ``server.json`` records about a running local server."""

    pid: int
    host: str
    port: int
    started: float
    foreground: bool = False
    auth: bool = False

    def uri(self, host: str | None = None) -> str:
        h = host or (self.host if self.host != "0.0.0.0" else "127.0.0.1")
        return f"mongodb://{h}:{self.port}/?directConnection=true"


class LocalServer:
    """The local SecantusDB server whose files are under ``home/db``."""

    def __init__(
        self, home: Path, host: str = "127.0.0.1", port: int = 0, timeout_s: float = 30.0, auth: bool = False
    ):
        self.home = Path(home)
        self.dir = self.home / "db"
        self.host = host
        self.port = port
        self.timeout_s = timeout_s
        #: require SCRAM-SHA-256 authentication (``--auth``); provision users first without it
        self.auth = auth

    # files
    @property
    def info_file(self) -> Path:
        return self.dir / "server.json"

    @property
    def log_file(self) -> Path:
        return self.dir / "server.log"

    @property
    def data_dir(self) -> Path:
        return self.dir / "data"

    def _prepare_dirs(self) -> None:
        """Create the server's folders private to this user: folders 0700, files 0600.

        Existing folders and files (a home made before this rule, with 0755/0644) are tightened
        at every start, so other local users cannot read the data files or the SCRAM user store.
        """
        try:
            self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            (self.dir / "secantusd.toml").touch(exist_ok=True, mode=0o600)
            _make_private(self.dir)
        except OSError as err:
            raise DatabaseUnavailableError(
                f"cannot create the local database folder {self.dir} ({err.strerror}); "
                "set XANESDB_HOME to a writable folder or XANESDB_DB_URI to a MongoDB server"
            ) from err

    @contextlib.contextmanager
    def _lock(self):
        self._prepare_dirs()
        with os.fdopen(os.open(self.dir / "server.lock", os.O_RDWR | os.O_CREAT, 0o600), "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def read_info(self) -> ServerInfo | None:
        """The recorded server, or None when there is no readable record."""
        try:
            return ServerInfo(**json.loads(self.info_file.read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def _write_info(self, info: ServerInfo) -> None:
        tmp = self.info_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(info.__dict__))
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.info_file)

    def status(self) -> tuple[str, ServerInfo | None]:
        """('running' | 'stopped' | 'stale', info)."""
        info = self.read_info()
        if info is None:
            return "stopped", None
        if _pid_alive(info.pid) and _ping(info.host, info.port):
            return "running", info
        return "stale", info

    # lifecycle
    def ensure_running(self) -> ServerInfo:
        """Reuse the running server or start one; returns its info."""
        state, info = self.status()
        if state == "running":
            return info
        with self._lock():
            state, info = self.status()  # another process may have started it meanwhile
            if state == "running":
                return info
            if state == "stale":
                logger.warning(
                    "local database server record %s is stale (pid %s not answering); restarting",
                    self.info_file,
                    info.pid,
                )
                self._kill(info.pid)
                self.info_file.unlink(missing_ok=True)
            port = self.port or (info.port if info and not _port_in_use(self.host, info.port) else 0)
            return self._start(port)

    def _start(self, port: int, foreground: bool = False) -> ServerInfo:
        if port and _port_in_use(self.host, port):
            if self.port:  # the user chose this port
                raise DatabaseUnavailableError(
                    f"port {port} on {self.host} is already in use by another program; "
                    "choose another with XANESDB_DB_PORT (or --port), or stop that program"
                )
            port = 0
        port = port or find_free_port(self.host)
        cmd = server_command() + [
            "--config", str(self.dir / "secantusd.toml"),
            "--host", self.host,
            "--port", str(port),
            "--storage-path", str(self.data_dir),
            "--log-level", "WARNING",
            "--sync-on-commit",  # acknowledged writes survive a SIGKILL of the server
        ] + (["--auth"] if self.auth else [])  # fmt: skip
        log = open(self.log_file, "ab")
        os.chmod(self.log_file, 0o600)
        proc = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # outlives the command that started it
            cwd=self.dir,
            umask=0o077,  # the files it creates are this user's only
        )
        log.close()
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise DatabaseUnavailableError(
                    f"the local database server exited at start (code {proc.returncode}): "
                    f"{self._log_tail()}; see {self.log_file}"
                )
            if _ping(self.host, port, timeout_s=0.5):
                info = ServerInfo(pid=proc.pid, host=self.host, port=port, started=time.time(), auth=self.auth)
                self._write_info(info)
                logger.info("started local database server pid %d on %s:%d", proc.pid, self.host, port)
                return info
            time.sleep(0.1)
        self._kill(proc.pid)
        raise DatabaseUnavailableError(
            f"the local database server did not answer within {self.timeout_s:.0f} s; "
            f"see {self.log_file}"
        )

    def _log_tail(self) -> str:
        try:
            lines = [ln for ln in self.log_file.read_text(errors="replace").splitlines() if ln.strip()]
            return lines[-1][:300] if lines else "no log output"
        except OSError:
            return "no log output"

    @staticmethod
    def _kill(pid: int, grace_s: float = 10.0) -> None:
        if not _pid_alive(pid):
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and _pid_alive(pid):
            time.sleep(0.05)
        if _pid_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def stop(self) -> bool:
        """Stop the recorded server; True if one was running."""
        with self._lock():
            info = self.read_info()
            if info is None:
                return False
            was_alive = _pid_alive(info.pid)
            self._kill(info.pid)
            self.info_file.unlink(missing_ok=True)
            return was_alive

    def serve_foreground(self, host: str, port: int) -> int:
        """Run the server in the foreground (``xanesdb db serve``) until interrupted."""
        with self._lock():
            state, info = self.status()
            if state == "running":
                raise DatabaseUnavailableError(
                    f"a local server for {self.home} is already running (pid {info.pid}, "
                    f"port {info.port}); stop it with `xanesdb db stop` first"
                )
            if state == "stale":
                self.info_file.unlink(missing_ok=True)
            if _port_in_use(host, port):
                raise DatabaseUnavailableError(
                    f"port {port} on {host} is already in use; choose another with --port"
                )
            cmd = server_command() + [
                "--config", str(self.dir / "secantusd.toml"),
                "--host", host,
                "--port", str(port),
                "--storage-path", str(self.data_dir),
                "--log-level", "WARNING",
                "--sync-on-commit",
            ] + (["--auth"] if self.auth else [])  # fmt: skip
            proc = subprocess.Popen(cmd, cwd=self.dir, umask=0o077)
            self._write_info(
                ServerInfo(pid=proc.pid, host=host, port=port, started=time.time(), foreground=True,
                           auth=self.auth)
            )
        try:
            return proc.wait()
        except KeyboardInterrupt:
            proc.send_signal(signal.SIGINT)
            return proc.wait()
        finally:
            with contextlib.suppress(OSError):
                info = self.read_info()
                if info and info.pid == proc.pid:
                    self.info_file.unlink()
