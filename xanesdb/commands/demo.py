"""``xanesdb demo``: the main job end to end on the local default database.

Each step is an ordinary xanesdb command, so what the demo does a user can do by hand:
structures -> ChemEnv labels -> FEFF (imported FEFF9 runs + live FEFF10 runs) -> spectra ->
a classifier trained on a Mongo query -> the shipped models' answers on measured spectra -> counts
and plots.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer
from rich.markup import escape

from xanesdb.commands._console import SafeConsole
from rich.rule import Rule

from xanesdb.platform.errors import XanesdbUserError
from xanesdb.platform.settings import get_settings

console = SafeConsole(soft_wrap=True)

#: the query the demo trains on: labelled Cu FEFF9 spectra of the OmniXAS set
DEMO_QUERY = {"element": "Cu", "source": "omnixas", "lce_class": {"$in": ["T4", "S5", "O6"]}}


#: measured spectra the demo predicts: xraylarch's Fe.prj (an Fe foil and four Fe oxyhydroxides; MIT, data/ATTRIBUTION.md)
EXAMPLE_MEASURED = Path(__file__).resolve().parents[1] / "data" / "examples" / "Fe.prj"

#: absorbers the live FEFF step tries, in this order: the first with enough sites not yet computed
LIVE_ELEMENTS = ("Ti", "V", "Cr", "Mn", "Co", "Ni", "Fe", "Cu")
#: the preset of the live FEFF step
LIVE_PRESET = "fast"


def setup_steps(n_cu_structures: int) -> list[tuple[str, list[str]]]:
    """The steps that fill the database: the bundled one, or (without it) structures, labels and FEFF9 runs."""
    from xanesdb.platform.snapshot import BUNDLED_DB_DIR

    if (BUNDLED_DB_DIR / "sites.jsonl.gz").exists():
        return [("load the bundled database", ["db", "load-bundled"])]
    return [
        ("fetch the bundled structures", ["structures", "fetch", "--source", "bundled"]),
        ("label Cu sites with ChemEnv", ["sites", "label", "--element", "Cu", "--limit", str(n_cu_structures)]),
        ("import the OmniXAS FEFF9 Cu runs", ["feff", "import-omnixas"]),
    ]


def choose_live_element(db, n_live_sites: int, elements=LIVE_ELEMENTS) -> str | None:
    """The first absorber of ``elements`` with at least ``n_live_sites`` labelled sites not computed yet.

    Falls back to the one with the most such sites; None when every labelled site is computed.
    """
    from xanesdb.jobs.feff.flows import select_pending_sites

    counts: dict[str, int] = {}
    for el in elements:
        pending, _, _ = select_pending_sites(db, [el], preset=LIVE_PRESET, limit=max(n_live_sites, 1))
        counts[el] = len(pending)
        if len(pending) >= n_live_sites:
            return el
    best = max(counts, key=lambda el: counts[el])
    return best if counts[best] else None


def live_steps(home, element: str | None, n_live_sites: int, epochs: int) -> list[tuple[str, list[str]]]:
    """The steps after set-up: live ChemEnv + FEFF10 on ``element`` (skipped when None), spectra, a model."""
    steps: list[tuple[str, list[str]]] = []
    if element is not None:
        steps += [
            (f"label a few {element} sites live (ChemEnv)", ["sites", "label", "--element", element, "--limit", "3", "--force"]),
            (f"run FEFF10 live on {element} sites not computed yet",
             ["feff", "run", "--element", element, "--preset", LIVE_PRESET, "--limit", str(n_live_sites), "--timeout", "400"]),
        ]
    steps += [
        ("FEFF task status", ["feff", "status"]),
        ("build standardised spectra", ["spectra", "build"]),
        ("plot the Cu spectra by class", ["spectra", "plot", "--element", "Cu", "--source", "omnixas",
                                          "--out", str(home / "plots" / "demo_cu_spectra.png")]),
        ("plot xanesdb's FEFF10 Fe spectra by class", ["spectra", "plot", "--element", "Fe", "--source", "xanesdb",
                                                       "--out", str(home / "plots" / "demo_fe_feff10_spectra.png")]),
        ("train a CNN on a Mongo query", ["train", "--query", json.dumps(DEMO_QUERY), "--model", "cnn",
                                          "--epochs", str(epochs), "--n-models", "3", "--augment", "shift",
                                          "--class-weight", "balanced"]),
        ("registered models", ["models", "list"]),
        ("predict the geometry of measured Fe spectra with the shipped models", [
            "predict", str(EXAMPLE_MEASURED), "--png", str(home / "plots" / "predict")]),
        ("database counts", ["db", "stats"]),
    ]
    return steps


def demo(
    ctx: typer.Context,
    cu_structures: int = typer.Option(150, help="Cu structures to label when no bundled database is shipped."),
    live_sites: int = typer.Option(4, help="New sites computed live with FEFF10."),
    epochs: int = typer.Option(20, help="Training epochs of the demo model."),
) -> None:
    """Run the main job end to end on the local default database (a few minutes on 2 cores)."""
    from xanesdb.platform.stores import get_database

    # each step runs through the command tree this command belongs to (no import of xanesdb.cli,
    # which imports this module)
    root = ctx.find_root().command
    if cu_structures < 1 or epochs < 1 or live_sites < 0:
        raise XanesdbUserError("--cu-structures and --epochs must be at least 1, --live-sites 0 or more")

    settings = get_settings()
    t0 = time.perf_counter()
    setup = setup_steps(cu_structures)
    n_steps = len(setup) + len(live_steps(settings.HOME, LIVE_ELEMENTS[0], live_sites, epochs))

    def run_steps(steps, first: int) -> None:
        for i, (title, args) in enumerate(steps, first):
            console.print(Rule(f"[{i}/{n_steps}] {title}: xanesdb {' '.join(args)}"))
            t = time.perf_counter()
            try:
                code = root.main(args=args, prog_name="xanesdb", standalone_mode=False)
                if isinstance(code, int) and not isinstance(code, bool) and code != 0:
                    raise SystemExit(code)  # a `typer.Exit(code)` of the step, returned without standalone mode
            except SystemExit as e:  # typer.Exit inside a step
                if e.code not in (0, None):
                    raise
            console.print(f"[dim]{escape(title)}: {time.perf_counter() - t:.0f} s[/dim]", markup=True)

    run_steps(setup, 1)
    # the live FEFF step needs sites the loaded database has not computed: take the first absorber with some
    element = choose_live_element(get_database(settings), live_sites) if live_sites > 0 else None
    if element is None:
        console.print("[yellow]no labelled site is left without a FEFF10 task: the live FEFF step is skipped[/yellow]", markup=True)
        n_steps -= 2
    run_steps(live_steps(settings.HOME, element, live_sites, epochs), len(setup) + 1)
    plots = sorted((settings.HOME).rglob("*.png"))
    console.print(Rule("done"))
    console.print(f"demo finished in {time.perf_counter() - t0:.0f} s; database under {settings.HOME / 'db'}")
    for p in plots:
        console.print(f"plot: {p}")
