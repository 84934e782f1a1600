"""The committee driver's watch of the calibrated force uncertainty: the largest per-atom sigma of
every call of i-PI in uncertainty.log, one warning past the model's threshold, and
--max-uncertainty stopping i-PI softly (EXIT) with the last configuration written."""

import numpy as np
import pytest
import torch
from ase.io import read
from conftest import make_model
from ipi_helpers import model_file, water_box
from test_ipi_committee import HEADS, SCALE

from cace_calc import CACECalculator, save_model
from cace_calc.cli import main
from cace_calc.ipi.results import read_pimd_results
from cace_calc.ipi.watch import EventFollower, ForceUncertaintyWatch, read_uncertainty_log
from cace_calc.pimd import run_pimd


def _heads_model(threshold: float | None = None):
    """The committee tests' four-head model (a fresh copy), with a force threshold in its metadata."""
    model = make_model(elements=(1, 8), cutoff=3.0, seed=3, n_heads=HEADS)
    with torch.no_grad():
        model.uncertainty_scale.copy_(torch.tensor(SCALE, dtype=torch.float64))
    model.metadata = {} if threshold is None else {"uncertainty": {"forces_threshold_ev_per_a": threshold}}
    return model


def _members_sigma(model, atoms) -> np.ndarray:
    """The calculator's calibrated per-atom force sigma (eV/A) from the members' spread."""
    atoms = atoms.copy()
    atoms.calc = CACECalculator(model, uncertainty="members")
    atoms.get_forces()
    return atoms.calc.results["forces_uncertainty"]


def _rows(path):
    return [line.split() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]


def test_watch_logs_warns_once_and_stops_once(tmp_path):
    """Without i-PI: one log line per call (the largest over its structures), one warning, one
    stop (EXIT and the structures written), all read back; the follower passes the events on."""
    said, followed = [], []
    follower = EventFollower([tmp_path / "u.log"], followed.append)
    follower.poll()  # no file yet: nothing
    watch = ForceUncertaintyWatch([8, 1, 1], threshold=0.2, stop_above=0.5, log_path=tmp_path / "u.log",
                                  exit_file=tmp_path / "EXIT", say=said.append)
    frames = lambda: [water_box()[:3], water_box()[:3]]  # noqa: E731
    for sigmas in ([[0.1, 0.05, 0.0], [0.1, 0.15, 0.0]], [[0.1, 0.3, 0.0], [0.25, 0.1, 0.0]],
                   [[0.1, 0.4, 0.0], [0.1, 0.1, 0.6]], [[0.1, 0.1, 0.7], [0.1, 0.1, 0.0]]):
        watch.observe([np.array(s) for s in sigmas], frames)
        follower.poll()
    watch.close()
    assert len(said) == 2 and followed == [f"warning: {said[0]}", f"stop: {said[1]}"]
    assert said[0].startswith("call 1 (structure 0): force uncertainty 0.300 eV/A on atom 1 (H) passed the "
                              "model's threshold 0.200 eV/A")
    assert said[1].startswith("call 2 (structure 1): force uncertainty 0.600 eV/A on atom 2 (H) passed "
                              "--max-uncertainty 0.5 eV/A")
    assert (tmp_path / "EXIT").exists()
    stop = read(tmp_path / "uncertain.extxyz", ":")
    assert [a.info["call"] for a in stop] == [2, 2]
    np.testing.assert_allclose(stop[1].arrays["forces_uncertainty"], [0.1, 0.1, 0.6])
    assert watch.summary() == "largest force uncertainty 0.7000 eV/A on atom 2 (H) at call 3 (structure 0)"
    log = read_uncertainty_log([tmp_path / "u.log"])
    assert (log.largest, log.atom, log.symbol, log.call, log.structure, log.calls) == (0.7, 2, "H", 3, 0, 4)
    assert log.threshold == 0.2 and log.passed_threshold and log.stopped
    np.testing.assert_allclose(log.sigma, [0.15, 0.3, 0.6, 0.7])


