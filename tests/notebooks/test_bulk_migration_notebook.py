"""docs/notebooks/bulk-migration.ipynb runs top to bottom in a real Jupyter kernel."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

pytestmark = pytest.mark.e2e

NOTEBOOK = Path(__file__).resolve().parents[2] / "docs" / "notebooks" / "bulk-migration.ipynb"


def _read() -> Any:
    return nbformat.read(NOTEBOOK, as_version=4)  # type: ignore[no-untyped-call]


def test_committed_notebook_has_no_outputs() -> None:
    nb = _read()
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs, cell.source[:60]
            assert cell.execution_count is None


def _texts(nb: Any) -> list[str]:
    texts: list[str] = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            assert output.get("output_type") != "error", output
            texts.append(str(output.get("text", "")))
            # What Jupyter shows: the HTML where there is one, else the plain text.
            data = output.get("data", {})
            texts.append(str(data.get("text/html", data.get("text/plain", ""))))
    return texts


def test_notebook_runs_in_a_kernel(tmp_path: Path) -> None:
    nb = _read()
    client = NotebookClient(
        nb,
        timeout=120,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()
    text = "\n".join(_texts(nb))
    assert 'class="cmproxy-plan"' in text  # the plan as HTML
    assert 'class="cmproxy-state"' in text  # the hierarchy as HTML
    assert 'class="cmproxy-desired"' in text  # the desired state as HTML
    assert "<td>CONTOSO\\svc-proxy2</td>" in text  # as an admin writes it
    assert "None" not in text.replace("NoneType", "")  # no Python reprs in the tables
    assert "IProgress" not in text and "TqdmWarning" not in text  # no widget warning
    assert 'class="cmproxy-results"' in text  # the results as HTML
    assert "15 server(s): 1 unchanged, 14 changed" in text
    assert "2 rolled back" in text  # the injected failures
    assert "R13" in text
