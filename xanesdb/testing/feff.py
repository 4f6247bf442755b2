"""A fake FEFF for tests: replays stored outputs of real FEFF10 runs and checks the generated input.

Like atomate2's ``utils/testing/vasp.py``. Reference runs live in
``tests/test_data/feff/<case>/{inputs,outputs}``: ``inputs/feff.inp`` is the input the real run
got (and ``inputs/structure.json`` + ``inputs/meta.json`` say which site and preset made it),
``outputs/`` holds what real FEFF10 wrote (``xmu.dat``, stage times). :func:`record_reference`
makes such a case from a real run.

Two ways in:

- in-process: :func:`monkeypatch_feff` replaces :func:`xanesdb.jobs.feff.run.run_feff`; the
  reference is picked by the run's name (the job name, e.g. ``"feff xanes"``).
- as a command (``XANESDB_FEFF_CMD``), for runs in other processes:
  ``python -m xanesdb.testing.feff CASE_DIR [--check cards|full] [--sleep S]`` checks
  ``./feff.inp`` and copies the outputs into the current folder.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

from xanesdb.jobs.feff.parse import atoms_rows

__all__ = ["check_feff_inputs", "replay_outputs", "make_fake_run_feff", "monkeypatch_feff", "record_reference", "fake_feff_command"]


def check_feff_inputs(feff_inp: Path, ref_inputs: Path, check: str = "full") -> None:
    """Assert that a generated ``feff.inp`` matches a reference input.

    ``check='cards'`` compares every card, the edge and the absorber element; ``'full'`` also
    compares the cluster (every ATOMS row, coordinates to 1e-4 A) and the potentials.
    """
    from xanesdb.jobs.feff.importer import _absorber_from_inp
    from xanesdb.jobs.feff.parse import parse_feff_cards

    got, ref = Path(feff_inp).read_text(), (Path(ref_inputs) / "feff.inp").read_text()
    gc, rc = parse_feff_cards(got), parse_feff_cards(ref)
    if gc != rc:
        diff = {k: (gc.get(k), rc.get(k)) for k in sorted(set(gc) | set(rc)) if gc.get(k) != rc.get(k)}
        raise AssertionError(f"FEFF cards differ from reference {ref_inputs} (got, expected): {diff}")
    if _absorber_from_inp(got) != _absorber_from_inp(ref):
        raise AssertionError(f"absorber {_absorber_from_inp(got)} != reference {_absorber_from_inp(ref)}")
    if check == "full":
        ga, ra = atoms_rows(got), atoms_rows(ref)
        if len(ga) != len(ra):
            raise AssertionError(f"cluster has {len(ga)} atoms, reference {len(ra)}")
        for i, (a, b) in enumerate(zip(ga, ra)):
            if a[3:5] != b[3:5] or any(abs(float(x) - float(y)) > 1e-4 for x, y in zip(a[:3], b[:3])):
                raise AssertionError(f"ATOMS row {i} differs: {a} vs reference {b}")


def replay_outputs(case: Path, workdir: Path) -> None:
    """Copy a reference case's outputs into ``workdir``."""
    for f in (Path(case) / "outputs").iterdir():
        if f.is_file():
            shutil.copy(f, Path(workdir) / f.name)


def make_fake_run_feff(ref_root: Path, refs: dict[str, str], check: str = "full") -> Callable[..., Any]:
    """A drop-in for :func:`xanesdb.jobs.feff.run.run_feff` that replays reference outputs."""
    from xanesdb.jobs.feff.run import STAGE_TIMES_FILE, FeffRunResult

    def fake_run_feff(workdir: str | Path = ".", feff_cmd: str | None = None, timeout: float | None = None,
                      stages: Any = None, name: str | None = None, kill_switch: Any = None) -> FeffRunResult:
        key = name
        if key not in refs:
            try:
                from jobflow import CURRENT_JOB

                key = CURRENT_JOB.job.name if CURRENT_JOB.job is not None else key
            except Exception:  # noqa: BLE001
                pass
        if key not in refs:
            raise KeyError(f"fake FEFF has no reference for run {name!r}; known: {sorted(refs)}")
        case = Path(ref_root) / refs[key]
        workdir = Path(workdir)
        check_feff_inputs(workdir / "feff.inp", case / "inputs", check=check)
        t0 = time.perf_counter()
        replay_outputs(case, workdir)
        stage_seconds = {}
        if (workdir / STAGE_TIMES_FILE).is_file():
            stage_seconds = json.loads((workdir / STAGE_TIMES_FILE).read_text())
        meta = json.loads((case / "inputs" / "meta.json").read_text()) if (case / "inputs" / "meta.json").is_file() else {}
        return FeffRunResult(ok=True, code="feff10-rs", code_version=meta.get("code_version"), returncode=0,
                             wall_seconds=time.perf_counter() - t0, stage_seconds=stage_seconds)

    return fake_run_feff


