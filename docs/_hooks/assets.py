"""MkDocs hook: files that live outside docs/ but belong in the site.

The model cards stay where they are (pretrained/NAME/README.md, included into
docs/models/NAME/index.md by pymdownx.snippets, never copied into docs/), so their relative links
(calibration.png, dimers.png, sanity.png, ...) must resolve next to the page: every file of
pretrained/NAME (but the model weights and the card itself) is added to the site as
models/NAME/FILE, where docs/models/NAME/index.md sits. The benchmark results (plots and JSON)
are added as benchmarks/results/FILE for the performance page. Nothing is written into docs/;
a card that links a file that does not exist fails the strict build like any broken link.
"""

from __future__ import annotations

from pathlib import Path

from mkdocs.structure.files import File, Files

SKIP_SUFFIXES = {".pt", ".md", ".py", ".pyc"}


def asset_folders(root: Path) -> dict[str, Path]:
    """Site folder -> source folder of the files added to the site."""
    folders = {f"models/{card.parent.name}": card.parent for card in sorted(root.glob("pretrained/*/README.md"))}
    folders["benchmarks/results"] = root / "benchmarks" / "results"
    return folders


def on_files(files: Files, config) -> Files:
    root = Path(config["config_file_path"]).resolve().parent
    for dest, source in asset_folders(root).items():
        for path in sorted(source.iterdir()) if source.is_dir() else []:
            if not path.is_file() or path.suffix in SKIP_SUFFIXES:
                continue
            uri = f"{dest}/{path.name}"
            if files.get_file_from_path(uri) is None:
                files.append(File.generated(config, uri, abs_src_path=str(path)))
    return files
