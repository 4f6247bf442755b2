"""``xanesdb demo``: the main job end to end on the local default database.

Each step is an ordinary xanesdb command, so what the demo does a user can do by hand:
structures -> ChemEnv labels -> FEFF (imported FEFF9 runs + live FEFF10 runs) -> spectra ->
a classifier trained on a Mongo query -> counts and plots.
"""

from __future__ import annotations

import json
import time

import typer
from rich.console import Console
from rich.rule import Rule

from xanesdb.platform.settings import get_settings

console = Console(soft_wrap=True)

#: the query the demo trains on: labelled Cu FEFF9 spectra of the OmniXAS set
DEMO_QUERY = {"element": "Cu", "source": "omnixas", "lce_class": {"$in": ["T4", "S5", "O6"]}}


def demo_steps(home, n_cu_structures: int, n_live_sites: int, epochs: int) -> list[tuple[str, list[str]]]:
    """The demo as (title, xanesdb arguments) steps."""
    from xanesdb.platform.snapshot import BUNDLED_DB_DIR

    steps: list[tuple[str, list[str]]] = []
    if (BUNDLED_DB_DIR / "sites.jsonl.gz").exists():
        steps.append(("load the bundled database", ["db", "load-bundled"]))
    else:
        steps += [
            ("fetch the bundled structures", ["structures", "fetch", "--source", "bundled"]),
            ("label Cu sites with ChemEnv", ["sites", "label", "--element", "Cu", "--limit", str(n_cu_structures)]),
            ("import the OmniXAS FEFF9 Cu runs", ["feff", "import-omnixas"]),
        ]
    steps += [
        ("label a few Ti sites live (ChemEnv)", ["sites", "label", "--element", "Ti", "--limit", "3", "--force"]),
        ("run FEFF10 live on new Ti sites", ["feff", "run", "--element", "Ti", "--preset", "fast",
                                             "--limit", str(n_live_sites), "--timeout", "400"]),
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
        ("database counts", ["db", "stats"]),
    ]
    return steps


def demo(
    cu_structures: int = typer.Option(150, help="Cu structures to label when no bundled database is shipped."),
    live_sites: int = typer.Option(4, help="New sites computed live with FEFF10."),
    epochs: int = typer.Option(20, help="Training epochs of the demo model."),
) -> None:
    """Run the main job end to end on the local default database (a few minutes on 2 cores)."""
    from xanesdb.cli import app

    settings = get_settings()
    t0 = time.perf_counter()
    steps = demo_steps(settings.HOME, cu_structures, live_sites, epochs)
    for i, (title, args) in enumerate(steps, 1):
        console.print(Rule(f"[{i}/{len(steps)}] {title}: xanesdb {' '.join(args)}"))
        t = time.perf_counter()
        try:
            app(args=args, standalone_mode=False)
        except SystemExit as e:  # typer.Exit inside a step
            if e.code not in (0, None):
                raise
        console.print(f"[dim]{title}: {time.perf_counter() - t:.0f} s[/dim]")
    plots = sorted((settings.HOME).rglob("*.png"))
    console.print(Rule("done"))
    console.print(f"demo finished in {time.perf_counter() - t0:.0f} s; database under {settings.HOME / 'db'}")
    for p in plots:
        console.print(f"plot: {p}")
