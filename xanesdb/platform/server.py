"""Lifecycle of xanesdb's own local MongoDB server (SecantusDB, run as a separate process).

SecantusDB is GPL-2.0, so it is never imported: it runs as its own process, started from its
console script (``secantusd-py``) found beside the running Python. Its files live under
``<XANESDB_HOME>/db``::

    db/data/          WiredTiger storage
    db/server.json    pid, host, port, start time of the running server
    db/server.lock    serialises starts between concurrent xanesdb processes
    db/server.log     server log
    db/secantusd.toml empty config, so no stray ./secantusd.toml is picked up
    db/admin_credential.json  the administrator's password (mode 0600; see below)

Authentication is on from the first start: the server runs with ``--auth`` (SCRAM-SHA-256),
and xanesdb logs in as ``xanesdb_root`` (role ``root``, authSource ``admin``) with a password
generated into ``db/admin_credential.json``, so other local users can reach the port but
neither log in nor read the files (folders 0700, files 0600). SecantusDB creates users only
while authentication is off, so a home without that file is secured first: a server without
``--auth`` on a free loopback port for about a second, used only to create (or reset) the
administrator, then stopped. A home made before authentication was on by default (data but no
credential file, perhaps a server still running open) is migrated the same way on first use,
with one WARNING line; users found in it are listed by ``xanesdb db users``.

The first command that needs the database starts the server (in its own session, so it
outlives that command); later commands find it through ``server.json`` and reuse it. A stale
``server.json`` (its pid is gone, or the pid answers no ping) is detected and replaced; a port
in use by another program is reported, or avoided when the port was chosen automatically.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import logging
import os
import secrets
import shutil
import signal
import stat
import socket
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import quote_plus

from xanesdb.platform.errors import DatabaseUnavailableError

logger = logging.getLogger(__name__)

__all__ = ["LocalServer", "ServerInfo", "find_free_port", "server_command", "is_loopback", "ADMIN_USER",
           "ADMIN_DB", "admin_credential_file", "read_admin_password"]

#: the local server's administrator (role ``root``), created at its first start
ADMIN_USER = "xanesdb_root"
#: the database the administrator is defined in (its authSource)
ADMIN_DB = "admin"
ADMIN_ROLES = [{"role": "root", "db": ADMIN_DB}]


def admin_credential_file(home: Path) -> Path:
    """Where the local server's administrator password is kept (mode 0600)."""
    return Path(home) / "db" / "admin_credential.json"


def read_admin_password(home: Path) -> str | None:
    """The administrator password of the local server under ``home``; None when the home has none yet.

    A file that others may read is refused (anyone who read it owns the database).
    """
    path = admin_credential_file(home)
    try:
        st = path.lstat()
    except FileNotFoundError:
        return None
    except OSError as err:
        raise DatabaseUnavailableError(f"cannot read the admin credential {path} ({err.strerror})") from None
    if not stat.S_ISREG(st.st_mode):
        raise DatabaseUnavailableError(f"the admin credential {path} is not a regular file; remove it and run again "
                                       "(the next command sets a new password)")
    if st.st_uid == os.getuid() and stat.S_IMODE(st.st_mode) & 0o077:
        raise DatabaseUnavailableError(
            f"the admin credential {path} is readable by others (mode {stat.S_IMODE(st.st_mode):o}); run "
            f"`chmod 600 {path}`, then `rm {path} && xanesdb db stop` so the next command sets a new password"
        )
    try:
        data = json.loads(path.read_text())
        password = data["password"]
        if not isinstance(password, str) or not password:
            raise ValueError
    except (OSError, ValueError, KeyError, TypeError):
        raise DatabaseUnavailableError(
            f"the admin credential {path} is unreadable or damaged; remove it and run `xanesdb db stop`: "
            "the next command sets a new password"
        ) from None
    return password


def _write_admin_credential(home: Path, password: str) -> None:
    """Write the credential file with mode 0600 from the start, atomically."""
    path = admin_credential_file(home)
    tmp = path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump({"user": ADMIN_USER, "authSource": ADMIN_DB, "password": password,
                   "note": "xanesdb's administrator of the local server; keep this file private (mode 0600)"}, fh)
    os.replace(tmp, path)


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def find_free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _port_in_use(host: str, port: int) -> bool:
    s = _open_connection(host, port)
    if s is None:
        return False
    s.close()
    return True


