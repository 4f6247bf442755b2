"""Running FEFF: FEFF10 from the ``feff10`` package in its own process, or an external command.

Like atomate2's ``vasp/run.py``: one module, called through its module attribute
(``run.run_feff``) so tests can swap in the fake of :mod:`xanesdb.testing.feff`.

Every run lives in its own process group with a wall-time limit: a crash, a hang or a
segfault in FEFF kills only that process (and FEFF10's own per-stage worker processes), never
the caller. No ``shell=True``; the return code counts.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

logger = logging.getLogger(__name__)

__all__ = ["FeffRunResult", "FeffKillSwitch", "run_feff", "run_feff10", "run_feff_command", "feff10_version",
           "FeffInterrupted", "STAGE_TIMES_FILE"]


class FeffInterrupted(RuntimeError):
    """The caller is stopping (Ctrl-C, SIGTERM): FEFF was killed or not started."""


class FeffKillSwitch:
    """The FEFF processes of one executor (a pool, a batch run), so that executor can stop them all.

    An executor makes one, hands it to every run (``run_feff(..., kill_switch=switch)``) and calls
    :meth:`kill` when it stops (Ctrl-C, SIGTERM, a fatal error): the running FEFF processes are
    killed and no new one starts on this switch. Runs on other switches, or on none, are untouched,
    so two executors in one process never stop each other and nothing needs resetting.

    Examples
    --------
    >>> switch = FeffKillSwitch()
    >>> switch.stopped, switch.kill()
    (False, 0)
    >>> switch.stopped
    True
    """

    def __init__(self) -> None:
        self._running: set[subprocess.Popen] = set()
        self._stop = threading.Event()
        self._lock = threading.Lock()

    @property
    def stopped(self) -> bool:
        """:meth:`kill` was called: no new FEFF run starts on this switch."""
        return self._stop.is_set()

    @property
    def n_running(self) -> int:
        """FEFF processes running on this switch now."""
        with self._lock:
            return len(self._running)

    def kill(self) -> int:
        """Kill every FEFF process running on this switch and start no more; returns how many were killed."""
        self._stop.set()
        with self._lock:
            procs = list(self._running)
        for proc in procs:
            _kill_group(proc, quiet=True)
        return len(procs)

    def _add(self, proc: subprocess.Popen) -> None:
        with self._lock:
            self._running.add(proc)
        if self._stop.is_set():  # kill() came between the check and the start
            _kill_group(proc, quiet=True)

    def _discard(self, proc: subprocess.Popen) -> None:
        with self._lock:
            self._running.discard(proc)

#: file the FEFF10 worker writes its per-stage wall times to (JSON)
STAGE_TIMES_FILE = "feff_stage_times.json"


@dataclass
class FeffRunResult:
    """What one FEFF run did.

    Parameters
    ----------
    ok
        The process exited with code 0 within the time limit.
    code
        'feff10-rs' or the external command's first word.
    code_version
        feff10-rs version, or None for an external command.
    returncode
        Exit status (negative: killed by that signal; None: timed out).
    wall_seconds
        Wall time of the whole run, process start included.
    stage_seconds
        Wall time per FEFF stage (FEFF10 only).
    error
        Why it failed, in a line.
    """

    ok: bool
    code: str
    code_version: str | None = None
    returncode: int | None = None
    wall_seconds: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    log_tail: str = ""


def feff10_version() -> str | None:
    """Installed feff10-rs version (None if the package is missing)."""
    try:
        from importlib.metadata import version

        return version("feff10-rs")
    except Exception:  # noqa: BLE001 - missing package
        return None


def _run_group(cmd: list[str], cwd: Path, timeout: float | None, env: dict | None = None,
               kill_switch: FeffKillSwitch | None = None) -> tuple[int | None, str, float]:
    """Run ``cmd`` in its own session; kill the whole group past ``timeout`` (or when ``kill_switch`` fires)."""
    if kill_switch is not None and kill_switch.stopped:
        raise FeffInterrupted("stopping: no new FEFF run is started")
    t0 = time.perf_counter()
    with open(cwd / "feff_run.log", "w") as log:
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                env=env, preexec_fn=_die_with_parent)
        if kill_switch is not None:
            kill_switch._add(proc)
        try:
            rc: int | None = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            rc = None
        except BaseException:
            _kill_group(proc)
            raise
        finally:
            if proc.poll() is None:
                _kill_group(proc)
            else:
                # FEFF10's stage workers belong to the group too; leave none behind
                _kill_group(proc, quiet=True)
            if kill_switch is not None:
                kill_switch._discard(proc)
    if kill_switch is not None and kill_switch.stopped:
        raise FeffInterrupted("stopping: FEFF was killed")
    wall = time.perf_counter() - t0
    try:
        tail = (cwd / "feff_run.log").read_text(errors="replace")[-2000:]
    except OSError:
        tail = ""
    return rc, tail, wall


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL it when the caller dies (Linux), so no FEFF outlives a killed run."""
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except OSError:
            pass


def _kill_group(proc: subprocess.Popen, quiet: bool = False) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        if not quiet:
            logger.debug("process group %s already gone", proc.pid)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:  # pragma: no cover - a zombie that ignores SIGKILL
        logger.warning("FEFF process %s did not exit after SIGKILL", proc.pid)


