"""Convert a model saved by the original CACE code (a pickled ``torch.nn.Module``) into a
cace_calc model, without the original package installed.

The pickle is read, on every path torch.load takes (zip and legacy formats), by one unpickler
that resolves only the exact globals published CACE files name: ``cace.*`` and ``torch.nn``
classes become inert records of their attributes, and besides those only torch's tensor rebuild
functions, storage types, ``torch.device``, ``OrderedDict`` and ``set`` are allowed (no
``builtins``, no attribute access), so the file's own code never runs. TorchScript archives are
refused. Parts cace_calc does not implement are refused by name.
"""

from __future__ import annotations

import collections
import json
import os
import pickle
import types
import zipfile
from pathlib import Path
from typing import ClassVar

import torch

from .errors import ModelFileError, UnsupportedModelError
from .model import CACE, CACEConfig

class _Record:
    """Inert stand-in for a class named in the file: holds the pickled attributes, runs nothing."""

    _cace_class = "?"

    def __setstate__(self, state):
        if isinstance(state, tuple) and len(state) == 2:  # (dict, slots)
            state = {**(state[0] or {}), **(state[1] or {})}
        if isinstance(state, dict):
            self.__dict__.update(state)

    def __call__(self, *args, **kwargs):  # a few pickles store bound callables; never called
        raise UnsupportedModelError(f"{self._cace_class} cannot be executed")


def _record_class(module: str, name: str) -> type:
    return type(name, (_Record,), {"_cace_class": f"{module}.{name}"})


def _make_set(items=()):
    return set(items)


# Every global a published CACE model file (cace_water_cacefit.pth, cace_hea25_cacefit.pth)
# names, found by walking the opcodes of their data.pkl, and nothing else. The torch.nn classes
# and the activation become inert records too, so no real class's __setstate__ runs; only
# torch's tensor rebuild functions, a device, an OrderedDict and a set are real objects.
_TORCH_RECORDS = (
    ("torch.nn.modules.container", "ModuleList"),
    ("torch.nn.modules.container", "ParameterList"),
    ("torch.nn.modules.container", "Sequential"),
    ("torch.nn.modules.linear", "Identity"),
    ("torch.nn.modules.linear", "Linear"),
    ("torch.nn.functional", "silu"),
)
_ALLOWED = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch", "device"): torch.device,
    ("__builtin__", "set"): _make_set,  # protocol 2 spells builtins this way
    ("builtins", "set"): _make_set,
    **{key: _record_class(*key) for key in _TORCH_RECORDS},
}
# Storage types only tell torch the dtype of a tensor's data (torch's loader intercepts them the
# same way before our find_class sees them); they are never called.
_STORAGES = ("FloatStorage", "DoubleStorage", "LongStorage", "IntStorage", "BoolStorage")


class _InertUnpickler(pickle.Unpickler):
    """Resolves only the exact (module, name) pairs above; ``cace.*`` classes become records."""

    _records: ClassVar[dict[tuple[str, str], type]] = {}

    def find_class(self, module, name):
        if not (isinstance(module, str) and isinstance(name, str)):
            raise UnsupportedModelError("the file names a global that is not a string; refusing to load it")
        if (module == "cace" or module.startswith("cace.")) and name.isidentifier():
            key = (module, name)
            if key not in self._records:
                self._records[key] = _record_class(module, name)
            return self._records[key]
        if module == "torch" and name in _STORAGES:
            return torch.serialization.StorageType(name)
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        raise UnsupportedModelError(f"the file refers to {module[:80]}.{name[:80]}, which a CACE model never "
                                    "needs; refusing to load it")


def _inert_load(file, **kwargs):
    return _InertUnpickler(file, **kwargs).load()


# torch.load uses pickle_module.Unpickler for the object pickle and pickle_module.load for the
# legacy formats' headers and storage tables: both restrict.
_pickle_module = types.SimpleNamespace(Unpickler=_InertUnpickler, load=_inert_load, __name__="cace_inert_pickle")


def _cls(obj) -> str:
    return getattr(obj, "_cace_class", type(obj).__module__ + "." + type(obj).__name__).split(".")[-1]


def _children(obj) -> dict:
    return dict(getattr(obj, "_modules", {}) or {})


def _tensors(obj, prefix="") -> dict[str, torch.Tensor]:
    """state_dict of a tree of records and torch modules."""
    out = {}
    for kind in ("_parameters", "_buffers"):
        for k, v in (getattr(obj, kind, {}) or {}).items():
            if v is not None:
                out[prefix + k] = v.detach().clone()
    for k, child in _children(obj).items():
        if child is not None:
            out.update(_tensors(child, prefix + k + "."))
    return out


def _expect(obj, name: str, what: str):
    if _cls(obj) != name:
        raise UnsupportedModelError(f"{what} is {_cls(obj)}; cace_calc supports only {name} there")


