"""ASE calculator: construction and clear errors on bad input."""

import copy

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import molecule
from conftest import water_cluster

from cace_calc import CACECalculator, save_model
from cace_calc.errors import (
    CalculationFailed,
    CalculatorSetupError,
    InvalidAtomsError,
    ModelFileError,
    UnsupportedElementError,
)


def test_accepts_model_path_and_object(model, tmp_path):
    path = save_model(model, tmp_path / "m.pt")
    atoms = water_cluster()
    energies = []
    for m in (model, path, str(path)):
        atoms.calc = CACECalculator(m, device="cpu")
        energies.append(atoms.get_potential_energy())
    assert energies[0] == energies[1] == energies[2]
    assert atoms.get_potential_energy() == pytest.approx(atoms.get_potential_energies().sum(), abs=1e-10)


def test_caller_model_not_modified(model):
    CACECalculator(model, dtype="float32")
    assert next(model.parameters()).dtype == torch.float64


def test_unsupported_element_names_it(model):
    atoms = molecule("NH3")
    atoms.calc = CACECalculator(model)
    with pytest.raises(UnsupportedElementError, match=r"element\(s\) N not supported.*knows: H, C, O"):
        atoms.get_potential_energy()


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_non_finite_positions(model, value):
    atoms = water_cluster()
    atoms.positions[3, 1] = value
    atoms.calc = CACECalculator(model)
    with pytest.raises(InvalidAtomsError, match=r"non-finite.*atom\(s\) \[3\]"):
        atoms.get_forces()


def test_empty_atoms(model):
    atoms = Atoms()
    atoms.calc = CACECalculator(model)
    with pytest.raises(InvalidAtomsError, match="empty"):
        atoms.get_potential_energy()


def test_degenerate_periodic_cell(model):
    atoms = water_cluster()
    atoms.pbc = True
    atoms.calc = CACECalculator(model)
    with pytest.raises(InvalidAtomsError, match="zero cell vector"):
        atoms.get_potential_energy()


def test_overlapping_atoms_fail_loudly(model):
    atoms = Atoms("H2O", positions=[[0, 0, 0], [0, 0, 0], [1.0, 0, 0]])
    atoms.calc = CACECalculator(model)
    with pytest.raises(CalculationFailed, match="non-finite.*two atoms on top of each other"):
        atoms.get_potential_energy()


def test_nan_parameters_are_blamed_not_the_atoms(model):
    calc = CACECalculator(model)  # shares the session fixture's model: break a copy of it
    calc.model = copy.deepcopy(calc.model)
    with torch.no_grad():
        calc.model.readout.weight_0[0, 0, 0] = float("nan")
    atoms = molecule("H2O")
    atoms.calc = calc
    with pytest.raises(CalculationFailed, match=r"parameters hold NaN or inf \(readout.weight_0\)"):
        atoms.get_potential_energy()


def test_setup_errors(tmp_path):
    with pytest.raises(ModelFileError, match="does not exist"):
        CACECalculator(tmp_path / "missing.pt")
    (tmp_path / "bad.pt").write_text("garbage")
    with pytest.raises(ModelFileError, match="corrupt"):
        CACECalculator(tmp_path / "bad.pt")
    assert issubclass(ModelFileError, CalculatorSetupError)


def test_bad_dtype_and_device(model):
    with pytest.raises(ValueError, match="dtype must be"):
        CACECalculator(model, dtype="float16")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            CACECalculator(model, device="cuda")


def test_isolated_atom_has_zero_force(model):
    atoms = Atoms("O", positions=[[0, 0, 0]])
    atoms.calc = CACECalculator(model)
    assert np.all(atoms.get_forces() == 0.0)
    assert np.isfinite(atoms.get_potential_energy())
