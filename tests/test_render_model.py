"""A whole model in one job: every unit once, the same pictures with any number of processes (torchrun, gloo,
CPU), resumed after a kill, a finished job left alone, other settings refused, one index that a browser opens."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import featvis
from featvis.jobs import JobFolder, SettingsChangedError, chunk_seed, plan_chunks, select_layers
from featvis.model_index import write_model_index
from featvis.whole_model import EXIT_AFTER_UNITS, render_model

#: the model of the job, as a file the command line loads (path.py:make)
MODEL_SOURCE = textwrap.dedent(
    """
    import torch
    from torch import nn

    def make():
        torch.manual_seed(0)
        return nn.Sequential(
            nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 5, 3, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(5, 3),
        ).eval()
    """
)
#: the job's settings, as the command line gives them: 14 units in chunks of 2 and 3
SETTINGS = ["--steps", "6", "--size", "12", "--batch-size", "2", "--seed", "3"]


def make_model(tmp_path: Path) -> tuple[Path, nn.Module]:
    source = tmp_path / "tiny.py"
    source.write_text(MODEL_SOURCE)
    namespace: dict[str, Any] = {}
    exec(compile(MODEL_SOURCE, str(source), "exec"), namespace)
    return source, namespace["make"]()


def render_here(model: nn.Module, folder: Path, **kwargs: Any) -> Any:
    options = {"steps": 6, "size": 12, "batch_size": 2, "seed": 3, "progress": False, "model_name": "tiny"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return render_model(model, folder, **{**options, **kwargs})


def pictures(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.glob("layers/*/unit-*.png"))}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(
    source: Path, folder: Path, processes: int, env: dict[str, str], *extra: str
) -> subprocess.CompletedProcess:
    command = [
        sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={processes}",
        "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{free_port()}", *extra,
        "-m", "featvis", "render-model", f"{source}:make", "-o", str(folder), *SETTINGS,
    ]  # fmt: skip
    environment = {**os.environ, "OMP_NUM_THREADS": "1", **env}
    return subprocess.run(command, capture_output=True, text=True, env=environment, timeout=240)


def written_per_process(folder: Path) -> int:
    """Units written, summed over every process's log: each unit written once makes this the job's total."""
    text = "".join(p.read_text() for p in (folder / "logs").glob("rank-*.log"))
    return sum(int(n) for n in re.findall(r": (\d+) written in", text))


def test_one_process_renders_every_unit_once_and_a_rerun_does_nothing(tmp_path: Path) -> None:
    _, model = make_model(tmp_path)
    folder = tmp_path / "job"
    job = render_here(model, folder)
    assert (job.total, job.rendered, job.done, job.complete) == (14, 14, 14, True)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["layers"] == {"0": 6, "2": 5, "6": 3}
    assert manifest["settings"]["steps"] == 6 and manifest["settings"]["batch_size"] == 2
    record = json.loads((folder / "layers" / "2" / "unit-0003.json").read_text())
    assert record["layer"] == "2" and record["unit"] == 3 and record["chunk"] == [2, 3]
    assert record["seed"] == chunk_seed(3, "2", 2) and record["batch_index"] == 1
    assert record["steps"] == 6 and len(record["objective"]) == 6 and record["picture"] == "unit-0003.png"
    # the record's activation is the unit's mean activation on its final picture
    from PIL import Image

    pixels = torch.from_numpy(np.array(Image.open(folder / "layers" / "2" / "unit-0003.png"))).float()
    image = (pixels / 255).permute(2, 0, 1)[None]
    with torch.no_grad():
        expected = float(model[:3](image)[:, 3].mean())
    assert record["activation"] == pytest.approx(expected, abs=0.02)  # from the PNG's 8-bit colours
    assert written_per_process(folder) == 14
    units = [*folder.glob("layers/*/unit-*.png"), *folder.glob("layers/*/unit-*.json")]
    before = {p: p.stat().st_mtime_ns for p in units}
    again = render_here(model, folder)
    assert again.rendered == 0 and again.complete
    assert {p: p.stat().st_mtime_ns for p in units} == before  # nothing rendered or written again


def test_two_processes_under_torchrun_killed_and_restarted_give_the_one_process_pictures(tmp_path: Path) -> None:
    """Each worker exits after 3 units (as if killed); torchrun restarts the job, and each round resumes what
    is left, until all 14 units are done: each written once, each the picture of a one-process run."""
    source, model = make_model(tmp_path)
    alone = tmp_path / "alone"
    render_here(model, alone, model_name=f"{source}:make")
    shared = tmp_path / "shared"
    run = torchrun(source, shared, 2, {EXIT_AFTER_UNITS: "3"}, "--max-restarts=6")
    assert run.returncode == 0, run.stderr[-3000:]
    assert "14 of 14 units done" in run.stdout
    logs = "".join(p.read_text() for p in (shared / "logs").glob("rank-*.log"))
    assert logs.count(f"exiting after 3 units ({EXIT_AFTER_UNITS}=3)") >= 2  # it really was cut and resumed
    assert written_per_process(shared) == 14  # every unit written exactly once
    assert pictures(shared) == pictures(alone)  # bit for bit
    ranks = {json.loads(p.read_text())["rank"] for p in shared.glob("layers/*/unit-*.json")}
    assert ranks == {0, 1}
    assert (shared / "index.html").exists()


def test_a_rerun_with_other_settings_is_refused_and_says_what_differs(tmp_path: Path) -> None:
    _, model = make_model(tmp_path)
    folder = tmp_path / "job"
    render_here(model, folder, layers=["6"])
    with pytest.raises(SettingsChangedError) as refused:
        render_here(model, folder, layers=["6"], steps=8)
    message = str(refused.value)
    assert "steps: 6 in the folder, 8 now" in message and "Give a new output folder" in message
    with pytest.raises(SettingsChangedError, match="layers: "):
        render_here(model, folder, layers=["2", "6"])


def test_layers_are_chosen_by_name_or_pattern_and_a_pattern_that_matches_nothing_is_named() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Sequential(nn.Conv2d(4, 4, 3), nn.ReLU()))
    assert select_layers(model) == ["0", "2.0"]
    assert select_layers(model, ["2.*"]) == ["2.0"]
    assert select_layers(model, ["1"]) == ["1"]  # a name: any layer
    with pytest.raises(ValueError, match=r"no convolution or linear layer matches '3\.\*'"):
        select_layers(model, ["3.*"])


def test_the_plan_does_not_depend_on_the_processes() -> None:
    chunks = plan_chunks({"a": 5, "b": 2}, batch_size=2, seed=1)
    assert [(c.layer, c.units) for c in chunks] == [("a", (0, 1)), ("a", (2, 3)), ("a", (4,)), ("b", (0, 1))]
    assert len({c.seed for c in chunks}) == 4 and chunks[0].seed == chunk_seed(1, "a", 0)


def test_the_index_lists_every_unit_and_shows_units_not_done_as_empty_cells(tmp_path: Path) -> None:
    _, model = make_model(tmp_path)
    folder = tmp_path / "job"
    render_here(model, folder, index=False)
    (folder / "layers" / "2" / "unit-0004.json").unlink()  # not done
    write_model_index(folder)
    layer_page = (folder / "layers" / "2" / "index.html").read_text()
    assert layer_page.count('loading="lazy"') == 4 and layer_page.count("not done") == 1
    unit_page = folder / "layers" / "2" / "unit-0004.html"
    assert not unit_page.exists()
    last_of_layer = (folder / "layers" / "2" / "unit-0003.html").read_text()
    assert 'rel="next" href="../6/unit-0000.html"' in last_of_layer  # the next done unit, in the next layer
    assert JobFolder(folder).count_done() == 13


@pytest.mark.slow
def test_the_index_works_in_a_real_browser(browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    _, model = make_model(tmp_path)
    folder = tmp_path / "job"
    job = render_here(model, folder)
    browser.get(job.index.resolve().as_uri())
    layers = browser.find_elements(By.CSS_SELECTOR, "section.layer h2 a")
    assert [a.text for a in layers] == ["0", "2", "6"]
    layers[1].click()
    cells = browser.find_elements(By.CSS_SELECTOR, "figure.cell img.unit")
    assert len(cells) == 5
    browser.execute_script("window.scrollTo(0, document.body.scrollHeight)")
    script = "return Array.from(document.querySelectorAll('img.unit')).map(i => i.complete && i.naturalWidth)"
    WebDriverWait(browser, 10).until(lambda driver: driver.execute_script(script) == [12] * 5)

    def arrives(path: str) -> None:  # a navigation started by a script finishes on its own time
        WebDriverWait(browser, 10).until(lambda driver: driver.current_url.endswith(path))
        WebDriverWait(browser, 10).until(
            lambda driver: driver.execute_script("return document.readyState") == "complete"
        )

    cells[4].click()
    arrives("/layers/2/unit-0004.html")
    assert "unit 4" in browser.find_element(By.TAG_NAME, "h1").text
    browser.find_element(By.TAG_NAME, "body").send_keys(Keys.ARROW_RIGHT)
    arrives("/layers/6/unit-0000.html")
    browser.find_element(By.TAG_NAME, "body").send_keys(Keys.ARROW_LEFT)
    arrives("/layers/2/unit-0004.html")


def test_a_job_asked_for_examples_keeps_each_units_top_images(tmp_path: Path) -> None:
    _, model = make_model(tmp_path)
    photos = torch.rand(24, 3, 12, 12, generator=torch.Generator().manual_seed(3))
    folder = tmp_path / "job"
    render_here(model, folder, layers=["2"], examples=photos, examples_k=3)
    record = json.loads((folder / "layers" / "2" / "unit-0004.json").read_text())
    expected = featvis.top_activating(model, [photos], ("2", 4), k=3, progress=False)
    assert record["example_scores"] == pytest.approx(expected.scores.tolist(), abs=1e-5)
    assert (folder / "layers" / "2" / record["examples"]).exists()
    assert 'class="examples"' in (folder / "layers" / "2" / "unit-0004.html").read_text()
    assert json.loads((folder / "manifest.json").read_text())["settings"]["examples"] == 3


def test_the_command_line_takes_a_folder_of_examples(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from PIL import Image

    from featvis.cli import main

    source, _ = make_model(tmp_path)
    pictures = tmp_path / "pictures"
    pictures.mkdir()
    draw = np.random.default_rng(0)
    for number in range(5):
        Image.fromarray(draw.integers(0, 255, (20, 30, 3), dtype=np.uint8)).save(pictures / f"p{number}.png")
    (pictures / "notes.txt").write_text("not a picture")
    folder = tmp_path / "job"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = main(
            ["render-model", f"{source}:make", "-o", str(folder), *SETTINGS, "--layers", "6",
             "--examples", str(pictures), "--examples-k", "2", "--no-progress"]
        )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    record = json.loads((folder / "layers" / "6" / "unit-0000.json").read_text())
    assert len(record["example_scores"]) == 2 and (folder / "layers" / "6" / record["examples"]).exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["render-model", f"{source}:make", "-o", str(tmp_path / "job2"), "--examples", str(empty)]) == 2
    assert "no pictures" in capsys.readouterr().err


def test_a_job_asked_for_diverse_pictures_keeps_them_per_unit(tmp_path: Path) -> None:
    _, model = make_model(tmp_path)
    folder = tmp_path / "job"
    render_here(model, folder, layers=["2"], diverse=2, diversity_weight=5.0)
    record = json.loads((folder / "layers" / "2" / "unit-0001.json").read_text())
    strip = folder / "layers" / "2" / record["diverse"]
    assert strip.exists() and "Diverse pictures" in (folder / "layers" / "2" / "unit-0001.html").read_text()
    assert json.loads((folder / "manifest.json").read_text())["settings"]["diverse"] == [2, 5.0]
    with pytest.raises(ValueError, match="diverse must be 0"):
        render_here(model, tmp_path / "other", diverse=1)
