"""`python -m cli ...` is `sweeps ...` (the embedded stack starts its children this way)."""

from cli.main import app

app(prog_name="sweeps")
