"""Small structures shipped with cace_calc, made by the project (``scripts/make_structures.py``).

``water-64``: 64 H2O (192 atoms) in a 12.43 A cubic box at 0.997 g/cm3, a liquid made by
0.5 ps of Langevin NVT at 300 K with the pretrained ``water`` model. ``nbmotaw-128``: an
equimolar NbMoTaW bcc alloy, 4x4x4 cubic cells (128 atoms), SQS-like (random-alloy pair
correlations in the first two neighbour shells), a = 3.23 A from Vegard's law, unrelaxed.

    from cace_calc.data import list_structures, structure
    atoms = structure("water-64")
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from ase import Atoms

__all__ = ["development_data_hint", "list_structures", "resolve_structure_file", "structure", "structure_path"]


def _files() -> dict[str, Path]:
    root = resources.files(__name__)
    return {p.name.removesuffix(".xyz"): Path(str(p)) for p in root.iterdir() if p.name.endswith(".xyz")}


def list_structures() -> list[str]:
    """Names of the shipped structures, sorted."""
    return sorted(_files())


def structure_path(name: str) -> Path:
    """The extended XYZ file of a shipped structure; ``KeyError`` naming the known ones otherwise."""
    files = _files()
    if name not in files:
        raise KeyError(f"no shipped structure named {name!r}; available: {', '.join(sorted(files))}")
    return files[name]


def structure(name: str) -> Atoms:
    """A fresh copy of a shipped structure (positions in A, periodic cell, no calculator)."""
    import ase.io

    return ase.io.read(structure_path(name), format="extxyz")


def development_data_hint(path: str | os.PathLike) -> str:
    """For a missing file in a ``shared/`` folder: a parenthesised note (with a leading space) that
    it belongs to the project's development data, which is not installed; otherwise ``""``."""
    if "shared" not in Path(path).parts:
        return ""
    return (" (a path in shared/: the project's development data, which is not part of the package;"
            " see the README's 'Development data')")


def resolve_structure_file(spec: str | os.PathLike) -> Path:
    """``spec`` if it is an existing file, else the file of the shipped structure named ``spec``.

    Raises ``FileNotFoundError`` with a one-line message naming the shipped structures, and
    saying that a path in ``shared/`` is the project's development data (not installed with the
    package) when ``spec`` points there.
    """
    path = Path(spec)
    if path.is_file():
        return path
    files = _files()
    if str(spec) in files:
        return files[str(spec)]
    hint = development_data_hint(path)
    raise FileNotFoundError(f"structure file {str(spec)!r} does not exist{hint}; structures shipped with "
                            f"cace_calc, usable by name: {', '.join(sorted(files))}")
