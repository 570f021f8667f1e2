"""examples/quickstart.ipynb runs top to bottom (executed with nbclient, not just opened)."""

from __future__ import annotations

import nbclient
import nbformat

from tests.helpers import EXAMPLES


def test_quickstart_notebook_runs_and_draws(tmp_path, monkeypatch):
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")  # no path-migration warning in a fresh environment
    notebook = nbformat.read(EXAMPLES / "quickstart.ipynb", as_version=4)
    client = nbclient.NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    figures = [o for o in outputs if "application/vnd.plotly.v1+json" in o.get("data", {})]
    assert len(figures) >= 2  # the live-cell plot and the trial plot
    assert "research use only" in notebook.cells[0].source.lower()
    assert "trial.html" in outputs[-1]["data"]["text/plain"]
    assert (tmp_path / "quickstart-output" / "trial.html").is_file()
