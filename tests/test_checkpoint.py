"""Model files: round trip, weights_only loading, versions, errors, lookup by name."""

import pytest
import torch
from conftest import periodic_cell

from cace_calc import available_models, checkpoint, load_model, save_model
from cace_calc.errors import ModelFileError
from cace_calc.graph import build_graph


def _energy_forces(model, atoms, dtype=torch.float64):
    g = build_graph([atoms], model.config.elements, model.cutoff).to(dtype=dtype)
    out = model(g, forces=True, stress=True)
    return out["energy"].double(), out["forces"].double(), out["stress"].double()


def test_round_trip(model, tmp_path):
    path = save_model(model, tmp_path / "m.pt", metadata={"licence": "MIT", "rmse": {"energy": 1.0}})
    raw = torch.load(path, weights_only=True)  # plain data only
    assert raw["format_version"] == checkpoint.FORMAT_VERSION
    assert raw["units"] == {"energy": "eV", "length": "Angstrom"}
    loaded = load_model(path)
    assert loaded.metadata["licence"] == "MIT"
    assert loaded.config == model.config
    atoms = periodic_cell()
    for a, b in zip(_energy_forces(model, atoms), _energy_forces(loaded, atoms)):
        assert torch.equal(a, b)


def test_load_float32(model, tmp_path):
    path = save_model(model, tmp_path / "m.pt")
    m32 = load_model(path, dtype=torch.float32)
    assert all(p.dtype == torch.float32 for p in m32.parameters())
    atoms = periodic_cell()
    e64, f64, _ = _energy_forces(model, atoms)
    e32, f32, _ = _energy_forces(m32, atoms, torch.float32)
    assert torch.allclose(e32, e64, rtol=1e-5)
    assert torch.allclose(f32, f64, atol=1e-4)


def test_newer_format_is_refused(model, tmp_path):
    path = save_model(model, tmp_path / "m.pt")
    raw = torch.load(path, weights_only=True)
    raw["format_version"] = checkpoint.FORMAT_VERSION + 1
    torch.save(raw, path)
    with pytest.raises(ModelFileError, match="newer than this cace_calc reads"):
        load_model(path)


def test_bad_files(model, tmp_path):
    with pytest.raises(ModelFileError, match="does not exist"):
        load_model(tmp_path / "missing.pt")
    (tmp_path / "corrupt.pt").write_bytes(b"\x00garbage")
    with pytest.raises(ModelFileError, match="corrupt"):
        load_model(tmp_path / "corrupt.pt")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(ModelFileError, match="not a cace_calc model"):
        load_model(tmp_path / "other.pt")
    path = save_model(model, tmp_path / "m.pt")
    raw = torch.load(path, weights_only=True)
    del raw["state_dict"]["readout.weight_0"]
    torch.save(raw, tmp_path / "truncated.pt")
    with pytest.raises(ModelFileError, match="inconsistent"):
        load_model(tmp_path / "truncated.pt")


def test_unknown_name_lists_pretrained():
    with pytest.raises(ModelFileError, match="pretrained models"):
        load_model("no-such-model")


def test_lookup_by_name_and_alias(model, tmp_path, monkeypatch):
    save_model(model, tmp_path / "nbmotaw" / "model.pt")
    save_model(model, tmp_path / "water" / "model.pt")
    (tmp_path / "empty").mkdir()
    monkeypatch.setattr(checkpoint, "_pretrained_root", lambda: tmp_path)
    assert available_models() == ["nbmotaw", "water"]
    assert load_model("water").config == model.config
    assert checkpoint.resolve_model_path("hea") == tmp_path / "nbmotaw" / "model.pt"


def test_files_from_before_stacked_heads_load(model, tmp_path):
    """Model files written before the readout heads were stacked (torch.nn.Linear layers) load
    with the same numbers."""
    from conftest import water_cluster

    from cace_calc import CACECalculator

    raw = torch.load(save_model(model, tmp_path / "m.pt"), weights_only=True)
    sd = raw["state_dict"]
    for k in range(len(model.config.readout_hidden) + 1):
        sd[f"readout.mlp.{2 * k}.weight"] = sd.pop(f"readout.weight_{k}")[0].T.contiguous()
        sd[f"readout.mlp.{2 * k}.bias"] = sd.pop(f"readout.bias_{k}")[0]
    sd["readout.linear.weight"] = sd.pop("readout.linear_weight").T.contiguous()
    sd["readout.linear.bias"] = sd.pop("readout.linear_bias")
    for key in ("n_heads", "zbl_radii"):
        raw["config"].pop(key)
    torch.save(raw, tmp_path / "legacy.pt")
    atoms = water_cluster()
    energies = []
    for m in (model, tmp_path / "legacy.pt"):
        atoms.calc = CACECalculator(m)
        energies.append(atoms.get_potential_energy())
    assert energies[0] == energies[1]
