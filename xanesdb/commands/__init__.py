"""Command groups of the xanesdb CLI, one module per area (registered in xanesdb/cli.py)."""
