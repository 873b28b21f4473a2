"""The example notebook runs top to bottom in a real Jupyter kernel, and shows pictures.

Needs nbclient, nbformat and ipykernel (the ``test`` extras); skipped with the reason otherwise.
Each render of the notebook takes FEATVIS_NOTEBOOK_STEPS=8 steps here.
"""

from __future__ import annotations

import base64
import importlib.util
import io
from pathlib import Path

import pytest
from PIL import Image

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "featvis.ipynb"
STEPS = 8

_missing = [name for name in ("nbclient", "nbformat", "ipykernel") if importlib.util.find_spec(name) is None]
pytestmark = pytest.mark.skipif(
    bool(_missing), reason=f"running the notebook needs {', '.join(_missing)}: pip install nbclient nbformat ipykernel"
)


def _outputs(notebook: object, cell_type: str = "code") -> list[list[dict]]:
    return [cell.get("outputs", []) for cell in notebook.cells if cell.cell_type == cell_type]


def test_the_committed_notebook_has_no_outputs() -> None:
    import nbformat

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code, "the notebook has no code cells"
    assert [cell.outputs for cell in code] == [[] for _ in code], "clear the notebook's outputs before committing"
    assert [cell.execution_count for cell in code] == [None for _ in code]


@pytest.fixture(scope="module")
def executed(tmp_path_factory: pytest.TempPathFactory, shared_weights: Path) -> tuple[object, Path]:
    """The notebook after a run in a fresh kernel of this Python, from the examples folder, with few steps."""
    import nbformat
    from ipykernel.kernelspec import write_kernel_spec
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient

    work = tmp_path_factory.mktemp("notebook")
    # a kernel of this very interpreter, whatever kernels the user has installed
    write_kernel_spec(work / "kernels" / "featvis-test")
    specs = KernelSpecManager(kernel_dirs=[str(work / "kernels")])
    manager = KernelManager(kernel_name="featvis-test", kernel_spec_manager=specs)
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    output = work / "output"
    env = {
        "FEATVIS_NOTEBOOK_STEPS": str(STEPS),
        "FEATVIS_WEIGHTS_DIR": str(shared_weights),
        "FEATVIS_NOTEBOOK_OUTPUT": str(output),
        "OMP_NUM_THREADS": "1",
    }
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        client = NotebookClient(
            notebook, km=manager, timeout=120, resources={"metadata": {"path": str(NOTEBOOK.parent)}}
        )
        client.execute()  # raises CellExecutionError, with the cell and the traceback, if a cell fails
    return notebook, output


@pytest.mark.slow
def test_every_cell_runs_without_errors(executed: tuple[object, Path]) -> None:
    notebook, _ = executed
    outputs = [output for cell in _outputs(notebook) for output in cell]
    errors = [output for output in outputs if output.output_type == "error"]
    assert errors == []
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert [cell.execution_count for cell in code] == list(range(1, len(code) + 1))
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert f"{STEPS} steps per render" in text  # the parameter from the environment reached the notebook
    assert f"at step {STEPS}" in text


@pytest.mark.slow
def test_results_display_as_png_grids(executed: tuple[object, Path]) -> None:
    notebook, _ = executed
    shown = [o for cell in _outputs(notebook) for o in cell if o.output_type in ("execute_result", "display_data")]
    pngs = [Image.open(io.BytesIO(base64.b64decode(o.data["image/png"]))) for o in shown if "image/png" in o.data]
    # the cat, the ten classes, the channel, the 16 channels
    assert len(pngs) >= 4
    sizes = {png.size for png in pngs}
    assert (132, 132) in sizes  # one 32x32 image, enlarged 4 times, with a 2-pixel border
    captions = [o.data["text/html"] for o in shown if "<figcaption" in o.data.get("text/html", "")]
    assert len(captions) == 3  # the results shown as such (the ten classes are shown by their grid())
    assert all(f"{STEPS} steps" in caption for caption in captions)


@pytest.mark.slow
def test_the_animation_plays_inline_and_is_saved(executed: tuple[object, Path]) -> None:
    notebook, output = executed
    gifs = [o.data["image/gif"] for cell in _outputs(notebook) for o in cell if "image/gif" in o.get("data", {})]
    assert len(gifs) == 1
    inline = Image.open(io.BytesIO(base64.b64decode(gifs[0])))
    every = max(1, STEPS // 32)
    assert inline.n_frames == len(range(every, STEPS + 1, every))  # the last snapshot is the final step
    saved = Image.open(output / "horse.gif")
    assert (saved.n_frames, saved.size) == (inline.n_frames, inline.size)
    if importlib.util.find_spec("imageio_ffmpeg") or importlib.util.find_spec("av"):
        assert (output / "horse.mp4").stat().st_size > 0


@pytest.mark.skipif(importlib.util.find_spec("ipywidgets") is None, reason="widget progress bars need ipywidgets")
@pytest.mark.slow
def test_progress_bars_are_widgets(executed: tuple[object, Path]) -> None:
    notebook, _ = executed
    kinds = {kind for cell in _outputs(notebook) for o in cell for kind in o.get("data", {})}
    assert "application/vnd.jupyter.widget-view+json" in kinds
