"""Radially distorted clusters of one absorbing site: inputs, one run, its task key.

Thaller's disorder method (``../shared/MISSION.md``, "Related methods"): every atom of the
absorber's FEFF cluster is moved along the line to the absorber by the same distortion ``d``
(every absorber-neighbour distance ``r`` becomes ``r + d``), ``d`` in -0.45..+0.45 A. The
spectra of such a series, averaged with weights over ``d`` (:mod:`xanesdb.ml.disorder`), are the
spectra of a disordered site labelled by their mean squared displacement.

Each run is a FEFF task of the site (``feff_tasks``, the writer of :mod:`xanesdb.jobs.feff.task`)
with ``distortion`` set and the key ``<site_id>:<edge>:<preset-hash>:d<+0.050>``; ordered runs
(``distortion`` absent) keep their key. The input text is the preset's ``feff.inp``
(:func:`xanesdb.jobs.feff.sets.feff_input_text`) with only its ATOMS rows moved, so cards and
potentials are those of the ordered run.
"""

from __future__ import annotations

import math
import shutil
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from xanesdb.jobs.feff import run as feff_run
from xanesdb.jobs.feff.sets import FeffPreset, feff_input_text, get_preset, preset_cards, preset_hash_of, stages_for_cards
from xanesdb.jobs.feff.task import assess_attempt, make_task_doc
from xanesdb.platform.errors import XanesdbUserError
from xanesdb.schemas import FeffTaskDoc, site_id as make_site_id, task_id as make_task_id

if TYPE_CHECKING:
    from pymatgen.core import Structure

    from xanesdb.jobs.feff.run import FeffKillSwitch

__all__ = ["MAX_DISTORTION", "LITE_PRESET", "check_distortion", "distortion_grid", "distort_feff_input",
           "distorted_task_key", "compute_distorted_task", "get_series_preset", "pending_distortions"]

#: largest |d| (A) of a series (Thaller: -0.45..+0.45 A)
MAX_DISTORTION = 0.45

#: the cheap preset of the series (measured against ``fast`` in benchmarks/results/disorder_cost.txt):
#: ``fast`` with a 4.5 A full-multiple-scattering radius and a 6 A cluster
LITE_PRESET = FeffPreset(
    name="fastlite",
    radius=6.0,
    user_tag_settings={"_del": ["SCF", "LDOS"], "FMS": "4.5 0"},
    description="No SCF, FMS 4.5 A, FSR core hole, cluster 6 A: distortion series.",
)


def get_series_preset(name: str | FeffPreset) -> FeffPreset:
    """``fastlite`` (:data:`LITE_PRESET`) or any preset of :mod:`xanesdb.jobs.feff.sets`."""
    if isinstance(name, str) and name == LITE_PRESET.name:
        return LITE_PRESET
    return get_preset(name)


def check_distortion(d: Any) -> float:
    """``d`` as a float, refused with one line when not finite or outside -0.45..+0.45 A."""
    try:
        v = float(d)
    except (TypeError, ValueError):
        raise XanesdbUserError(f"distortion {d!r:.40} is not a number; give one in -0.45..+0.45 A") from None
    if not math.isfinite(v):
        raise XanesdbUserError(f"distortion {v} is not finite; give one in -0.45..+0.45 A")
    if abs(v) > MAX_DISTORTION + 1e-9:
        raise XanesdbUserError(f"distortion {v:+g} A is outside -{MAX_DISTORTION}..+{MAX_DISTORTION} A")
    return round(v, 4)


def distortion_grid(step: float = 0.05, limit: float = MAX_DISTORTION) -> list[float]:
    """``-limit, -limit + step, ..., +limit`` (rounded to 1e-4 A), e.g. 19 values for 0.05 A."""
    for name, v in (("step", step), ("limit", limit)):
        if not math.isfinite(float(v)) or float(v) <= 0:
            raise XanesdbUserError(f"distortion {name} {v!r} must be a positive finite number")
    check_distortion(limit)
    n = int(round(2 * limit / step))
    if abs(n * step - 2 * limit) > 1e-6:
        raise XanesdbUserError(f"step {step:g} A does not divide -{limit:g}..+{limit:g} A evenly")
    return [round(-limit + i * step, 4) for i in range(n + 1)]


