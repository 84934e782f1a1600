"""Starting a model from a parent: its architecture and weights, E0 refitted on new data, and the
learning rates of readout and representation."""

from __future__ import annotations

import copy

import numpy as np
import torch

from ..model import CACE
from .data import Frame, batches

CHILD_OWN = ("uncertainty_scale", "estimate_element_scale", "estimate_force_fraction", "head_offsets",
             "energy_rigidity")  # set by the child's calibration
# a model started from a parent may change these config keys; the rest is the parent's architecture
PARENT_MAY_CHANGE = ("n_heads", "zbl_radii")


@torch.no_grad()
def e0_correction(model: CACE, frames: list[Frame]) -> np.ndarray:
    """Per-element corrections to the model's E0 (eV) that best fit the frames' energies by
    least squares on the element counts (the minimum-norm one where compositions do not fix
    them all: all frames H2O fixes only 2 E0(H) + E0(O))."""
    m = copy.deepcopy(model).to(dtype=torch.float64).eval()
    nz = len(m.config.elements)
    resid = np.concatenate([(batch.energy - m(batch.graph, forces=False)["energy"]).numpy()
                            for batch in batches(frames, 8, shuffle=False)])
    counts = np.stack([np.bincount(f.species, minlength=nz) for f in frames]).astype(np.float64)
    present = counts.sum(axis=0) > 0
    delta = np.zeros(nz)
    delta[present] = np.linalg.lstsq(counts[:, present], resid, rcond=None)[0]
    return delta


def parent_and_config(init: str, model_dict: dict, elements: list[int] | None) -> tuple[CACE, dict]:
    """The parent model (float64, CPU) and the config of its child: the parent's, with the keys
    in PARENT_MAY_CHANGE taken from the recipe; any other key must repeat the parent's value."""
    from ..checkpoint import load_model

    parent = load_model(init)
    mine = parent.config.to_dict()
    for key, value in model_dict.items():
        if key in PARENT_MAY_CHANGE or (key == "avg_num_neighbors" and value == "auto"):
            continue
        if mine.get(key) != value:
            raise ValueError(f"model.{key} is {value!r} but the parent model {init!r} has {mine.get(key)!r}: a model "
                             f"started from a parent keeps its architecture (only {', '.join(PARENT_MAY_CHANGE)} may "
                             "change)")
    if elements is not None and list(elements) != list(parent.config.elements):
        raise ValueError(f"model.elements {elements} differ from the parent model's {parent.config.elements}")
    child = {k: v for k, v in mine.items() if k != "elements"}
    child.update({k: model_dict[k] for k in PARENT_MAY_CHANGE if k in model_dict})
    if "zbl_radii" not in model_dict:  # the parent's core, or one placed from the data (the default)
        child["zbl_radii"] = mine.get("zbl_radii") or "auto"
    return parent, child


def start_from_parent(model: CACE, parent: CACE) -> None:
    """Copy the parent's weights into ``model`` (same architecture; the readout's base is the
    parent's, its deviation heads are the parent's when it has as many, else freshly
    initialised). The ZBL core and the calibration are the child's own."""
    state = model.state_dict()
    for key, value in parent.state_dict().items():
        if key.startswith("zbl.") or key in CHILD_OWN:
            continue
        if key.startswith("readout.dev_") and state.get(key) is not None and state[key].shape != value.shape:
            continue  # another number of heads: the child's fresh ones
        if key not in state:
            if key.startswith("readout.dev_"):
                continue  # the child has one head: the parent's deviations are dropped
            raise ValueError(f"the parent model has {key!r}, which the child model lacks")
        state[key] = value.to(state[key].dtype)
    model.load_state_dict(state)


def parameter_groups(model: CACE, lr: float, representation_factor: float) -> list[dict]:
    """Adam's parameter groups: the readout at ``lr``, the rest (the representation) at
    ``representation_factor * lr``; frozen parameters left out. The scheduler scales both alike.
    One group when the factor is 1 (as checkpoints written before the factor existed have)."""
    if representation_factor == 1.0:
        return [{"params": [p for p in model.parameters() if p.requires_grad], "lr": lr, "lr_factor": 1.0}]
    readout = {id(p) for p in model.readout.parameters()}
    groups = [{"params": [p for p in model.parameters() if p.requires_grad and id(p) in readout], "lr": lr,
               "lr_factor": 1.0},
              {"params": [p for p in model.parameters() if p.requires_grad and id(p) not in readout],
               "lr": lr * representation_factor, "lr_factor": representation_factor}]
    return [g for g in groups if g["params"]]