def test_pimd_logs_the_members_sigma_and_warns_once(tmp_path):
    """run_pimd(uncertainty=True): i-PI's first call (both beads on the start structure) logs the
    calculator's largest members' sigma and its atom; a threshold below it warns once, at call 0."""
    atoms = water_box()
    sigma0 = _members_sigma(_heads_model(), atoms)
    model = _heads_model(threshold=0.5 * float(sigma0.max()))
    messages = []
    res = run_pimd(atoms, model, tmp_path / "run", beads=2, steps=3, device="cpu", threads=1, progress=False,
                   uncertainty=True, say=messages.append)
    rows = _rows(tmp_path / "run" / "uncertainty.log")
    assert [int(r[0]) for r in rows] == [0, 1, 2, 3]  # one call per step, all beads in each
    assert float(rows[0][2]) == pytest.approx(sigma0.max(), rel=1e-8)
    assert int(rows[0][3]) == int(np.argmax(sigma0)) and rows[0][4] == atoms[int(np.argmax(sigma0))].symbol
    assert len(messages) == 1 and messages[0].startswith("warning: call 0 (structure 0)")
    assert "passed the model's threshold" in messages[0]
    log = res.force_uncertainty
    assert log.largest == max(float(r[2]) for r in rows) and log.calls == 4
    assert log.passed_threshold and not log.stopped and len(log.warnings) == 1
    assert not (tmp_path / "run" / "EXIT").exists() and not (tmp_path / "run" / "final.extxyz").exists()


def test_cli_pimd_max_uncertainty_stops_with_the_last_frame(tmp_path, capsys):
    """`cace-calc pimd --max-uncertainty` with a tiny value: i-PI stops after its first step
    instead of 20, the summary says so, final.extxyz holds every bead of the last step i-PI
    wrote, uncertain.extxyz the structures that passed (with their sigma)."""
    atoms = water_box()
    atoms.write(tmp_path / "water.extxyz")
    path = save_model(_heads_model(), tmp_path / "heads.pt")  # no threshold: no warning
    out = tmp_path / "out"
    rc = main(["pimd", str(tmp_path / "water.extxyz"), "--model", str(path), "--beads", "2", "--steps", "20",
               "--stride", "1", "--device", "cpu", "--threads", "1", "--out", str(out), "--quiet",
               "--max-uncertainty", "1e-6"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    lines = captured.out.splitlines()
    assert sum(s.startswith("stop: call 0 (structure 0)") for s in lines) == 1
    assert "passed --max-uncertainty 1e-06 eV/A" in captured.out
    assert any(s.split()[:3] == ["largest", "force", "uncertainty"] for s in lines)
    assert "the model has no force uncertainty threshold" in captured.out
    res = read_pimd_results(out)
    last = int(res.step[-1])
    assert last <= 1 and f"stopped by --max-uncertainty 1e-06 eV/A after step {last} of 20" in captured.out
    assert res.force_uncertainty.stopped and not res.force_uncertainty.passed_threshold
    assert not (out / "EXIT").exists()  # removed: a restart in this folder would stop at once
    final = read(out / "final.extxyz", ":")
    assert len(final) == 2 and [a.info["step"] for a in final] == [last, last]
    for bead, frame in enumerate(final):  # the last frame i-PI wrote of each bead
        written = res.read_trajectory(bead)[-1]
        assert f"Step:{last:12d}" in written.info["ipi_comment"]
        np.testing.assert_allclose(frame.positions, written.positions, atol=1e-6)
        np.testing.assert_allclose(frame.cell.array, written.cell.array, atol=1e-6)
    passed = read(out / "uncertain.extxyz", ":")
    sigma0 = _members_sigma(_heads_model(), atoms)
    assert len(passed) == 2 and passed[0].info["call"] == 0
    np.testing.assert_allclose(passed[0].positions, atoms.positions, atol=1e-10)
    np.testing.assert_allclose(passed[0].arrays["forces_uncertainty"], sigma0, atol=1e-7)  # 8 decimals


def test_max_uncertainty_needs_a_model_with_heads(tmp_path, capsys):
    water_box().write(tmp_path / "water.extxyz")
    path = model_file(tmp_path)  # one readout head
    rc = main(["pimd", str(tmp_path / "water.extxyz"), "--model", str(path), "--out", str(tmp_path / "cli"),
               "--max-uncertainty", "0.5"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1
    assert err[0] == (f"cace-calc pimd: error: max_uncertainty: model '{path}' has a single readout head and "
                      "carries no force uncertainty: use a model trained with n_heads > 1")
    assert not (tmp_path / "cli" / "input.xml").exists()
    with pytest.raises(ValueError, match="max_uncertainty must be a positive force sigma in eV/A, got -1"):
        run_pimd(water_box(), _heads_model(), tmp_path / "neg", max_uncertainty=-1.0, progress=False)
