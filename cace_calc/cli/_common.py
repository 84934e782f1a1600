"""What several ``cace-calc`` commands share: help texts, the model options, the help formatter
and parser class, the one-line error message and the checks run before any command."""

from __future__ import annotations

import argparse
import sys


_STRUCTURE_HELP = ("a structure file ase.io.read reads (last frame) or a shorthand KIND:SYMBOL[:A], KIND one of "
                   "sc fcc bcc hcp diamond, A the lattice constant in A (primitive cell), e.g. bcc:W:3.17")
_MODEL_HELP = "pretrained model name (see `cace-calc info`) or model file"
_DEVICE_HELP = "cpu, cuda, cuda:1 or auto (default: CUDA if available)"


def _add_model_options(p):
    p.add_argument("--model", required=True, help=_MODEL_HELP)
    p.add_argument("--device", default="auto", help=_DEVICE_HELP)
    p.add_argument("--dtype", default="float64", choices=["float64", "float32"],
                   help="model precision (default float64; keep it for phonons and elastic constants)")
    p.add_argument("--fmax", type=float, default=1e-3, help="force tolerance of the relaxations in eV/A (1e-3)")
    p.add_argument("--no-relax", dest="relax", action="store_false",
                   help="use the structure as given (default: relax cell and positions first)")


def _report_warnings(caught) -> None:
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)


class _Formatter(argparse.HelpFormatter):
    """Wraps each paragraph of a description or epilog; keeps indented example lines as written."""

    def _fill_text(self, text, width, indent):
        paras = []
        for para in text.split("\n\n"):
            if "\n  " in para:
                paras.append("\n".join(indent + line for line in para.splitlines()))
            else:
                paras.append(super()._fill_text(para, width, indent))
        return "\n\n".join(paras)


class _Parser(argparse.ArgumentParser):
    """An argument parser with :class:`_Formatter` (the top parser and every subparser)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)


def _error(command: str, e: BaseException, prefix: str = "", suffix: str = "") -> None:
    """Print ``cace-calc COMMAND: error: ...`` on one line."""
    text = " ".join(str(e).split()) or type(e).__name__
    if len(text) > 600:
        text = text[:600] + " ..."
    print(f"cace-calc {command}: error: {prefix}{text}{suffix}", file=sys.stderr)


def _check_common_options(args) -> None:
    """Options several commands share, checked before the command starts: devices, threads."""
    devices = getattr(args, "device", None)
    if devices is not None:
        from ..calculator import resolve_device

        for device in [devices] if isinstance(devices, str) else devices:
            resolve_device(device)
    threads = getattr(args, "threads", None)
    if threads is not None and threads < 1:
        raise ValueError(f"--threads must be at least 1, got {threads}")