#: when ``LocalServer._kill`` first asks whether a server missed its stop signal (s after it)
FIRST_RESEND_S = 5.0
#: how long ``LocalServer._kill`` lets the server accept its watch connection before the signal (s)
WATCH_ACCEPT_S = 0.3


def _open_connection(host: str, port: int) -> socket.socket | None:
    """A TCP connection to ``port`` (None when nothing accepts one there)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(0.2)
    if s.connect_ex((host if host != "0.0.0.0" else "127.0.0.1", port)) != 0:
        s.close()
        return None
    return s


def _closed_by_peer(s: socket.socket) -> bool:
    """Whether the other end closed (or reset) connection ``s``: it reads as end of file at once."""
    import select

    readable, _, _ = select.select([s], [], [], 0)
    if not readable:
        return False
    try:
        return s.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


def _wait_port_free(host: str, port: int, timeout: float) -> bool:
    """Wait until nothing accepts connections on ``port`` (True), or ``timeout`` s pass (False)."""
    deadline = time.monotonic() + timeout
    while _port_in_use(host, port):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def _end_with_parent(parent: int) -> None:
    """In a foreground server's child, before it runs: ask Linux to send it SIGTERM when the
    ``xanesdb db serve`` that started it (pid ``parent``) dies, even of SIGKILL
    (``prctl(PR_SET_PDEATHSIG)``); a parent gone already ends the child at once. Elsewhere nothing:
    the signal handlers of :func:`_stop_on_termination_signals` still apply."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM), 0, 0, 0)  # 1: PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:
        os._exit(1)


