"""The featvis command: each MODEL form, `layers` against hand-known shapes, `render` and `gallery` outputs,
weights files, and every error as one line with its exit code and no traceback."""

from __future__ import annotations

import html.parser
import re
import runpy
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import featvis
from featvis.cli import CLIError, main, parse_channels
from featvis.commands import layer_table
from featvis.gallery import unit_activations
from featvis.model_loading import load_model

if TYPE_CHECKING:
    from conftest import ModelState

TINY_MODEL = '''
import torch
from torch import nn


class Tiny(nn.Module):
    """16x16 RGB -> 5 logits; `act` runs twice, `unused` never."""

    featvis_input_size = 16

    def __init__(self, classes=5):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.act = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(4, 6, 3)
        self.head = nn.Linear(6 * 6 * 6, classes)
        self.unused = nn.Linear(2, 2)

    def forward(self, x):
        x = self.pool(self.act(self.conv1(x)))
        x = self.act(self.conv2(x))
        return self.head(x.flatten(1))


def build():
    torch.manual_seed(0)
    return Tiny()


def build_wide():
    return Tiny(classes=7)


def not_a_model():
    return 42


def broken():
    raise RuntimeError("no GPU here")


NUMBER = 3
'''

# what the Tiny model's layers give for one 16x16 image, worked out by hand
TINY_LAYERS = [
    ("conv1", "Conv2d", "(1, 4, 16, 16)"),  # 3x3, padding 1: same size
    ("act", "ReLU", "(1, 4, 16, 16) (ran 2 times)"),  # first call: after conv1
    ("pool", "MaxPool2d", "(1, 4, 8, 8)"),  # halves
    ("conv2", "Conv2d", "(1, 6, 6, 6)"),  # 3x3, no padding: 8 - 2
    ("head", "Linear", "(1, 5)"),
    ("unused", "Linear", "not run"),
]


@pytest.fixture
def tiny(tmp_path: Path) -> str:
    path = tmp_path / "tiny_model.py"
    path.write_text(TINY_MODEL)
    return str(path)


def offline(monkeypatch: pytest.MonkeyPatch, hub: Path, error: str = "Network is unreachable") -> None:
    """Downloads fail as they do without a network, and torch.hub's folder is ``hub``."""

    def unreachable(*args: object, **kwargs: object) -> None:
        raise OSError(error)

    monkeypatch.setattr(torch.hub, "download_url_to_file", unreachable)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub))


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def table_rows(out: str) -> list[tuple[str, ...]]:
    lines = out.splitlines()
    dashes = next(i for i, line in enumerate(lines) if line.startswith("---"))
    assert re.split(r"\s{2,}", lines[dashes - 1].strip()) == ["name", "type", "output shape"]
    return [tuple(re.split(r"\s{2,}", line.strip())) for line in lines[dashes + 1 :]]


# ---- layers ------------------------------------------------------------------------------
def test_layers_of_a_factory_model_match_the_shapes_worked_out_by_hand(
    capsys: pytest.CaptureFixture[str], tiny: str
) -> None:
    code, out, err = run(capsys, "layers", f"{tiny}:build")
    assert (code, err) == (0, "")
    assert out.splitlines()[0] == f"# {tiny}:build: 6 layers, output shapes for one 16x16 image"
    assert table_rows(out) == TINY_LAYERS


def test_layers_at_another_size_and_a_model_that_fails_there(capsys: pytest.CaptureFixture[str], tiny: str) -> None:
    model = load_model(f"{tiny}:build")
    assert layer_table(model, size=(16, 16)) == TINY_LAYERS
    # at 20x20 the flattened features no longer fit the head: a runtime failure, exit 1, one line
    code, out, err = run(capsys, "layers", f"{tiny}:build", "--size", "20")
    assert code == 1 and out == ""
    assert err.startswith("featvis: error: the model's forward pass on one grey 20x20 image failed with RuntimeError")
    assert "(1x384 and 216x5)" in err  # torch's words: the flattened 6x8x8 features against the head's 216
    assert err.count("\n") == 1 and "Traceback" not in err


def test_layer_table_leaves_the_model_as_it_was(model_state: type[ModelState]) -> None:
    model = nn.Sequential(nn.Conv2d(3, 2, 3), nn.BatchNorm2d(2), nn.ReLU()).train()
    model[0].weight.requires_grad_(False)
    before = model_state(model)
    assert [row[2] for row in layer_table(model, size=5)] == ["(1, 2, 3, 3)"] * 3
    before.assert_unchanged()


