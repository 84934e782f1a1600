"""Griffe extension for the API reference: cace_calc's docstrings are plain text with a few
reStructuredText habits (``double backticks``, :func:`roles`, underlined section titles,
"name: description" parameter lines). This turns them into Markdown before mkdocstrings renders
them (docstring_style: null in mkdocs.yml), without touching the source files."""

from __future__ import annotations

import re

import griffe

_ROLE = re.compile(r":(?:func|class|meth|mod|data|attr|exc|obj):`~?\.?([^`]+)`")
_CODE = re.compile(r"(``[^`]+``|`[^`]+`)")
_REF_LINK = re.compile(r"\[([^\]\n]*)\]\[([^\]\n]*)\]")   # [a][b] would be read as a cross-reference
_UNDERLINED = re.compile(r"^(\S[^\n]*)\n[-=~]{3,}[ \t]*$", re.M)
_ITEM = re.compile(r"^([A-Za-z_][\w.]*(?:\s*(?:,|/)\s*[A-Za-z_][\w.]*)*):\s+(\S.*)$")


def _outside_code(text: str, fn) -> str:
    parts = _CODE.split(text)
    return "".join(p if i % 2 else fn(p) for i, p in enumerate(parts))


def _is_item(lines: list[str], k: int) -> bool:
    """"name: text" starts an item when its continuation lines are indented; a line at the margin
    right after it means a paragraph that happens to begin with a word and a colon."""
    for line in lines[k + 1:]:
        if not line.strip() or _ITEM.match(line):
            return True
        if not line.startswith(" "):
            return False
    return True


def to_markdown(text: str) -> str:
    text = _ROLE.sub(r"``\1``", text)
    text = _outside_code(text, lambda s: _REF_LINK.sub(r"\\[\1\\]\\[\2\\]", s))
    text = _UNDERLINED.sub(r"**\1**\n", text)
    text = re.sub(r"(\S)::[ \t]*$", r"\1:", text, flags=re.M)  # reST's literal-block marker
    lines = text.split("\n")
    out: list[str] = []
    in_list = False
    for k, line in enumerate(lines):
        m = _ITEM.match(line)
        if m and _is_item(lines, k):
            if not in_list and out and out[-1].strip():
                out.append("")  # Markdown starts a list only after a blank line
            names = ", ".join(f"``{n.strip()}``" for n in re.split(r"\s*[,/]\s*", m.group(1)))
            out.append(f"- {names}: {m.group(2)}")
            in_list = True
            continue
        if in_list and line.startswith(" ") and line.strip():
            out.append("    " + line.strip())  # continuation of the item
            continue
        if in_list and line.strip():
            out.append("")  # the list ends before the next paragraph
        in_list = False
        out.append(line)
    return "\n".join(out)


class PlainDocstrings(griffe.Extension):
    def on_instance(self, *, obj: griffe.Object, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = to_markdown(obj.docstring.value)