def _stop_on_termination_signals():
    """Make SIGTERM and SIGHUP stop a foreground server as Ctrl-C does; returns what undoes it.

    Python dies of SIGTERM (``kill``, systemd, ``docker stop``) and SIGHUP (a closed terminal)
    without running ``finally`` blocks, which would leave the server child running with nobody to
    stop it. Signals that were ignored when the command started (``nohup``) stay ignored.
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def _interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = {}
    for sig in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) is not signal.SIG_IGN:
            previous[sig] = signal.signal(sig, _interrupt)

    def restore():
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    return restore


def _relay_stderr_once_listening(proc: subprocess.Popen, host: str, port: int, timeout: float = 60.0) -> list[str] | None:
    """Hold the server's stderr until it listens on ``port``, then relay it to ours as it comes.

    Returns None once the server listens (or ``timeout`` passes), or the lines it wrote when it
    ended before that (a port taken between xanesdb's check and the server's bind ends there, and
    the caller says so in one line instead of the server's traceback).
    """
    import threading

    held: list[str] = []
    listening = threading.Event()
    lock = threading.Lock()

    def pump() -> None:
        for line in proc.stderr:
            with lock:
                if listening.is_set():
                    sys.stderr.write(line)
                    sys.stderr.flush()
                else:
                    held.append(line)

    t = threading.Thread(target=pump, daemon=True)
    t.start()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            t.join(timeout=5)
            return held
        if _port_in_use(host, port):
            break
        time.sleep(0.1)
    with lock:
        sys.stderr.write("".join(held))
        sys.stderr.flush()
        listening.set()
    return None


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
    # so does another process's zombie (it has exited; only its parent has not reaped it yet)
    with contextlib.suppress(OSError, IndexError):
        stat_line = Path(f"/proc/{pid}/stat").read_text()
        if stat_line.rsplit(")", 1)[1].split()[0] in ("Z", "X"):
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
    #: the administrator password (from the credential file; never written to ``server.json``)
    password: str | None = field(default=None, repr=False, compare=False)

    def uri(self, host: str | None = None, credentials: bool = True) -> str:
        """The URI to connect with: as the administrator when the server requires authentication.

        Print it only through :func:`xanesdb.platform.stores.redact_uri`.
        """
        h = host or (self.host if self.host not in ("0.0.0.0", "::") else "127.0.0.1")
        if ":" in h and not h.startswith("["):
            h = f"[{h}]"
        if self.auth and self.password and credentials:
            return (f"mongodb://{ADMIN_USER}:{quote_plus(self.password)}@{h}:{self.port}/"
                    f"?directConnection=true&authSource={ADMIN_DB}")
        return f"mongodb://{h}:{self.port}/?directConnection=true"

    def record(self) -> dict:
        """What ``server.json`` holds: everything but the password."""
        return {k: v for k, v in asdict(self).items() if k != "password"}


class LocalServer:
    """The local SecantusDB server whose files are under ``home/db``."""

    def __init__(
        self, home: Path, host: str = "127.0.0.1", port: int = 0, timeout_s: float = 30.0, auth: bool = True
    ):
        self.home = Path(home)
        self.dir = self.home / "db"
        self.host = host
        self.port = port
        self.timeout_s = timeout_s
        #: require SCRAM-SHA-256 authentication (the default; False only for `db serve --insecure`)
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

    def read_info(self, password: bool = True) -> ServerInfo | None:
        """The recorded server (with the administrator password when it requires authentication and
        ``password`` is true), or None when there is no readable record."""
        try:
            data = json.loads(self.info_file.read_text())
            data.pop("password", None)
            info = ServerInfo(**data)
        except (OSError, ValueError, TypeError):
            return None
        if info.auth and password:
            info.password = read_admin_password(self.home)
        return info

    def _write_info(self, info: ServerInfo) -> None:
        tmp = self.info_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(info.record()))
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
    def _usable(self, info: ServerInfo) -> bool:
        """Whether a running server can be reused as it is: one with authentication whose password
        this home holds, or one running open on purpose (`db serve --insecure`, or ``auth=False``)."""
        if info.auth:
            return info.password is not None
        return info.foreground or not self.auth

    def ensure_running(self) -> ServerInfo:
        """Reuse the running server or start one (securing the home first); returns its info."""
        state, info = self.status()
        if state == "running" and self._usable(info):
            return info
        with self._lock():
            state, info = self.status()  # another process may have started it meanwhile
            if state == "running":
                if self._usable(info):
                    return info
                if info.foreground:
                    raise DatabaseUnavailableError(
                        f"the `xanesdb db serve` server of {self.home} (pid {info.pid}) requires authentication "
                        f"but {admin_credential_file(self.home)} is missing; stop it (Ctrl-C) and start it again"
                    )
                # an open server started before authentication was on by default: restarted secured
                logger.info("restarting the local database server pid %s with authentication", info.pid)
                self._kill(info.pid, listening=(info.host, info.port))
                self.info_file.unlink(missing_ok=True)
                state = "stale-open"
            if state == "stale":
                logger.warning(
                    "local database server record %s is stale (pid %s not answering); restarting",
                    self.info_file,
                    info.pid,
                )
                self._kill(info.pid)
                self.info_file.unlink(missing_ok=True)
            port = self.port or (info.port if info and not _port_in_use(self.host, info.port) else 0)
            if self.auth:
                self._secure()
            return self._start(port)

    # authentication
    def _has_data(self) -> bool:
        try:
            return any(self.data_dir.iterdir())
        except OSError:
            return False

    def _secure(self) -> None:
        """Give a home without an admin credential its administrator (caller holds the lock).

        SecantusDB creates users only while authentication is off: a server without ``--auth``
        runs for about a second on a free loopback port (not the configured one), the administrator
        is created (or, in a home that has one but lost the file, given a new password), the server
        is stopped, and the credential is written. A home with data (made before authentication was
        on by default) is reported once, with the users it already holds.
        """
        if read_admin_password(self.home) is not None:
            return
        existing = self._has_data()
        password = secrets.token_urlsafe(32)
        port = find_free_port("127.0.0.1")
        proc = self._spawn("127.0.0.1", port, auth=False)
        others: list[str] = []
        try:
            self._wait_until_up(proc, "127.0.0.1", port)
            import pymongo

            client = pymongo.MongoClient(f"mongodb://127.0.0.1:{port}/?directConnection=true",
                                         serverSelectionTimeoutMS=int(self.timeout_s * 1000))
            try:
                admin = client[ADMIN_DB]
                verb = "updateUser" if admin.command("usersInfo", ADMIN_USER).get("users") else "createUser"
                admin.command(verb, ADMIN_USER, pwd=password, roles=ADMIN_ROLES, mechanisms=["SCRAM-SHA-256"])
                others = sorted(f"{u.get('user')}@{u.get('db')}" for u in admin["system.users"].find({}, {"credentials": 0})
                                if (u.get("user"), u.get("db")) != (ADMIN_USER, ADMIN_DB))
            finally:
                client.close()
        except Exception as err:  # noqa: BLE001 - any failure leaves the home as it was, reported in one line
            if isinstance(err, DatabaseUnavailableError):
                raise
            raise DatabaseUnavailableError(
                f"could not create the local database's administrator ({type(err).__name__}: {str(err)[:200]}); "
                f"see {self.log_file}"
            ) from None
        finally:
            self._kill(proc.pid, listening=("127.0.0.1", port))
        _write_admin_credential(self.home, password)
        if existing:
            logger.warning(
                "the local database under %s was open to every local user (made before authentication was on by "
                "default); it now requires authentication, xanesdb logs in with %s%s",
                self.dir, admin_credential_file(self.home),
                f"; it already holds {len(others)} other user(s) ({', '.join(others[:5])}): check them with "
                "`xanesdb db users --check`" if others else "",
            )
        elif others:  # created in the second the bootstrap server was open
            logger.warning("users appeared in the new local database while it was being secured (%s): check them "
                           "with `xanesdb db users --check`", ", ".join(others[:5]))
        else:
            logger.info("local database under %s secured: administrator credential in %s", self.dir,
                        admin_credential_file(self.home))

    def _spawn(self, host: str, port: int, auth: bool, log=None) -> subprocess.Popen:
        """Start the server process (in its own session, umask 077); its output goes to the log."""
        cmd = server_command() + [
            "--config", str(self.dir / "secantusd.toml"),
            "--host", host,
            "--port", str(port),
            "--storage-path", str(self.data_dir),
            "--log-level", "WARNING",
            "--sync-on-commit",  # acknowledged writes survive a SIGKILL of the server
        ] + (["--auth"] if auth else [])  # fmt: skip
        fh = open(self.log_file, "ab")
        os.chmod(self.log_file, 0o600)
        try:
            return subprocess.Popen(
                cmd,
                stdout=fh,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # outlives the command that started it
                cwd=self.dir,
                umask=0o077,  # the files it creates are this user's only
            )
        finally:
            fh.close()

    def _wait_until_up(self, proc: subprocess.Popen, host: str, port: int) -> None:
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise DatabaseUnavailableError(
                    f"the local database server exited at start (code {proc.returncode}): "
                    f"{self._log_tail()}; see {self.log_file}"
                )
            if _ping(host, port, timeout_s=0.5):
                return
            time.sleep(0.1)
        self._kill(proc.pid)
        raise DatabaseUnavailableError(
            f"the local database server did not answer within {self.timeout_s:.0f} s; "
            f"see {self.log_file}"
        )

    def _start(self, port: int, foreground: bool = False) -> ServerInfo:
        if port and _port_in_use(self.host, port):
            if self.port:  # the user chose this port
                raise DatabaseUnavailableError(
                    f"port {port} on {self.host} is already in use by another program; "
                    "choose another with XANESDB_DB_PORT (or --port), or stop that program"
                )
            port = 0
        port = port or find_free_port(self.host)
        proc = self._spawn(self.host, port, auth=self.auth)
        self._wait_until_up(proc, self.host, port)
        info = ServerInfo(pid=proc.pid, host=self.host, port=port, started=time.time(), auth=self.auth,
                          password=read_admin_password(self.home) if self.auth else None)
        self._write_info(info)
        logger.info("started local database server pid %d on %s:%d", proc.pid, self.host, port)
        return info

    def _log_tail(self) -> str:
        try:
            lines = [ln for ln in self.log_file.read_text(errors="replace").splitlines() if ln.strip()]
            return lines[-1][:300] if lines else "no log output"
        except OSError:
            return "no log output"

    @staticmethod
    def _kill(pid: int, grace_s: float = 10.0, listening: tuple[str, int] | None = None,
              sig: int = signal.SIGTERM) -> None:
        """Stop server ``pid`` with ``sig`` (SecantusDB stops alike on SIGTERM and SIGINT), and
        SIGKILL it if it still runs after ``grace_s`` seconds.

        SecantusDB stops in a Python signal handler of its main thread, and CPython runs such a
        handler only once that thread wakes. A signal that lands just before the thread blocks in
        its final wait (a server stopped right after it started) is taken and never acted on. So a
        connection to ``listening`` (host, port) is opened before the signal: a server that stops
        closes every client connection (2 s after the signal: it first waits that long for its
        accept thread), one that missed the signal keeps it open; only when it still holds that
        connection 5 s after the signal, and still listens, is the signal sent again, then every
        2 s. The port alone does not tell: a stopping server's listening socket outlives its close
        while its accept thread is blocked, and a second signal landing in its interpreter's
        shutdown prints a traceback.
        """
        if not _pid_alive(pid):
            return
        watch = _open_connection(*listening) if listening is not None else None
        if watch is not None:
            time.sleep(WATCH_ACCEPT_S)  # the server's accept thread takes it in before the signal
        try:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            now = time.monotonic()
            deadline, resend = now + grace_s, now + FIRST_RESEND_S
            while time.monotonic() < deadline and _pid_alive(pid):
                time.sleep(0.05)
                if watch is not None and time.monotonic() > resend:
                    resend = time.monotonic() + 2.0
                    if _closed_by_peer(watch):
                        watch.close()
                        watch = None  # the server is stopping: it closed our connection
                    elif _port_in_use(*listening):
                        logger.debug("server pid %s kept its connections and still listens on port %s; "
                                     "sending signal %s again", pid, listening[1], sig)  # fmt: skip
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(pid, sig)
        finally:
            if watch is not None:
                watch.close()
        if _pid_alive(pid):
            logger.warning("the database server pid %s did not stop within %.0f s; killed", pid, grace_s)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def stop(self) -> bool:
        """Stop the recorded server; True if one was running."""
        with self._lock():
            info = self.read_info(password=False)  # stopping needs no login (nor a readable credential)
            if info is None:
                return False
            was_alive = _pid_alive(info.pid)
            self._kill(info.pid, listening=(info.host, info.port))
            self.info_file.unlink(missing_ok=True)
            return was_alive

    def serve_foreground(self, host: str, port: int, on_listening=None) -> int:
        """Run the server in the foreground (``xanesdb db serve``) until interrupted.

        A background server of this home (started by an earlier command) is stopped first: later
        commands use the foreground one through ``server.json``. Another ``db serve`` is refused.
        ``on_listening`` is called once the server accepts connections.
        """
        with self._lock():
            state, info = self.status()
            if state == "running" and info.foreground:
                raise DatabaseUnavailableError(
                    f"`xanesdb db serve` already runs for {self.home} (pid {info.pid}, "
                    f"port {info.port}); stop it first (Ctrl-C, or `xanesdb db stop`)"
                )
            if state == "running":
                logger.info("stopping the background server pid %s: the foreground one replaces it", info.pid)
                self._kill(info.pid, listening=(info.host, info.port))
                if info.port == port:  # its listening socket can outlive its pid by a moment
                    _wait_port_free(host, port, timeout=10.0)
            if state in ("running", "stale"):
                self.info_file.unlink(missing_ok=True)
            if _port_in_use(host, port):
                raise DatabaseUnavailableError(
                    f"port {port} on {host} is already in use; choose another with --port"
                )
            if self.auth:
                self._secure()
            cmd = server_command() + [
                "--config", str(self.dir / "secantusd.toml"),
                "--host", host,
                "--port", str(port),
                "--storage-path", str(self.data_dir),
                "--log-level", "WARNING",
                "--sync-on-commit",
            ] + (["--auth"] if self.auth else [])  # fmt: skip
            proc = subprocess.Popen(cmd, cwd=self.dir, umask=0o077, stderr=subprocess.PIPE, text=True, bufsize=1,
                                    preexec_fn=functools.partial(_end_with_parent, os.getpid()))  # fmt: skip
            self._write_info(
                ServerInfo(pid=proc.pid, host=host, port=port, started=time.time(), foreground=True,
                           auth=self.auth)
            )
        restore = _stop_on_termination_signals()
        try:
            early = _relay_stderr_once_listening(proc, host, port)
            if early is not None:  # the server ended before it listened
                self.info_file.unlink(missing_ok=True)
                if any("Address already in use" in ln or "Errno 98" in ln for ln in early):
                    raise DatabaseUnavailableError(
                        f"port {port} on {host} was taken by another program while the server started; "
                        "choose another with --port"
                    )
                sys.stderr.write("".join(early))
                return proc.returncode
            if on_listening is not None:
                on_listening()
            return proc.wait()
        except KeyboardInterrupt:
            self._kill(proc.pid, grace_s=30.0, listening=(host, port), sig=signal.SIGINT)
            return proc.wait()
        finally:
            restore()
            with contextlib.suppress(OSError):
                info = self.read_info(password=False)
                if info and info.pid == proc.pid:
                    self.info_file.unlink()
