"""A griffe extension that lets mkdocstrings render featvis's docstrings as they are written.

featvis's docstrings follow the Google style, with habits that griffe's static reading does not
understand, and that would be many edits across every module to change:

- the example section is headed ``Example:`` (singular); griffe's Google parser only knows
  ``Examples:`` and would otherwise show the ``>>>`` lines as nested block quotes;
- cross-references are Sphinx roles (``:class:`Objective```, ``:func:`~featvis.render.render_vis```),
  which Markdown shows literally;
- arguments that share one description are listed on one line
  (``batch, channels, height, width: the shape of the image batch.``); griffe would take the whole
  line for one unknown parameter;
- the CIFAR-10 model factories (``featvis.models.cifar10_resnet20`` ...) are made by a function
  and get their docstrings at run time.

The extension takes those run-time docstrings from the imported module, and rewrites the others
before they are parsed: ``Example:`` becomes ``Examples:``, a role becomes a link to the named
object when it is shown in the API pages (else inline code), and a shared line becomes one entry
per argument. The source files are not changed; ``tests/test_docs.py`` checks each rewrite.
"""

from __future__ import annotations

import importlib
import inspect
import re
from typing import Any

import griffe

_EXAMPLE_HEADING = re.compile(r"^(?P<indent>\s*)Example:\s*$", re.MULTILINE)
_ARGS_HEADING = re.compile(r"^(?P<indent>\s*)(?:Args|Arguments|Parameters):\s*$")
_SHARED_ITEM = re.compile(r"^(?P<indent>\s+)(?P<names>\w+(?:,\s*\w+)+):(?P<rest>.*)$")
_ROLE = re.compile(r":(?:class|func|meth|attr|data|mod|obj|exc|const):`(?P<tilde>~?)(?P<target>[^`]+)`")


def _candidates(obj: griffe.Object, target: str) -> list[str]:
    """Full paths the (possibly relative) ``target`` may stand for, seen from ``obj``."""
    target = target.rstrip("()")
    found = [target]
    scope: griffe.Object | None = obj
    while scope is not None:
        found.append(f"{scope.path}.{target}")
        scope = scope.parent
    return found


def _documented(collection: Any, path: str) -> griffe.Object | None:
    """The object at ``path`` if it is shown in the API pages (public and with a docstring)."""
    if any(part.startswith("_") for part in path.split(".")):
        return None
    try:
        found = collection[path]
    except (KeyError, ValueError, griffe.AliasResolutionError, griffe.CyclicAliasError):
        return None
    try:
        target = found.final_target if found.is_alias else found
    except (griffe.AliasResolutionError, griffe.CyclicAliasError):
        return None
    return target if target.docstring is not None else None


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _split_shared_arguments(text: str) -> str:
    """In ``Args:`` sections, turn ``a, b: description`` into one ``a:`` and one ``b:`` entry."""
    lines = text.splitlines()
    out: list[str] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        out.append(line)
        index += 1
        heading = _ARGS_HEADING.match(line)
        if heading is None:
            continue
        section_indent = len(heading["indent"])
        item_indent: int | None = None
        while index < len(lines) and (not lines[index].strip() or _indent(lines[index]) > section_indent):
            line = lines[index]
            if line.strip() and item_indent is None:
                item_indent = _indent(line)
            shared = _SHARED_ITEM.match(line) if line.strip() and _indent(line) == item_indent else None
            if shared is None:
                out.append(line)
                index += 1
                continue
            block = [shared["rest"]]  # the description, and its continuation lines
            index += 1
            while index < len(lines) and lines[index].strip() and _indent(lines[index]) > item_indent:
                block.append("\n" + lines[index])
                index += 1
            for name in re.split(r",\s*", shared["names"]):
                out.append(f"{shared['indent']}{name}:{''.join(block)}")
    return "\n".join(out)


def _rewrite(obj: griffe.Object, collection: Any) -> None:
    docstring = obj.docstring
    if docstring is None:
        return

    def link(match: re.Match[str]) -> str:
        target = match["target"]
        shown = target.rsplit(".", 1)[-1] if match["tilde"] else target
        for path in _candidates(obj, target):
            found = _documented(collection, path)
            if found is not None:
                return f"[`{shown}`][{found.path}]"
        return f"`{shown}`"

    text = _EXAMPLE_HEADING.sub(lambda m: f"{m['indent']}Examples:", docstring.value)
    docstring.value = _split_shared_arguments(_ROLE.sub(link, text))


def _add_runtime_docstrings(module: griffe.Module) -> None:
    """Give public functions that are made at run time (no docstring in the source) their docstrings."""
    try:
        imported = importlib.import_module(module.path)
    except ImportError:
        return
    for name in getattr(imported, "__all__", []):
        member = module.members.get(name)
        value = getattr(imported, name, None)
        if member is None or member.is_alias or member.docstring is not None or not inspect.isfunction(value):
            continue
        if value.__doc__:
            member.docstring = griffe.Docstring(inspect.cleandoc(value.__doc__), parent=member)


class FeatvisDocstrings(griffe.Extension):
    """Rewrite example headings and Sphinx roles in every docstring of a loaded package."""

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        if pkg.path != "featvis":
            return
        seen: set[int] = set()
        stack: list[griffe.Object] = [pkg]
        while stack:
            obj = stack.pop()
            if id(obj) in seen:
                continue
            seen.add(id(obj))
            if obj.is_module:
                _add_runtime_docstrings(obj)  # type: ignore[arg-type]
            _rewrite(obj, loader.modules_collection)
            stack.extend(member for member in obj.members.values() if not member.is_alias)