def test_layers_of_the_trained_cifar_resnet(capsys: pytest.CaptureFixture[str], shared_weights: Path) -> None:
    code, out, err = run(capsys, "layers", "cifar10-resnet20", "--weights-dir", shared_weights, "--device", "cpu")
    assert (code, err) == (0, "")
    rows = {name: (kind, shape) for name, kind, shape in table_rows(out)}
    assert len(rows) == len(featvis.layer_names(featvis.models.cifar10_resnet20(pretrained=False)))
    assert rows["conv1"] == ("Conv2d", "(1, 16, 32, 32)")
    assert rows["layer2.0.shortcut"] == ("_ShortcutA", "(1, 32, 16, 16)")
    assert rows["layer3"] == ("Sequential", "(1, 64, 8, 8)")
    assert rows["linear"] == ("Linear", "(1, 10)")


def test_torchvision_models_warn_about_random_weights(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "layers", "torchvision:resnet18", "--size", "64")
    assert code == 0
    assert err.startswith("featvis: warning: torchvision:resnet18 has random weights") and err.count("\n") == 1
    rows = {name: shape for name, _, shape in table_rows(out)}
    # a 64x64 image: /2 (conv1), /2 (maxpool), then /2 at layers 2, 3 and 4
    assert rows["conv1"] == "(1, 64, 32, 32)" and rows["maxpool"] == "(1, 64, 16, 16)"
    assert rows["layer4"] == "(1, 512, 2, 2)" and rows["fc"] == "(1, 1000)"


# ---- weights -------------------------------------------------------------------------------
def test_weights_files_load_in_every_common_layout(tmp_path: Path, tiny: str) -> None:
    plain = {k: v for k, v in load_model(f"{tiny}:build").state_dict().items()}
    for key in plain:
        plain[key] = torch.randn_like(plain[key])
    layouts = {
        "plain.pt": plain,
        "checkpoint.pt": {"state_dict": plain, "epoch": 3},
        "parallel.pt": {f"module.{k}": v for k, v in plain.items()},
    }
    for name, content in layouts.items():
        torch.save(content, tmp_path / name)
        loaded = load_model(f"{tiny}:build", weights=str(tmp_path / name)).state_dict()
        assert loaded.keys() == plain.keys()
        for key, value in plain.items():
            assert torch.equal(loaded[key], value), (name, key)


def test_the_cifar_weights_file_itself_loads_with_weights(resnet20: nn.Module, shared_weights: Path) -> None:
    loaded = load_model("cifar10-resnet20", weights=str(shared_weights / "resnet20-12fca82f.th"))
    for key, value in resnet20.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_torchvision_weights_from_a_local_file(tmp_path: Path) -> None:
    import torchvision

    torch.manual_seed(1)

    reference = torchvision.models.get_model("squeezenet1_1", weights=None)
    torch.save(reference.state_dict(), tmp_path / "squeeze.pt")
    loaded = load_model("torchvision:squeezenet1_1", weights=str(tmp_path / "squeeze.pt"))
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in reference.state_dict().items())


# ---- render --------------------------------------------------------------------------------
def test_render_one_target_writes_one_image_of_the_models_size_that_excites_the_unit(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, resnet20: nn.Module, shared_weights: Path
) -> None:
    out_file = tmp_path / "one.png"
    code, out, err = run(
        capsys, "render", "cifar10-resnet20", "layer3:5", "-o", out_file, "--steps", 24,
        "--weights-dir", shared_weights, "--no-progress",
    )  # fmt: skip
    assert (code, err) == (0, "")
    assert out.startswith(f"wrote {out_file}: 1 image(s) of 32x32 (layer3:5), 24 steps")
    picture = Image.open(out_file)
    assert picture.size == (32, 32) and picture.mode == "RGB"
    rendered = torch.from_numpy(np.asarray(picture, dtype=np.float32) / 255).permute(2, 0, 1)[None]
    grey = torch.full_like(rendered, 0.5)
    on_render, on_grey = unit_activations(resnet20, "layer3", torch.cat([rendered, grey]), [5, 5])
    assert on_render > on_grey + 1.0, (on_render, on_grey)
    # the same command again gives the same picture (seed 0 by default)
    main(["render", "cifar10-resnet20", "layer3:5", "-o", str(tmp_path / "again.png"), "--steps", "24",
          "--weights-dir", str(shared_weights)])  # fmt: skip
    assert (tmp_path / "again.png").read_bytes() == out_file.read_bytes()


