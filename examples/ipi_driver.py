"""Serve i-PI with a CACE model over a unix socket, step by step.

Writes an i-PI input for a short 4-bead path-integral run of liquid water, starts the i-PI
server, connects a CACE driver from this Python process (the same thing as running
``cace-calc ipi --model water --unix NAME`` in another terminal), and checks that the
potential energy i-PI reports at step 0 is the ASE calculator's.

    python examples/ipi_driver.py [--model water] [--steps 5] [--fast]

--fast runs 2 steps.

With an i-PI input of your own, start ``i-pi input.xml`` and then, for its
``<ffsocket mode='unix'><address>NAME</address>``, run one or more drivers:
``cace-calc ipi --model water --unix NAME --template start.xyz`` (same atom order as i-PI's
input). For inet sockets use ``--host HOST --port N``; drivers may run on other machines.
"""

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import find_model, is_fast

from cace_calc import CACECalculator
from cace_calc.data import structure
from cace_calc.ipi import CACEDriver
from cace_calc.ipi.inputs import PIMDSettings, socket_forcefield_xml, write_pimd_input
from cace_calc.ipi.launch import ipi_executable
from cace_calc.ipi.results import read_pimd_results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="water", help="pretrained model name or model file (default water)")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--fast", action="store_true", help="2 steps")
    args = parser.parse_args(argv)
    fast = is_fast(args)
    steps = 2 if fast else args.steps
    model = find_model(args.model, "H and O")
    if model is None:
        return 0 if fast else 1

    atoms = structure("water-64")  # shipped with the package
    driver = CACEDriver(model, template=atoms, device=args.device)

    name = f"cace-example-{os.getpid()}"  # i-PI listens on /tmp/ipi_<name>
    with tempfile.TemporaryDirectory() as tmp:
        settings = PIMDSettings(beads=4, temperature=300.0, steps=steps, timestep_fs=0.5)
        ff = socket_forcefield_xml(unix=name, symbols="".join(atoms.get_chemical_symbols()), pbc=atoms.pbc)
        write_pimd_input(atoms, tmp, settings, forcefield_xml=ff)
        with open(Path(tmp) / "i-pi.log", "w") as log:
            server = subprocess.Popen(ipi_executable() + ["input.xml"], cwd=tmp, stdout=log,
                                      stderr=subprocess.STDOUT)
            try:
                n = driver.run(unix=name, wait=60, timeout=600)  # returns when i-PI sends EXIT
                server.wait(60)
            finally:
                if server.poll() is None:
                    server.kill()
                    server.wait()
        res = read_pimd_results(tmp)

    ref = atoms.copy()
    ref.calc = CACECalculator(driver.calculator.model)
    e_ase = ref.get_potential_energy()
    print(f"i-PI finished: {n} structures evaluated ({res.n_beads} beads x {len(res.step)} force calls)")
    print(f"step 0 potential energy: i-PI {res.potential_energy[0]:.6f} eV, ASE {e_ase:.6f} eV "
          f"(difference {res.potential_energy[0] - e_ase:.1e} eV)")
    for sym, ke in res.kinetic_energy_per_atom.items():
        print(f"kinetic energy per {sym} atom (centroid virial): {ke[-1] * 1000:.1f} meV at step {res.step[-1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
