"""examples/ipi_input.xml, the complete i-PI input the README points to, runs as documented:
the shipped water box written beside it, i-PI started on it, a CACE driver on its socket."""

import xml.etree.ElementTree as ET
from pathlib import Path

import ase.io
from ase import units
from ipi_helpers import serve_run, socket_name, water_model

from cace_calc import CACECalculator
from cace_calc.data import structure
from cace_calc.ipi import CACEDriver
from cace_calc.ipi.results import read_properties

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "ipi_input.xml"


def test_example_input_serves_a_driver(tmp_path):
    text = EXAMPLE.read_text()
    root = ET.fromstring(text)  # well-formed XML (no "--" inside its comments)
    assert root.find("ffsocket/address").text == "cace-water"
    assert root.find("system/initialize/file").text == "water-64.xyz"
    # the same input, shortened: 2 beads, 2 steps, a socket name of its own
    name = socket_name()
    for old, new in [("<total_steps>1000<", "<total_steps>2<"), ("nbeads='8'", "nbeads='2'"),
                     ("<address>cace-water<", f"<address>{name}<")]:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    (tmp_path / "input.xml").write_text(text)
    ase.io.write(tmp_path / "water-64.xyz", structure("water-64"))  # as the README says
    driver = CACEDriver(water_model(), template="water-64")  # a shipped structure by name
    n = serve_run(tmp_path, name, driver)
    assert n == 3 * 2  # (step 0 + 2 steps) x 2 beads
    props = read_properties(tmp_path / "simulation.out")  # atomic units
    assert props["step"].tolist() == [0, 1, 2] and props["bead_potentials"].shape == (3, 2)
    ref = structure("water-64")
    ref.calc = CACECalculator(water_model())
    assert abs(props["potential"][0] * units.Hartree - ref.get_potential_energy()) < 1e-5
    assert len(ase.io.read(tmp_path / "simulation.xc.extxyz", ":")) == 1  # stride 10: step 0 only
