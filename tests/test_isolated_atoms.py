"""What the pretrained models give for an isolated atom: E0 plus the readout of all-zero features,
the same for every element; the water card quotes the shipped model's own numbers."""

from importlib import resources

import pytest
from ase import Atoms
from ase.data import chemical_symbols

from cace_calc import CACECalculator, available_models, load_model


def _isolated(name):
    model = load_model(name)
    calc = CACECalculator(model, device="cpu", dtype="float64")
    e0 = dict(zip(model.config.elements, model.e0.tolist()))
    out = {}
    for z in model.config.elements:
        atom = Atoms(chemical_symbols[z])
        atom.calc = calc
        out[z] = atom.get_potential_energy() - e0[z]
    return e0, out


@pytest.mark.parametrize("name", available_models())
def test_isolated_atom_is_e0_plus_one_constant(name):
    _, offsets = _isolated(name)
    values = list(offsets.values())
    assert max(values) - min(values) < 1e-9  # the readout of zero features knows no element
    assert abs(values[0]) > 1e-3  # and is not zero: an isolated atom's energy is not E0


def test_water_card_quotes_the_model():
    e0, offsets = _isolated("water")
    assert e0[1] / e0[8] == pytest.approx(2.0, abs=1e-9)  # one composition: minimum-norm split
    card = (resources.files("cace_calc.pretrained") / "water" / "README.md").read_text()
    assert "## Isolated atoms and E0" in card
    assert f"{offsets[1]:+.6f}" in card
    assert f"{e0[1]:.6f}" in card and f"{e0[8]:.6f}" in card
    assert f"{2 * e0[1] + e0[8]:.6f} eV per H2O" in card
