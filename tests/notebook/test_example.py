"""docs/notebooks/explore.ipynb runs from top to bottom in a fresh kernel (nbclient)."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).parents[2] / "docs" / "notebooks" / "explore.ipynb"
SHARE = re.compile(r"^(\w+): MRI ([\d.]+)%, PET ([\d.]+)% of the influence in the region$", re.M)


@pytest.mark.slow
def test_the_example_notebook_runs_and_prints_each_inputs_share(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FUSEVIS_CACHE", str(tmp_path / "cache"))  # maps computed, not cached
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": tmp_path}}
    ).execute()
    printed = "".join(
        output.get("text", "")
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if output.output_type == "stream"
    )
    errors = [
        o
        for c in notebook.cells
        if c.cell_type == "code"
        for o in c.outputs
        if o.output_type == "error"
    ]
    assert not errors, errors
    shares = {name: (float(mri), float(pet)) for name, mri, pet in SHARE.findall(printed)}
    assert set(shares) == {"DeepFuse", "FunFuseAn"}, printed
    for mri, pet in shares.values():
        assert mri + pet == pytest.approx(100.0, abs=0.15)  # printed to 0.1 %
        assert 0 < mri < 100 and 0 < pet < 100
    assert "DeepFuse: pixel" in printed and "FunFuseAn: pixel" in printed
    # the widget was made: its view is in the outputs, for JupyterLab to show
    views = [
        o
        for c in notebook.cells
        if c.cell_type == "code"
        for o in c.outputs
        if "application/vnd.jupyter.widget-view+json" in o.get("data", {})
    ]
    assert len(views) == 1