def failure_reason(log_tail: str) -> str:
    r"""FEFF's own reason for a failed run, from the end of its log.

    FEFF prints its fatal errors (``:WARNING   Fatal error in subroutine corval. Try to reduce ca1
    in the SCF card.``) before the Python traceback of the worker and the boilerplate of
    ``.feff.error``, so the last line of the log says nothing; the last FEFF error line is taken,
    else the failed stage, else the last line.

    >>> failure_reason("Calculating SCF\n:WARNING   Fatal error in subroutine corval. Try again.\nCORVAL-1\n"
    ...                "_feff10.FeffPipelineError: stage 'pot' failed (exit code: 1)\n sful termination.")
    'Fatal error in subroutine corval. Try again.'
    >>> failure_reason("Traceback\n_feff10.FeffPipelineError: stage 'pot' failed (exit code: 1): worker exited")
    "stage 'pot' failed (exit code: 1): worker exited"
    """
    lines = [ln.strip() for ln in log_tail.splitlines() if ln.strip()]
    for ln in reversed(lines):
        low = ln.lower()
        if "fatal error" in low or low.startswith(("error", ":error")):
            return ln.lstrip(":").removeprefix("WARNING").strip()
    for ln in reversed(lines):
        if "PipelineError:" in ln:
            return ln.split("PipelineError:", 1)[1].strip()
    return lines[-1] if lines else ""


def run_feff10(workdir: str | Path = ".", timeout: float | None = None, stages: Sequence[str] | None = None,
               kill_switch: FeffKillSwitch | None = None) -> FeffRunResult:
    """Run FEFF10 (feff10-rs) on ``workdir/feff.inp`` in a separate worker process.

    Parameters
    ----------
    workdir
        Folder holding ``feff.inp``; outputs (``xmu.dat`` ...) are written there.
    timeout
        Wall-time limit in seconds; past it the worker and its children are killed.
    stages
        FEFF10 stage names to run (default :data:`xanesdb.jobs.feff.sets.XANES_STAGES`).
    kill_switch
        The executor's :class:`FeffKillSwitch` (None: only the time limit stops the run).
    """
    if not stages:
        from xanesdb.jobs.feff.sets import XANES_STAGES  # pymatgen: only when the caller gave no stages

        stages = XANES_STAGES
    workdir = Path(workdir).resolve()
    stages = list(stages)
    (workdir / STAGE_TIMES_FILE).unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "xanesdb.jobs.feff.run", str(workdir), ",".join(stages)]
    rc, tail, wall = _run_group(cmd, workdir, timeout, kill_switch=kill_switch)
    stage_seconds: dict[str, float] = {}
    try:
        stage_seconds = json.loads((workdir / STAGE_TIMES_FILE).read_text())
    except (OSError, ValueError):
        pass
    result = FeffRunResult(ok=rc == 0, code="feff10-rs", code_version=feff10_version(), returncode=rc,
                           wall_seconds=wall, stage_seconds=stage_seconds, log_tail=tail)
    if rc is None:
        result.error = f"timeout: FEFF10 ran past {timeout:g} s and was killed"
    elif rc != 0:
        result.error = f"FEFF10 exited with code {rc}: {failure_reason(tail)[:200]}"
    return result


def run_feff_command(feff_cmd: str, workdir: str | Path = ".", timeout: float | None = None,
                     kill_switch: FeffKillSwitch | None = None) -> FeffRunResult:
    """Run an external FEFF executable (e.g. a FEFF9 binary) in ``workdir``; no shell."""
    workdir = Path(workdir).resolve()
    argv = shlex.split(feff_cmd)
    if not argv:
        raise ValueError("empty FEFF command")
    try:
        rc, tail, wall = _run_group(argv, workdir, timeout, kill_switch=kill_switch)
    except FileNotFoundError as err:
        return FeffRunResult(ok=False, code=Path(argv[0]).name, error=f"FEFF command not found: {argv[0]} ({err})")
    result = FeffRunResult(ok=rc == 0, code=Path(argv[0]).name, returncode=rc, wall_seconds=wall, log_tail=tail)
    if rc is None:
        result.error = f"timeout: {argv[0]} ran past {timeout:g} s and was killed"
    elif rc != 0:
        result.error = f"{argv[0]} exited with code {rc}"
    return result


def run_feff(workdir: str | Path = ".", feff_cmd: str | None = None, timeout: float | None = None,
             stages: Sequence[str] | None = None, name: str | None = None,
             kill_switch: FeffKillSwitch | None = None) -> FeffRunResult:
    """Run FEFF in ``workdir``: the external ``feff_cmd`` if given, else FEFF10 in a worker process.

    ``name`` labels the run (job name); the fake FEFF of the tests uses it to pick a reference.
    ``kill_switch`` is the calling executor's :class:`FeffKillSwitch` (its Ctrl-C stops this run).
    """
    if feff_cmd:
        return run_feff_command(feff_cmd, workdir, timeout, kill_switch=kill_switch)
    return run_feff10(workdir, timeout, stages, kill_switch=kill_switch)


def _worker_main(workdir: str, stage_names: str) -> int:
    """Body of the FEFF10 worker process: run the stages, write their wall times."""
    import feff10

    wd = Path(workdir)
    stages = [feff10.Stage.from_name(n) for n in stage_names.split(",") if n]
    inp = feff10.FeffInput.from_file(str(wd / "feff.inp"))
    config = feff10.FeffConfig(str(wd), inp, stages=stages)
    times: dict[str, float] = {}

    def progress(stage, prog) -> None:
        if prog.kind == "finished" and prog.duration_secs is not None:
            times[stage.executable_name] = float(prog.duration_secs)
            (wd / STAGE_TIMES_FILE).write_text(json.dumps(times))

    feff10.FeffPipeline(config).run_with_progress(progress)
    (wd / STAGE_TIMES_FILE).write_text(json.dumps(times))
    return 0


if __name__ == "__main__":  # the worker process: python -m xanesdb.jobs.feff.run WORKDIR STAGES
    sys.exit(_worker_main(sys.argv[1], sys.argv[2]))