def read_original(path: str | os.PathLike):
    """Unpickle an original CACE model file into inert records (no code of the file runs)."""
    name = str(path)
    if os.path.isdir(path):
        raise ModelFileError(f"model file {name!r} is a directory, not a file")
    try:
        with open(path, "rb") as f:
            if f.read(4) == b"PK\x03\x04":
                f.seek(0)
                with zipfile.ZipFile(f) as z:
                    records = z.namelist()
                # torch.load hands TorchScript archives to torch.jit.load, which compiles their code
                if any(r.endswith("/constants.pkl") or r == "constants.pkl" or "/code/" in r for r in records):
                    raise UnsupportedModelError(f"{name!r} is a TorchScript archive, not a pickled CACE model; "
                                                "refusing to load it")
            f.seek(0)
            return torch.load(f, map_location="cpu", pickle_module=_pickle_module, weights_only=False)
    except FileNotFoundError:
        raise ModelFileError(f"model file {name!r} does not exist") from None
    except UnsupportedModelError:
        raise
    except Exception as e:
        msg = " ".join(str(e).split())[:300]
        raise ModelFileError(f"cannot read {name!r} as an original CACE model: {type(e).__name__}: {msg}") from None


def _config_and_weights(root) -> tuple[CACEConfig, dict[str, torch.Tensor]]:
    if _cls(root) == "Cace":
        raise UnsupportedModelError("the file holds only a CACE representation, no energy readout")
    _expect(root, "NeuralNetworkPotential", "the saved model")
    mods = _children(root)
    for part in ("input_modules", "postprocessors"):
        items = [m for m in _children(mods.get(part)).values() if m is not None] if mods.get(part) else []
        if items:
            raise UnsupportedModelError(f"{part} ({', '.join(_cls(m) for m in items)}) are not supported")
    rep = mods["representation"]
    _expect(rep, "Cace", "the representation")
    r = _children(rep)
    _expect(r["radial_basis"], "BesselRBF", "the radial basis")
    _expect(r["cutoff_fn"], "PolynomialCutoff", "the cutoff function")
    _expect(r["radial_transform"], "SharedRadialLinearTransform", "the radial transform")

    outputs = [m for m in _children(mods["output_modules"]).values() if m is not None]
    atomwise = [m for m in outputs if _cls(m) == "Atomwise"]
    others = [m for m in outputs if _cls(m) not in ("Atomwise", "Forces")]
    if others:
        names = ", ".join(sorted({_cls(m) for m in others}))
        hint = " (long-range electrostatics / charges)" if any(
            n in names for n in ("Ewald", "LES", "Polariz", "Charge")) else ""
        raise UnsupportedModelError(f"output module(s) {names}{hint} are not supported; "
                                    "cace_calc implements short-range CACE energies only")
    if len(atomwise) != 1:
        raise UnsupportedModelError(f"expected one Atomwise energy readout, found {len(atomwise)} "
                                    "(models with several readouts, e.g. charges, are not supported)")
    head = atomwise[0]
    if getattr(head, "n_out", 1) != 1 or getattr(head, "residual", False) or getattr(head, "use_batchnorm", False):
        raise UnsupportedModelError("the Atomwise readout uses n_out > 1, residual or batch norm, "
                                    "which cace_calc does not support")
    key = str(getattr(head, "output_key", "energy"))
    if "energy" not in key.lower():
        raise UnsupportedModelError(f"the Atomwise readout predicts {key!r}, not an energy "
                                    "(charge models are not supported)")

    mp_layers = [m for m in _children(r["message_passing_list"]).values()]
    kinds = set()
    for layer in mp_layers:
        parts = list(_children(layer).values())
        kinds.add(tuple(p is not None for p in parts))
    if len(kinds) > 1:
        raise UnsupportedModelError("message-passing layers of different composition are not supported")
    present = kinds.pop() if kinds else (False, False, False)
    messages = [name for name, on in zip(("memory", "ar", "bchi"), present) if on]
    bchi_flags = {}
    for layer in mp_layers:
        parts = list(_children(layer).values())
        if parts[2] is not None:
            bchi = parts[2]
            _expect(bchi, "MessageBchi", "the Bchi message")
            hnet = [m for m in _children(_children(bchi)["hnet"]).values()]
            if len(hnet) != 1:
                raise UnsupportedModelError("Bchi messages with hidden layers are not supported")
            bchi_flags = {"bchi_shared_l": bool(bchi.shared_l), "bchi_shared_channels": bool(bchi.shared_channels)}
        if parts[1] is not None:
            _expect(parts[1], "MessageAr", "the Ar message")

    sender = r["node_embedding_sender"]
    receiver = r.get("node_embedding_receiver")
    embed_receiver = receiver is not None and receiver is not sender
    sd = _tensors(root)
    rp = "representation."
    p_buf = sd[rp + "cutoff_fn.p"]
    config = CACEConfig(
        elements=[int(z) for z in rep.zs],
        cutoff=float(rep.cutoff),
        cutoff_p=float(p_buf),
        n_rbf=int(r["radial_basis"].n_rbf),
        n_radial=int(rep.n_radial_basis),
        l_max=int(rep.max_l),
        nu_max=int(rep.max_nu),
        n_embed=int(rep.n_atom_basis),
        embed_receiver=embed_receiver,
        n_layers=len(mp_layers),
        messages=[m for m in ("bchi", "ar", "memory") if m in messages],
        avg_num_neighbors=1.0 / float(rep.mp_norm_factor) ** 2,
        readout_hidden=[int(h) for h in (head.n_hidden or [])],
        readout_linear=bool(getattr(head, "add_linear_nn", False)),
        **bchi_flags,
    )
    L = config.l_max + 1
    w = {
        "embed_sender": sd[rp + "node_embedding_sender.embedding_weights"],
        "bessel.freqs": sd[rp + "radial_basis.bessel_weights"],
        "bessel.prefactor": sd[rp + "radial_basis.prefactor"],
        "cutoff_fn.cutoff": sd[rp + "cutoff_fn.cutoff"],
        "cutoff_fn.p": p_buf,
        "radial_transform.weights": torch.stack([sd[f"{rp}radial_transform.weights.{l}"] for l in range(L)]),
    }
    if embed_receiver:
        w["embed_receiver"] = sd[rp + "node_embedding_receiver.embedding_weights"]
    shape = (config.n_radial, config.n_embed**2)
    for t in range(config.n_layers):
        mp = f"{rp}message_passing_list.{t}."
        if "bchi" in config.messages:
            for k in ("weight", "bias"):
                w[f"bchi.{t}.linear.{k}"] = sd[f"{mp}2.hnet.0.linear.{k}"]
        if "ar" in config.messages:
            w[f"ar.{t}.prefactor"] = torch.stack([sd[f"{mp}1.prefactor.{l}"].reshape(shape) for l in range(L)])
            w[f"ar.{t}.invr0"] = torch.stack([sd[f"{mp}1.invr0.{l}"].reshape(shape) for l in range(L)])
        if "memory" in config.messages:
            w[f"memory.{t}.coef"] = torch.stack([sd[f"{mp}0.memory_coef.{l}"].reshape(shape) for l in range(L)])
    op = "output_modules.0."
    n_dense = len(config.readout_hidden) + 1
    for k in range(n_dense):  # one readout head: torch.nn.Linear weights [out, in] -> [1, in, out]
        w[f"readout.weight_{k}"] = sd[f"{op}outnet.{k}.linear.weight"].T.unsqueeze(0)
        w[f"readout.bias_{k}"] = sd[f"{op}outnet.{k}.linear.bias"].unsqueeze(0)
    if config.readout_linear:
        w["readout.linear_weight"] = sd[f"{op}linear_nn.linear.weight"].T
        w["readout.linear_bias"] = sd[f"{op}linear_nn.linear.bias"]
    return config, w


