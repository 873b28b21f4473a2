"""The documentation: every public name has a runnable example, the site's pages exist, the API
pages read every docstring as written (the griffe extension), the gallery shows every picture, and
the code on the written pages runs.

CI builds the site with ``mkdocs build --strict`` as a step of its own. The griffe tests need griffe
(``pip install ".[docs]"``) and are skipped with the reason otherwise.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import pkgutil
import re
import types
from pathlib import Path
from typing import Any

import pytest
import torch

import featvis

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
#: modules that are entry points, not an API
NOT_API = {"featvis.__main__"}
#: the pages whose code blocks run here, top to bottom, each in a namespace of its own
PAGES_WITH_CODE = [
    "getting-started.md",
    "concepts/index.md",
    "concepts/parameterisations.md",
    "concepts/transforms.md",
    "concepts/preprocessing.md",
    "concepts/hooks.md",
    "concepts/objectives.md",
    "concepts/render-loop.md",
    "custom-objective.md",
    "own-model.md",
    "architecture.md",
]
#: code blocks that need a download are not run (they would fetch ImageNet weights)
NEEDS_DOWNLOAD = ('weights="DEFAULT"',)
#: every render in the documentation's code runs at most this many steps here
STEPS_HERE = 4

_EXAMPLE_HEADING = re.compile(r"^\s*Examples?:\s*$", re.MULTILINE)


# ---- every public name has an example -------------------------------------------------
def has_example(doc: str | None) -> bool:
    """Whether a docstring has an ``Example:`` (or ``Examples:``) section with a ``>>>`` line in it."""
    if not doc:
        return False
    heading = _EXAMPLE_HEADING.search(doc)
    return heading is not None and ">>>" in doc[heading.end() :]


def _own_methods(cls: type) -> list[tuple[str, Any]]:
    """Public methods a featvis class defines itself, without those that override a method of a
    base class from outside featvis (``forward``, ``extra_repr``, ``step``: torch documents what
    they do). Properties are attributes, not methods."""
    methods = []
    for name, member in vars(cls).items():
        if name.startswith("_"):
            continue
        function = member.__func__ if isinstance(member, (staticmethod, classmethod)) else member
        if isinstance(function, property) or not inspect.isfunction(function):
            continue
        overrides = any(name in vars(base) for base in cls.__mro__[1:] if not base.__module__.startswith("featvis"))
        if not overrides:
            methods.append((name, function))
    return methods


def names_without_example(module: types.ModuleType) -> list[str]:
    """The module, its ``__all__`` functions and classes defined in featvis, and their own public
    methods, whose docstrings have no example."""
    missing = [] if has_example(module.__doc__) else [module.__name__]
    for name in getattr(module, "__all__", []):
        obj = getattr(module, name)
        if inspect.ismodule(obj) or not (inspect.isclass(obj) or inspect.isfunction(obj)):
            continue  # modules are checked on their own; constants and type aliases have no examples
        if not getattr(obj, "__module__", "").startswith("featvis"):
            continue
        if not has_example(obj.__doc__):
            missing.append(f"{module.__name__}.{name}")
        if inspect.isclass(obj):
            missing += [
                f"{module.__name__}.{name}.{method}"
                for method, function in _own_methods(obj)
                if not has_example(function.__doc__)
            ]
    return missing


def featvis_modules() -> list[types.ModuleType]:
    found = [featvis]
    for info in pkgutil.iter_modules(featvis.__path__, prefix="featvis."):
        if info.name not in NOT_API:
            found.append(importlib.import_module(info.name))
    return found


def test_every_public_name_has_an_example() -> None:
    missing = [name for module in featvis_modules() for name in names_without_example(module)]
    assert missing == [], f"these public names have no 'Example:' section with a >>> line: {missing}"


def test_the_example_check_finds_a_name_without_one() -> None:
    module = types.ModuleType("featvis.made_up", '"""A module.\n\nExample:\n    >>> 1\n    1\n"""')
    exec(
        "class Thing:\n"
        "    '''A thing.\n\n    Example:\n        >>> Thing().size()\n        1\n    '''\n"
        "    def size(self):\n        '''Its size.\n\n        Example:\n            >>> 1\n            1\n        '''\n"
        "        return 1\n"
        "    def weight(self):\n        '''Its weight, with no example.'''\n"
        "def documented():\n    '''Example:\n        >>> documented()\n    '''\n"
        "def undocumented():\n    '''Nothing runnable.\n\n    Example: none\n    '''\n"
        "def bare():\n    pass\n",
        module.__dict__,
    )
    for name in ("Thing", "documented", "undocumented", "bare"):
        getattr(module, name).__module__ = "featvis.made_up"
    module.__all__ = ["Thing", "bare", "documented", "undocumented"]
    assert names_without_example(module) == [
        "featvis.made_up.Thing.weight",
        "featvis.made_up.bare",
        "featvis.made_up.undocumented",
    ]
    module.__doc__ = "No example."
    assert names_without_example(module)[0] == "featvis.made_up"


# ---- the site ---------------------------------------------------------------------------
def _nav_pages() -> list[str]:
    """The Markdown files named in mkdocs.yml's nav (read as text: no YAML parser needed)."""
    text = (ROOT / "mkdocs.yml").read_text()
    nav = text[text.index("\nnav:") :]
    return re.findall(r":\s*([\w./-]+\.md)\s*$", nav, re.MULTILINE)