def test_render_several_targets_and_copies(capsys: pytest.CaptureFixture[str], tmp_path: Path, tiny: str) -> None:
    code, out, err = run(
        capsys, "render", f"{tiny}:build", "conv2:1", "conv1:0", "--class", "4", "--batch", 2,
        "--steps", 3, "--separate", "-o", tmp_path / "unit.png",
    )  # fmt: skip
    assert (code, err) == (0, "")
    files = sorted(p.name for p in tmp_path.glob("unit-*.png"))
    assert files == [f"unit-{i}.png" for i in range(6)]  # 3 targets x 2 copies
    assert {Image.open(tmp_path / f).size for f in files} == {(16, 16)}
    assert "(conv2:1, conv1:0, class 4)" in out
    # the copies of one target start from different noise
    first, second = (np.asarray(Image.open(tmp_path / f"unit-{i}.png")) for i in (0, 1))
    assert not np.array_equal(first, second)
    # without --separate: one grid, a row per target (2 copies each), each image enlarged 4 times
    code, out, err = run(
        capsys, "render", f"{tiny}:build", "conv2:1", "conv1:0", "--batch", 2, "--steps", 2, "-o", tmp_path / "grid.png"
    )
    assert code == 0
    width, height = Image.open(tmp_path / "grid.png").size
    assert width == 2 + 2 * (16 * 4 + 2)  # two 64-pixel images per row, 2 pixels of padding around each
    assert 2 + 2 * (16 * 4 + 2) < height < 2 + 2 * (16 * 4 + 2 + 30)  # two rows, each with a caption


def test_render_class_names_for_the_cifar_models(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, shared_weights: Path
) -> None:
    code, out, err = run(
        capsys, "render", "cifar10-resnet20", "--class", "frog", "--steps", 2, "--weights-dir", shared_weights,
        "-o", tmp_path / "frog.png",
    )  # fmt: skip
    assert (code, err) == (0, "")
    assert "(class 6 (frog))" in out