def distort_feff_input(text: str, d: float) -> str:
    """``feff.inp`` text with every ATOMS row but the absorber's moved radially by ``d`` (A).

    Rows keep their potential index and tag; the distance column is rewritten. A row that would
    reach the absorber (``r + d <= 0.5`` A) is refused.
    """
    d = check_distortion(d)
    out, inside = [], False
    for line in text.splitlines():
        s = line.strip()
        if s.upper().startswith("ATOMS"):
            inside = True
            out.append(line)
            continue
        if inside and s and not s.startswith("*") and not s.upper().startswith("END"):
            p = s.split()
            x, y, z = (float(v) for v in p[:3])
            r = math.sqrt(x * x + y * y + z * z)
            if r > 1e-8:
                if r + d <= 0.5:
                    raise XanesdbUserError(f"distortion {d:+g} A puts an atom at {r + d:.2f} A from the absorber")
                f = (r + d) / r
                x, y, z, r = x * f, y * f, z * f, r + d
            rest = p[5:] if len(p) > 5 else []
            dist_and_more = [f"{r:.5f}", *rest[1:]] if rest else [f"{r:.5f}"]
            out.append(f"  {x:12.6f} {y:12.6f} {z:12.6f} {p[3]:>6}  {p[4]:<6} " + "  ".join(dist_and_more))
            continue
        if inside and s.upper().startswith("END"):
            inside = False
        out.append(line)
    return "\n".join(out) + ("\n" if text.endswith("\n") else "")


def distorted_task_key(site_id: str, edge: str, phash: str, d: float) -> str:
    """``<site_id>:<edge>:<preset-hash>:d<+0.050>``: the ordered key with the distortion appended."""
    return f"{make_task_id(site_id, edge, phash)}:d{check_distortion(d):+.3f}"


def compute_distorted_task(
    structure: Structure,
    absorbing_index: int,
    material_id: str,
    d: float,
    preset: str | FeffPreset = LITE_PRESET,
    edge: str = "K",
    workdir: str | Path = ".",
    feff_cmd: str | None = None,
    timeout: float | None = None,
    site_id: str | None = None,
    name: str | None = None,
    kill_switch: FeffKillSwitch | None = None,
) -> FeffTaskDoc:
    """Write the distorted cluster, run FEFF once, parse and validate: the site's task at ``d``.

    One attempt (the error ladder of ordered runs changes cards, which would break the series);
    a failure is a ``state='failed'`` task with its reason, as for ordered runs.
    """
    d = check_distortion(d)
    preset = get_series_preset(preset)
    if not 0 <= absorbing_index < len(structure):
        raise XanesdbUserError(f"absorbing index {absorbing_index} is outside the structure ({len(structure)} sites)")
    element = structure[absorbing_index].specie.symbol
    site_id = site_id or make_site_id(material_id, element, absorbing_index)
    cards = preset_cards(preset, edge)
    text = distort_feff_input(feff_input_text(structure, absorbing_index, preset, edge=edge), d)
    attempt = Path(workdir) / "attempt-0"
    if attempt.exists():  # left by an interrupted run
        shutil.rmtree(attempt)
    attempt.mkdir(parents=True)
    (attempt / "feff.inp").write_text(text)
    run_kwargs: dict[str, Any] = {"feff_cmd": feff_cmd, "timeout": timeout, "name": name}
    if kill_switch is not None:
        run_kwargs["kill_switch"] = kill_switch
    # run FEFF (through the module attribute, so tests can replace it)
    result = feff_run.run_feff(attempt, stages=stages_for_cards(cards), **run_kwargs)
    error, xmu, warnings = assess_attempt(attempt, result.error, cards, element, edge)
    code = result.code if not feff_cmd else (xmu.code if xmu and xmu.code else result.code)
    phash = preset_hash_of(preset, edge)
    doc = make_task_doc(site_id, material_id, element, absorbing_index, edge, preset.name, phash, cards, text, error,
                        warnings, [], xmu, code=code, code_version=result.code_version or (xmu.code if xmu else None),
                        stage_seconds=result.stage_seconds, wall_seconds=result.wall_seconds,
                        hostname=socket.gethostname())  # fmt: skip
    return doc.model_copy(update={"task_id": distorted_task_key(site_id, edge, phash, d), "distortion": d})


def pending_distortions(db: Any, site_id: str, distortions: Sequence[float], preset: str | FeffPreset = LITE_PRESET,
                        edge: str = "K", retry_failed: bool = False) -> list[float]:
    """The distortions of ``site_id`` with no stored task yet (a failed one counts unless ``retry_failed``)."""
    phash = preset_hash_of(get_series_preset(preset), edge)
    keys = {distorted_task_key(site_id, edge, phash, d): check_distortion(d) for d in distortions}
    crit: dict[str, Any] = {"task_id": {"$in": list(keys)}}
    if retry_failed:
        crit["state"] = "successful"
    done = set(db["feff_tasks"].distinct("task_id", crit))
    return [d for k, d in keys.items() if k not in done]