def monkeypatch_feff(monkeypatch: Any, ref_root: Path, check: str = "full") -> Iterator[Callable[[dict[str, str]], None]]:
    """Replace the FEFF runner by the fake; yields ``refs.update`` (run name -> case folder name)."""
    import xanesdb.jobs.feff.run

    refs: dict[str, str] = {}
    monkeypatch.setattr(xanesdb.jobs.feff.run, "run_feff", make_fake_run_feff(Path(ref_root), refs, check=check))
    yield refs.update


def fake_feff_command(case: Path, check: str = "cards", sleep: float = 0.0) -> str:
    """An ``XANESDB_FEFF_CMD`` value that runs this fake on ``case`` in the run folder."""
    return f"{sys.executable} -m xanesdb.testing.feff {Path(case).resolve()} --check {check} --sleep {sleep:g}"


def record_reference(structure: Any, absorbing_index: int, material_id: str, preset: Any, dest: Path,
                     timeout: float = 600.0) -> dict:
    """Run real FEFF10 on a site and store it as a reference case in ``dest``."""
    from xanesdb.jobs.feff.run import STAGE_TIMES_FILE, run_feff10
    from xanesdb.jobs.feff.sets import feff_input_text, get_preset, preset_cards, stages_for_cards

    preset = get_preset(preset)
    dest = Path(dest)
    (dest / "inputs").mkdir(parents=True, exist_ok=True)
    (dest / "outputs").mkdir(parents=True, exist_ok=True)
    work = dest / "_work"
    work.mkdir(exist_ok=True)
    text = feff_input_text(structure, absorbing_index, preset)
    (work / "feff.inp").write_text(text)
    result = run_feff10(work, timeout=timeout, stages=stages_for_cards(preset_cards(preset)))
    if not result.ok:
        raise RuntimeError(f"reference run failed: {result.error}")
    (dest / "inputs" / "feff.inp").write_text(text)
    (dest / "inputs" / "structure.json").write_text(json.dumps(structure.as_dict()))
    meta = {"material_id": material_id, "absorbing_index": absorbing_index, "preset": preset.name,
            "radius": preset.radius, "user_tag_settings": preset.user_tag_settings,
            "code": "feff10-rs", "code_version": result.code_version, "wall_seconds": round(result.wall_seconds, 2)}
    (dest / "inputs" / "meta.json").write_text(json.dumps(meta, indent=1))
    for name in ("xmu.dat", STAGE_TIMES_FILE):
        shutil.copy(work / name, dest / "outputs" / name)
    shutil.rmtree(work)
    return meta


def _main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Fake FEFF: check ./feff.inp against a reference and copy its outputs.")
    p.add_argument("case", type=Path)
    p.add_argument("--check", choices=("cards", "full", "none"), default="cards")
    p.add_argument("--exit-code", type=int, default=0, help="exit status after replaying (a FEFF that failed)")
    p.add_argument("--sleep", type=float, default=0.0, help="seconds to pretend to compute")
    p.add_argument("--fail", action="store_true", help="exit 3 without output (a crashing FEFF)")
    a = p.parse_args(argv)
    if a.fail:
        print("fake FEFF: crashing as asked", file=sys.stderr)
        return 3
    try:
        if a.check != "none":
            check_feff_inputs(Path("feff.inp"), a.case / "inputs", check=a.check)
    except AssertionError as err:
        print(f"fake FEFF: input check failed: {err}", file=sys.stderr)
        return 4
    if a.sleep:
        time.sleep(a.sleep)
    replay_outputs(a.case, Path.cwd())
    print("fake FEFF: replayed", a.case.name)
    return a.exit_code


if __name__ == "__main__":
    sys.exit(_main())