def test_every_page_in_the_nav_exists() -> None:
    pages = _nav_pages()
    assert "index.md" in pages and "api/render.md" in pages and len(pages) > 30
    missing = [page for page in pages if not (DOCS / page).is_file()]
    assert missing == [], f"mkdocs.yml's nav names pages that docs/ does not have: {missing}"


def test_every_module_has_an_api_page() -> None:
    pages = {path.read_text().split("::: ", 1)[-1].split()[0] for path in (DOCS / "api").glob("*.md")}
    modules = {module.__name__ for module in featvis_modules()}
    assert modules - pages == set(), "add docs/api/<module>.md (with '::: featvis.<module>') and a nav entry"


def test_the_gallery_shows_every_picture() -> None:
    gallery = (DOCS / "gallery.md").read_text()
    shown = set(re.findall(r"\]\(images/([\w.-]+\.png)\)", gallery))
    pictures = {path.name for path in (DOCS / "images").glob("*.png")}
    assert pictures - shown == set(), "the gallery leaves out these pictures of docs/images"
    assert shown - pictures == set(), "the gallery shows pictures that docs/images does not have"


# The strict build itself (`mkdocs build --strict`) is a step of CI (.ci/run) of its own: it takes
# longer than this file may. What the API pages rely on, featvis's griffe extension, is tested here.
_needs_griffe = pytest.mark.skipif(
    importlib.util.find_spec("griffe") is None, reason='the API pages need griffe: pip install ".[docs]"'
)


def _griffe_extension() -> types.ModuleType:
    """docs/_griffe/featvis_docstrings.py, imported from its file as mkdocstrings does."""
    spec = importlib.util.spec_from_file_location("featvis_docstrings", DOCS / "_griffe" / "featvis_docstrings.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def griffe_featvis() -> Any:
    """featvis as mkdocstrings reads it: griffe's static view, with the extension."""
    import griffe

    extension = griffe.load_extensions(str(DOCS / "_griffe" / "featvis_docstrings.py"))
    return griffe.load("featvis", search_paths=[str(ROOT / "src")], extensions=extension, docstring_parser="google")


@_needs_griffe
def test_the_api_pages_see_examples_links_and_every_argument(griffe_featvis: Any) -> None:
    docstrings, stack = [], [griffe_featvis]
    while stack:
        obj = stack.pop()
        docstrings += [(obj.path, obj.docstring.value)] if obj.docstring is not None else []
        stack.extend(member for member in obj.members.values() if not member.is_alias)
    assert len(docstrings) > 100
    assert [path for path, text in docstrings if re.search(r":\w+:`", text)] == [], "a Sphinx role is left as written"
    assert [path for path, text in docstrings if re.search(r"^\s*Example:\s*$", text, re.MULTILINE)] == []
    render_vis = griffe_featvis["render.render_vis"].docstring
    assert [section.kind.value for section in render_vis.parsed][-1] == "examples"
    save_gif = griffe_featvis["animation.save_gif"].docstring
    (arguments,) = [section for section in save_gif.parsed if section.kind.value == "parameters"]
    # the grid's options are one keyword bundle, documented once, on GridOptions
    assert [argument.name for argument in arguments.value] == [
        *("result", "path", "fps", "loop", "hold_last", "step_caption", "**grid_options"),
    ]
    assert "[`GridOptions`][featvis.grid.GridOptions]" in save_gif.value
    # made at run time: griffe's static reading alone sees no docstring
    factory = griffe_featvis["models.cifar10_resnet20"].docstring
    assert factory is not None
    assert factory.value.replace("Examples:", "Example:") == inspect.cleandoc(featvis.models.cifar10_resnet20.__doc__)


@_needs_griffe
def test_the_griffe_extension_rewrites_a_made_up_docstring() -> None:
    import griffe

    source = '''
def shown():
    """Shown."""

def _hidden():
    """Hidden."""

def f(a, b, c):
    """Uses :func:`shown`, :func:`~mod._hidden` and :class:`int`.

    Args:
        a, b: two of them,
            on two lines.
        c: the third.

    Example:
        >>> 1
        1
    """
'''
    module = griffe.visit("mod", filepath=Path("mod.py"), code=source)
    function = module["f"]
    kinds = [section.kind.value for section in function.docstring.parse("google")]
    assert kinds != ["text", "parameters", "examples"]  # griffe alone does not read them so
    collection = {obj.path: obj for obj in [module, *module.members.values()]}
    _griffe_extension()._rewrite(function, collection)
    text = function.docstring.value
    assert text.startswith("Uses [`shown`][mod.shown], `_hidden` and `int`.")
    assert "    a: two of them,\n        on two lines.\n    b: two of them,\n        on two lines.\n" in text
    sections = function.docstring.parse("google")
    assert [section.kind.value for section in sections] == ["text", "parameters", "examples"]
    assert [(argument.name, argument.description) for argument in sections[1].value] == [
        ("a", "two of them,\non two lines."),
        ("b", "two of them,\non two lines."),
        ("c", "the third."),
    ]


# ---- the code on the pages runs -----------------------------------------------------------
_CODE_BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)
_ERROR_COMMENT = re.compile(r"^# (?P<kind>\w+Error): (?P<message>.+)$", re.MULTILINE)


