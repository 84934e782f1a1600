"""CACE as an in-process i-PI potential (i-PI's ``<ffdirect>`` with a custom PES).

i-PI loads this file by path and instantiates the class named by ``__DRIVER_CLASS__`` with
the ``<parameters>`` of the force field::

    <ffdirect name='cace' pbc='false' threaded='true'>
      <pes>custom</pes>
      <pes_path>/path/to/cace_calc/ipi/inprocess.py</pes_path>
      <parameters>{model: water, template: init.xyz, device: cuda, dtype: float32}</parameters>
      <batch_size>32</batch_size>
    </ffdirect>

With ``batch_size`` equal to the number of beads, i-PI hands all beads of a step to
:meth:`CACEPES.compute` as lists, and they are evaluated in one batched model call.
``cace_calc.pimd`` writes this block for you (``mode="inprocess"``).
"""

from ipi.pes.dummy import Dummy_driver

# absolute imports: i-PI loads this file by path, outside its package
from cace_calc.calculator import CACECalculator
from cace_calc.ipi.bridge import IPIEvaluator

# i-PI finds these two names by reading this file's source
__DRIVER_NAME__ = "cace"
__DRIVER_CLASS__ = "CACEPES"


class CACEPES(Dummy_driver):
    """i-PI PES evaluating a CACE model; results in atomic units (Hartree, Hartree/Bohr).

    Parameters (i-PI ``<parameters>`` keys)
    ---------------------------------------
    model: pretrained model name or model file path.
    template: a structure file ASE reads, with i-PI's atoms in the same order (elements and
        periodicity are taken from it).
    device, dtype: as for :class:`cace_calc.CACECalculator` (default ``auto``, ``float64``).
    """

    def __init__(self, model=None, template=None, device="auto", dtype="float64", verbose=False,
                 verbosity=None, **unknown):
        if unknown:
            raise ValueError(f"unknown <parameters> for the cace PES: {sorted(unknown)}; "
                             "expected model, template, device, dtype")
        if model is None or template is None:
            raise ValueError("the cace PES needs <parameters>{model: NAME_OR_PATH, template: FILE}"
                             "</parameters>")
        self.model_spec, self.template_path = str(model), str(template)
        self.device, self.dtype = str(device), str(dtype)
        self.n_calls = 0
        self.n_structures = 0
        super().__init__(verbose)

    def check_parameters(self):
        """Load the model and the template (called by i-PI's base class constructor)."""
        from ase.io import read

        calc = CACECalculator(self.model_spec, device=self.device, dtype=self.dtype)
        self.evaluator = IPIEvaluator.from_atoms(calc, read(self.template_path))

    def compute_structure(self, cell, pos):
        """Energy (Hartree), forces (Hartree/Bohr), virial (Hartree) and extras for one structure;
        ``cell`` is i-PI's ``h`` (Bohr, vectors as columns), ``pos`` (n_atoms, 3) Bohr."""
        return self.compute([cell], [pos])[0]

    def compute(self, cell, pos):
        """One structure, or lists of cells and positions evaluated in one batched call."""
        if not isinstance(cell, list):
            return self.compute_structure(cell, pos)
        if not isinstance(pos, list) or len(pos) != len(cell):
            raise ValueError("batched evaluation needs lists of cells and positions of equal length")
        results = self.evaluator.compute(cell, pos)
        self.n_calls += 1
        self.n_structures += len(results)
        return [(e, f, v, "") for e, f, v in results]