# ---- gallery -------------------------------------------------------------------------------
class Links(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.sources: list[str] = []
        self.title = ""
        self._title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag in ("img", "a") and (values.get("src") or values.get("href")):
            self.sources.append(values.get("src") or values.get("href") or "")
        self._title = tag == "title" and not self.title  # the page's title, not an SVG's

    def handle_data(self, data: str) -> None:
        if self._title:
            self.title += data
            self._title = False


def test_gallery_writes_the_channels_asked_for_and_a_page_that_references_exactly_them(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, tiny: str
) -> None:
    folder = tmp_path / "gallery"
    code, out, err = run(
        capsys, "gallery", f"{tiny}:build", "conv2", "-o", folder, "--channels", "0-2,5", "--steps", 3,
        "--batch-size", 3, "--seed", 4,
    )  # fmt: skip
    assert (code, err) == (0, "")
    names = [f"unit-00{c}.png" for c in (0, 1, 2, 5)]
    assert sorted(p.name for p in folder.iterdir()) == sorted([*names, "index.html"])
    assert {Image.open(folder / n).size for n in names} == {(16, 16)}
    page = Links()
    page.feed((folder / "index.html").read_text(encoding="utf-8"))
    assert set(page.sources) == set(names)
    assert page.title == f"featvis gallery: {tiny}:build · conv2 · 3 steps"
    assert out.startswith(f"wrote {folder / 'index.html'} and 4 unit PNGs") and "file://" in out


def test_parse_channels() -> None:
    assert parse_channels("3") == [3]
    assert parse_channels("0-2, 7,9-10") == [0, 1, 2, 7, 9, 10]


# ---- errors --------------------------------------------------------------------------------
ERRORS = [
    # (arguments, first words of the message, exit code); {tiny} is the model file, {tmp} tmp_path
    (["layers", "alexnet"], "unknown model 'alexnet': give torchvision:NAME", 2),
    (["layers", "torchvision:resnet1800"], "torchvision has no model 'resnet1800' (did you mean resnet18", 2),
    (["layers", "{tmp}/absent.py:build"], "model file not found: {tmp}/absent.py", 2),
    (["layers", "{tiny}"], "name the function that builds the model: {tiny}:FACTORY", 2),
    (["layers", "{tiny}:biuld"], "{tiny} has no 'biuld' (did you mean build", 2),
    (["layers", "{tiny}:not_a_model"], "not_a_model() in {tiny} returned int, not a torch.nn.Module", 2),
    (["layers", "{tiny}:NUMBER"], "NUMBER in {tiny} is a int, not a function or class", 2),
    (["layers", "{tiny}:broken"], "broken() in {tiny} failed: RuntimeError: no GPU here", 1),
    (["layers", "{tmp}/bad_import.py:build"], "importing {tmp}/bad_import.py failed: ImportError: needs timm", 1),
    (["render", "{tiny}:build", "conv9:1", "-o", "{tmp}/x.png"], "unknown layer 'conv9' in Tiny. Closest names:", 2),
    (["render", "{tiny}:build", "conv2", "-o", "{tmp}/x.png"], "an objective string is 'layer:channel'", 2),
    (["render", "{tiny}:build", "conv2:9", "-o", "{tmp}/x.png"], "channel 9 is out of range for layer 'conv2'", 2),
    (["render", "{tiny}:build", "-o", "{tmp}/x.png"], "give at least one TARGET (layer:channel", 2),
    (["render", "{tiny}:build", "--class", "frog", "-o", "{tmp}/x.png"], "--class takes a class number", 2),
    (["render", "{tiny}:build", "conv2:1", "-o", "{tmp}/x.xyz"], "cannot tell the image format of", 2),
    (["render", "{tiny}:build", "conv2:1"], "the following arguments are required: -o/--output", 2),
    (["render", "{tiny}:build", "conv2:1", "-o", "x.png", "--steps", "0"], "argument --steps: expected a whole", 2),
    (["gallery", "{tiny}:build", "nolayer", "-o", "{tmp}/g"], "unknown layer 'nolayer' in Tiny.", 2),
    (["gallery", "{tiny}:build", "conv2", "-o", "{tmp}/g", "--channels", "2-x"], "argument --channels: '2-x' is", 2),
    (["layers", "{tiny}:build", "--weights", "{tmp}/absent.pt"], "weights file not found: {tmp}/absent.pt", 2),
    (["layers", "{tiny}:build", "--weights", "{tmp}/wide.pt"], "the weights in wide.pt do not fit {tiny}:build:", 2),
    (["layers", "{tiny}:build", "--weights", "{tmp}/short.pt"], "the weights in short.pt do not fit", 2),
    (["layers", "{tiny}:build", "--weights", "{tmp}/list.pt"], "{tmp}/list.pt holds list, not a state dict", 2),
    (["layers", "{tiny}:build", "--weights", "{tiny}"], "could not load {tiny} as PyTorch weights", 2),
    (["layers", "{tiny}:build", "--weights-dir", "{tmp}"], "--weights-dir is for featvis's own models (", 2),
    (["layers", "cifar10-resnet20", "--weights-dir", "{tmp}"], "{tmp} has no resnet20-12fca82f.th", 2),
    (["layers", "cifar10-resnet20", "--device", "tpu9"], "unknown device 'tpu9'", 2),
]


@pytest.fixture
def error_files(tmp_path: Path, tiny: str) -> dict[str, str]:
    (tmp_path / "bad_import.py").write_text("raise ImportError('needs timm')\n")
    torch.save(load_model(f"{tiny}:build_wide").state_dict(), tmp_path / "wide.pt")
    state = load_model(f"{tiny}:build").state_dict()
    del state["head.bias"]
    torch.save(state, tmp_path / "short.pt")
    torch.save([1, 2], tmp_path / "list.pt")
    return {"tiny": tiny, "tmp": str(tmp_path)}


@pytest.mark.parametrize(("arguments", "words", "status"), ERRORS, ids=[" ".join(e[0][:3]) for e in ERRORS])
def test_errors_are_one_line_with_an_exit_code_and_no_traceback(
    capsys: pytest.CaptureFixture[str], error_files: dict[str, str], arguments: list[str], words: str, status: int
) -> None:
    code, _, err = run(capsys, *(a.format(**error_files) for a in arguments))
    assert err.startswith("featvis: error: " + words.format(**error_files)), err
    assert code == status
    assert err.count("\n") == 1 and "Traceback" not in err


def test_the_mismatch_message_names_what_differs(
    capsys: pytest.CaptureFixture[str], error_files: dict[str, str]
) -> None:
    tiny, tmp = error_files["tiny"], error_files["tmp"]
    _, _, err = run(capsys, "layers", f"{tiny}:build", "--weights", f"{tmp}/wide.pt")
    assert "shape of head.weight is (7, 216) in the file, (5, 216) in the model" in err
    _, _, err = run(capsys, "layers", f"{tiny}:build", "--weights", f"{tmp}/short.pt")
    assert "1 key(s) missing from the file (head.bias)" in err


def test_a_failed_download_is_a_runtime_error_that_says_what_to_do(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    offline(monkeypatch, tmp_path / "hub")
    code, _, err = run(capsys, "layers", "cifar10-resnet20")
    assert code == 1 and err.count("\n") == 1
    assert err.startswith("featvis: error: could not download the weights resnet20-12fca82f.th")
    # the advice is the command line's, not Python's
    assert "(or in a folder named by --weights-dir DIR; or give the file as --weights FILE)" in err
    assert "model_dir" not in err
    # torchvision's own weights: the same, through torch.hub
    code, _, err = run(capsys, "layers", "torchvision:resnet18", "--weights", "DEFAULT")
    assert code == 1 and err.startswith("featvis: error: could not get torchvision's weights for resnet18")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_asking_for_cuda_without_it(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "layers", "cifar10-resnet20", "--random-weights", "--device", "cuda")
    assert (code, err) == (2, "featvis: error: --device cuda: CUDA is not available here; use --device cpu (or auto)\n")


def test_debug_shows_the_exception(tiny: str) -> None:
    with pytest.raises(CLIError, match="not_a_model"):
        main(["layers", f"{tiny}:not_a_model", "--debug"])


# ---- the real console script ------------------------------------------------------------------
def featvis_command() -> list[str]:
    beside_python = Path(sys.executable).with_name("featvis")
    if beside_python.exists():
        return [str(beside_python)]
    found = shutil.which("featvis")
    if found is None:
        pytest.skip("the featvis console script is not installed (pip install -e .)")
    return [found]


@pytest.mark.slow
def test_the_console_script_writes_a_gallery_and_python_m_reports_an_error(
    tmp_path: Path, shared_weights: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "layer3"
    done = subprocess.run(
        [*featvis_command(), "gallery", "cifar10-resnet20", "layer3", "--channels", "0-3", "--steps", "2",
         "--weights-dir", str(shared_weights), "-o", str(folder)],
        capture_output=True, text=True, timeout=120, env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"wrote {folder / 'index.html'} and 4 unit PNGs (cifar10-resnet20, layer3, 2 steps)")
    assert sorted(p.name for p in folder.glob("*.png")) == [f"unit-00{i}.png" for i in range(4)]
    # `python -m featvis`, in this process (a second interpreter would spend seconds importing torch;
    # featvis/__main__.py's own example runs one)
    argv = ["featvis", "render", "cifar10-resnet20", "layer9:1", "-o", str(tmp_path / "x.png"), "--random-weights"]
    monkeypatch.setattr(sys, "argv", argv)
    monkeypatch.delitem(sys.modules, "featvis.__main__", raising=False)  # run afresh, as `python -m` does
    with pytest.raises(SystemExit) as exited:
        runpy.run_module("featvis", run_name="__main__", alter_sys=True)
    assert exited.value.code == 2
    stderr = capsys.readouterr().err
    assert stderr.startswith("featvis: error: unknown layer 'layer9' in CifarResNet. Closest names: 'layer3'")
    assert stderr.count("\n") == 1 and "Traceback" not in stderr


def test_help_and_usage_errors_answer_without_importing_torch() -> None:
    code = (
        "import sys, contextlib, io\n"
        "from featvis.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
        "    codes = [main(['--help']), main(['render', '--help'])]\n"
        "with contextlib.redirect_stderr(io.StringIO()):\n"
        "    codes.append(main(['render', 'cifar10-resnet20', 'layer3:1', '--steps', 'zero', '-o', 'x.png']))\n"
        "print(codes, 'usage: featvis' in out.getvalue(), 'torch' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["[0,", "0,", "2]", "True", "False"], done.stdout + done.stderr


def test_errors_give_the_command_lines_advice(capsys: pytest.CaptureFixture[str], tiny: str) -> None:
    code, _, err = run(capsys, "render", f"{tiny}:build", "conv9:1", "-o", "x.png")
    assert code == 2
    assert f"`featvis layers {tiny}:build` lists all" in err and "layer_names" not in err
    from featvis.cli import for_the_command_line

    efficientnet = "are not installed: pip install x, or put the file in a folder and pass model_dir= (looked in a)"
    assert "and name the folder with --weights-dir DIR (looked in a)" in for_the_command_line(efficientnet, "m")


def test_torchvision_weights_offline_is_one_line_without_torchs_download_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    offline(monkeypatch, tmp_path / "hub")
    code, _, err = run(capsys, "layers", "torchvision:resnet18", "--weights", "DEFAULT")
    assert code == 1 and err.count("\n") == 1, err
    assert "Downloading" not in err
    assert err.startswith("featvis: error: could not get torchvision's weights for resnet18 (Network is unreachable)")
    assert f"put it in {tmp_path / 'hub' / 'checkpoints'}" in err


def test_a_random_googlenet_gets_featvis_warning_only(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "layers", "torchvision:googlenet", "--size", "64")
    assert code == 0
    assert err.splitlines() == [
        "featvis: warning: torchvision:googlenet has random weights (give --weights FILE for a local state dict, "
        "or --weights DEFAULT to download torchvision's)"
    ]


def test_the_error_examples_in_the_docs_are_what_the_command_prints(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shared_weights: Path
) -> None:
    """Each ``$ featvis ...`` line of docs/cli.md's Errors section, run here, prints the line under it."""
    page = (Path(__file__).resolve().parents[1] / "docs" / "cli.md").read_text()
    block = page.split("## Errors", 1)[1].split("```", 2)[1]
    pairs = re.findall(r"^\$ (featvis .+?)\n(featvis: error: .+)$", block, re.MULTILINE)
    assert len(pairs) >= 10
    monkeypatch.chdir(tmp_path)
    (tmp_path / "my_model.py").write_text(TINY_MODEL)
    (tmp_path / "model.py").write_text(TINY_MODEL)
    torch.save(Tiny_state_dict(), tmp_path / "mnist.pt")

    offline(monkeypatch, Path("/root/.cache/torch/hub"), "<urlopen error [Errno -2] Name or service not known>")
    for command, expected in pairs:
        arguments = shlex.split(command.split("#")[0].replace("../shared/models/cifar10", str(shared_weights)))[1:]
        _, _, err = run(capsys, *arguments)
        assert err.strip() == expected, f"$ {command}"


def Tiny_state_dict() -> dict[str, torch.Tensor]:
    """The state dict of an MNIST-like model that fits none of featvis's models (two conv layers and a head)."""
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4, 2), nn.ReLU(), nn.Linear(2, 2))
    return model.state_dict()


def test_the_render_example_in_the_docs_prints_what_the_page_shows(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shared_weights: Path
) -> None:
    """docs/cli.md's ``featvis render`` example, run here (128 steps, seeded), prints its line; the final
    objective to within 2% (other CPUs round differently), and twice the same picture, byte for byte."""
    page = (Path(__file__).resolve().parents[1] / "docs" / "cli.md").read_text()
    command, shown = re.search(r"^\$ (featvis render .+?\\\n.+?)\n(wrote .+)$", page, re.MULTILINE).groups()
    arguments = shlex.split(command.replace("\\\n", " ").replace("../shared/models/cifar10", str(shared_weights)))
    monkeypatch.chdir(tmp_path)
    pictures = []
    for _ in range(2):
        code, out, _ = run(capsys, *arguments[1:])
        pictures.append((tmp_path / "render.png").read_bytes())
    number = r"final objective ([\d.]+)"
    assert code == 0 and re.sub(number, "", out.strip()) == re.sub(number, "", shown)
    assert float(re.search(number, out)[1]) == pytest.approx(float(re.search(number, shown)[1]), rel=0.02)
    assert pictures[0] == pictures[1]
