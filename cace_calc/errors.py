"""Exception classes of cace_calc.

They extend ASE's calculator errors so that code written for any ASE calculator catches them:
setup problems (bad model file, unsupported element, bad atoms) are raised before any work,
failures during a calculation (non-finite results) while it runs.
"""

from ase.calculators.calculator import (
    CalculationFailed,
    CalculatorSetupError,
    PropertyNotImplementedError,
)

__all__ = [
    "CalculationFailed",
    "CalculatorSetupError",
    "InvalidAtomsError",
    "ModelFileError",
    "PropertyNotImplementedError",
    "StressNotAvailableError",
    "UnsupportedElementError",
    "UnsupportedModelError",
]


class ModelFileError(CalculatorSetupError):
    """A model file is missing, unreadable, corrupt or from a newer format version."""


class UnsupportedModelError(CalculatorSetupError):
    """A model (usually one from the original CACE code) uses a part cace_calc does not implement."""


class UnsupportedElementError(CalculatorSetupError, ValueError):
    """A structure contains an element the model was not trained on."""


class InvalidAtomsError(CalculatorSetupError, ValueError):
    """A structure cannot be evaluated: empty, non-finite positions or a degenerate cell."""


class StressNotAvailableError(CalculatorSetupError, PropertyNotImplementedError):
    """A calculation needs the stress and the calculator does not compute it."""