@pytest.fixture
def short_renders(monkeypatch: pytest.MonkeyPatch) -> None:
    """render_vis and render_channels run at most STEPS_HERE steps, without progress bars."""
    from featvis import render

    original = render.render_vis

    def short(*args: Any, steps: int = 256, thresholds: Any = None, **kwargs: Any) -> Any:
        steps_here = min(steps, STEPS_HERE)
        if thresholds is not None:
            thresholds = sorted({min(t, steps_here) for t in thresholds})
        kwargs["progress"] = False
        return original(*args, steps=steps_here, thresholds=thresholds, **kwargs)

    monkeypatch.setattr(render, "render_vis", short)
    monkeypatch.setattr(featvis, "render_vis", short)


@pytest.mark.parametrize("page", PAGES_WITH_CODE)
def test_the_code_on_the_page_runs(
    page: str, hub_cache: Path, short_renders: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each ```python block runs after the ones above it; a block whose comment shows an error
    (``# ValueError: unknown layer ...``) must raise that error, with that message."""
    monkeypatch.chdir(tmp_path)  # the pages save PNG files
    blocks = _CODE_BLOCK.findall((DOCS / page).read_text())
    assert blocks, f"{page} has no Python code"
    namespace: dict[str, Any] = {"__name__": "docs_page"}
    with torch.random.fork_rng():
        for block in blocks:
            if any(marker in block for marker in NEEDS_DOWNLOAD):
                continue
            shown = _ERROR_COMMENT.search(block)
            if shown is None:
                exec(compile(block, f"{page}", "exec"), namespace)
                continue
            with pytest.raises(Exception) as raised:
                exec(compile(block, f"{page}", "exec"), namespace)
            assert type(raised.value).__name__ == shown["kind"]
            assert str(raised.value).startswith(shown["message"].strip()), (str(raised.value), shown["message"])


def test_the_pages_show_what_the_code_gives(resnet20: torch.nn.Module) -> None:
    """The outputs written as comments on the pages are what the code returns (a few of them)."""
    names = featvis.layer_names(resnet20)
    hooks_page = (DOCS / "concepts" / "hooks.md").read_text()
    assert f"names[:5]         # {names[:5]}" in hooks_page
    assert f"names[-3:]        # {names[-3:]}" in hooks_page
    assert f"lists all {len(names)} valid names" in hooks_page
    transforms_page = (DOCS / "concepts" / "transforms.md").read_text()
    shown = "\n".join("# " + line for line in repr(featvis.transforms.standard()).splitlines())
    assert shown in transforms_page
    preprocessing_page = (DOCS / "concepts" / "preprocessing.md").read_text()
    assert f"# {featvis.models.default_preprocess(resnet20)!r}" in preprocessing_page
    assert f"# {resnet20.featvis_normalization!r}" in preprocessing_page


def test_the_hand_written_loop_raises_its_channel(hub_cache: Path) -> None:
    """The loop written out in concepts/index.md does what the page says when pasted: channel 5 of
    ``layer3`` from 0 to several units in 16 steps (it stayed at 0 before redirected ReLU was in it)."""
    block = _CODE_BLOCK.findall((DOCS / "concepts" / "index.md").read_text())[0]
    assert "for step in range(16)" in block
    namespace: dict[str, Any] = {"__name__": "docs_page"}
    with torch.random.fork_rng():
        exec(compile(block, "concepts/index.md", "exec"), namespace)
    loss = float(namespace["loss"].detach())
    assert loss < -3, loss
    assert all(p.requires_grad for p in namespace["model"].parameters())
