"""The notebooks run top to bottom with a real kernel on tiny data, and draw their figures."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from tiny import TINY_CATALOG

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def _figures(nb) -> int:
    return sum("image/png" in out.get("data", {}) for cell in nb.cells if cell.cell_type == "code"
               for out in cell.get("outputs", []))


@pytest.mark.slow
@pytest.mark.parametrize("name, figures", [("explore", 6), ("deploy", 1), ("text", 2)])
def test_notebook_runs_and_draws(name, figures, tmp_path, monkeypatch):
    (tmp_path / "cat.yaml").write_text(TINY_CATALOG)
    monkeypatch.setenv("SCALEML_CATALOG", str(tmp_path / "cat.yaml"))
    monkeypatch.setenv("SCALEML_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}},
                   env=dict(os.environ)).execute()
    errors = [out for cell in nb.cells for out in cell.get("outputs", []) if out.get("output_type") == "error"]
    assert not errors
    assert _figures(nb) == figures
    if name == "explore":
        dashboard = "".join(str(out.get("data", {})) for out in nb.cells[1].outputs)
        assert "127.0.0.1" in dashboard  # the client's repr shows where the dashboard is
