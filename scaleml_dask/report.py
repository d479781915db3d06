"""Run reports: one HTML page + report.json + PNG figures per run.

>>> import tempfile
>>> rep = Report(tempfile.mkdtemp(), title="example")
>>> rep.add_section("Numbers", text="two rows", table=[{"a": 1, "b": 2.5}, {"a": 3, "b": 4.0}])
>>> rep.write().name
'report.html'
"""

from __future__ import annotations

import datetime as _dt
import html
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1100px;margin:2em auto;color:#222;
padding:0 1em}
h1{border-bottom:2px solid #3a6ea5;padding-bottom:.2em} h2{color:#3a6ea5;margin-top:2em}
table{border-collapse:collapse;margin:.8em 0;font-size:.92em} td,th{border:1px solid #ccc;padding:.25em .6em;
text-align:right} th{background:#eef3f8} td:first-child,th:first-child{text-align:left}
img{max-width:100%;border:1px solid #ddd;margin:.5em 0} .meta{color:#666;font-size:.9em}
pre{background:#f6f8fa;padding:.6em;overflow-x:auto}
"""


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def _fmt(value: Any) -> str:
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if v != v:  # not applicable or not available (a diverged candidate's score): a dash, not "nan"
            return "—"
        if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e6):
            return f"{v:.3e}"
        return f"{v:.4g}"
    return html.escape(str(value))


class Report:
    """Collects sections (text, tables, PNG figures, data) and writes ``report.html`` + ``report.json``."""

    def __init__(self, out_dir: str | os.PathLike, title: str = "scaleml-dask run") -> None:
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.title = title
        self.sections: list[dict[str, Any]] = []
        self.one_time_costs: list[dict[str, Any]] = []  # shown apart from the steady figures (runner)
        self.created = _dt.datetime.now().isoformat(timespec="seconds")

    def figure_path(self, name: str) -> Path:
        """Where to save the PNG figure ``name`` (inside the report directory)."""
        return self.out_dir / f"{name}.png"

    def save_figure(self, fig: Any, name: str) -> Path:
        """Lay out, save as ``<name>.png`` in the report directory, and close a matplotlib figure."""
        path = self.figure_path(name)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        pyplot().close(fig)
        return path

    def add_section(self, title: str, *, text: str = "", table: Sequence[dict] | None = None,
                    figures: Sequence[str | os.PathLike] = (), data: dict | None = None) -> None:
        """Append a section. ``table`` is a list of rows (dicts with the same keys)."""
        self.sections.append({"title": title, "text": text, "table": list(table or []),
                              "figures": [Path(f).name for f in figures], "data": data or {}})

    def add_one_time_cost(self, what: str, seconds: float, *, where: str = "client", note: str = "") -> None:
        """Record a cost paid once per run or per process (cluster start, kernel compilation, a first fit)."""
        self.one_time_costs.append({"what": what, "where": where, "seconds": seconds, "note": note})

    def write(self) -> Path:
        """Write ``report.json`` and ``report.html``; returns the HTML path."""
        doc = {"title": self.title, "created": self.created, "sections": self.sections}
        (self.out_dir / "report.json").write_text(json.dumps(_jsonable(doc), indent=2))
        parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(self.title)}</title>",
                 f"<style>{_CSS}</style></head><body><h1>{html.escape(self.title)}</h1>",
                 f"<p class='meta'>created {self.created}</p>"]
        for s in self.sections:
            parts.append(f"<h2>{html.escape(s['title'])}</h2>")
            for para in filter(None, s["text"].split("\n\n")):
                parts.append(f"<p>{html.escape(para)}</p>")
            if s["table"]:
                cols = list(dict.fromkeys(k for row in s["table"] for k in row))
                parts.append("<table><tr>" + "".join(f"<th>{html.escape(str(c))}</th>" for c in cols) + "</tr>")
                for row in s["table"]:
                    parts.append("<tr>" + "".join(f"<td>{_fmt(row.get(c, ''))}</td>" for c in cols) + "</tr>")
                parts.append("</table>")
            for fig in s["figures"]:
                parts.append(f"<img src='{html.escape(fig)}' alt='{html.escape(fig)}'>")
        parts.append("</body></html>")
        out = self.out_dir / "report.html"
        out.write_text("\n".join(parts))
        return out


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the non-interactive Agg backend, imported lazily (reports are files)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
