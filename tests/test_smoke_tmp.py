from cace_calc import CACECalculator
from conftest import water_cluster, periodic_cell, slab
def test_s(model, bchi_model):
    for m in (model, bchi_model):
        for f in (water_cluster, periodic_cell, slab):
            a = f(); a.calc = CACECalculator(m); a.get_forces()