def load_e0(path_or_dict) -> dict[int, float]:
    """Per-element reference energies {Z: eV} from a JSON file {"Z": value} or a dict."""
    if isinstance(path_or_dict, dict):
        raw = path_or_dict
    else:
        raw = json.loads(Path(path_or_dict).read_text())
    return {int(k): float(v) for k, v in raw.items()}


def convert_original(path: str | os.PathLike, *, e0: dict | str | os.PathLike | None = None) -> CACE:
    """Build a cace_calc :class:`CACE` (float64, CPU) from an original CACE model file.

    ``e0``: per-element reference energies (eV) as {Z: value} or a JSON file; elements not
    given get 0. Raises :class:`UnsupportedModelError` naming any part not supported.
    """
    root = read_original(path)
    config, weights = _config_and_weights(root)
    model = CACE(config)
    missing = set(model.state_dict()) - set(weights) - {"elements", "e0"}
    if missing:
        raise UnsupportedModelError(f"the original model lacks weights for {sorted(missing)}")
    state = model.state_dict()
    for k, v in weights.items():
        if state[k].shape != v.shape:
            raise UnsupportedModelError(f"weight {k}: shape {tuple(v.shape)} in the file, "
                                        f"{tuple(state[k].shape)} expected")
        state[k] = v
    if e0 is not None:
        e0 = load_e0(e0)
        unknown = set(e0) - set(config.elements)
        if unknown:
            raise ValueError(f"e0 given for elements {sorted(unknown)} that the model does not know")
        state["e0"] = torch.tensor([e0.get(z, 0.0) for z in config.elements], dtype=torch.float64)
    model.load_state_dict(state)
    model.metadata = {"converted_from": Path(path).name, "source": "original CACE code (pickled module)",
                      "e0": {str(z): float(v) for z, v in zip(config.elements, state["e0"].tolist())}}
    model.requires_grad_(False)
    return model.eval()
