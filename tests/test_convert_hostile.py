"""Hostile model files given to the converter: nothing in them may run.

Each file would, if its pickle were resolved by the standard unpickler, run code that writes a
marker file; each test asserts that the marker was not written and that the converter refused
with a one-line ModelFileError or UnsupportedModelError.
"""

import io
import pickle
import struct
import tarfile
import zipfile

import pytest
import torch

from cace_calc import convert_original
from cace_calc.errors import ModelFileError, UnsupportedModelError


def _code(marker) -> str:
    return f"import pathlib; pathlib.Path({str(marker)!r}).write_text('ran')"


def _str(s: str) -> bytes:
    b = s.encode()
    return pickle.BINUNICODE + struct.pack("<I", len(b)) + b


def _global(module: str, name: str) -> bytes:
    return pickle.GLOBAL + f"{module}\n{name}\n".encode()


def _exec_via_getattr(marker) -> bytes:
    """Protocol-2 pickle that reaches exec through globals that look harmless:
    getattr(dict, "get")(torch.__builtins__, "exec")(code)."""
    return (pickle.PROTO + b"\x02"
            + _global("builtins", "getattr") + _global("builtins", "dict") + _str("get") + pickle.TUPLE2
            + pickle.REDUCE                                                    # dict.get
            + _global("torch", "__builtins__") + _str("exec") + pickle.TUPLE2 + pickle.REDUCE  # exec
            + _str(_code(marker)) + pickle.TUPLE1 + pickle.REDUCE + pickle.STOP)


def _exec_reduce(marker) -> bytes:
    """Protocol-2 pickle of an object whose __reduce__ is exec(code)."""
    return (pickle.PROTO + b"\x02" + _global("builtins", "exec") + _str(_code(marker)) + pickle.TUPLE1
            + pickle.REDUCE + pickle.STOP)


def _torch_zip_with(path, data_pkl: bytes, extra=()):
    """A real torch.save zip whose data.pkl is replaced (and ``extra`` records added)."""
    buf = io.BytesIO()
    torch.save({"weights": torch.zeros(3)}, buf)
    buf.seek(0)
    with zipfile.ZipFile(buf) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as dst:
        names = src.namelist()
        assert any(n.endswith("/data.pkl") for n in names)
        for n in names:
            dst.writestr(n, data_pkl if n.endswith("/data.pkl") else src.read(n))
        root = names[0].split("/")[0]
        for n in extra:
            dst.writestr(f"{root}/{n}", pickle.dumps(()))


def _refused(path, marker, match):
    with pytest.raises((ModelFileError, UnsupportedModelError), match=match) as err:
        convert_original(path)
    assert not marker.exists(), "code from the file ran"
    assert "\n" not in str(err.value)
    return err.value


def test_payloads_do_run_under_plain_pickle(tmp_path):
    """The payloads used below are live: the standard unpickler runs them."""
    for k, make in enumerate((_exec_reduce, _exec_via_getattr)):
        marker = tmp_path / f"ran{k}"
        pickle.loads(make(marker))
        assert marker.exists()


def test_bare_pickle_stream_is_not_run(tmp_path):
    # not a zip: torch's legacy reader unpickles the magic number with pickle_module.load first
    marker = tmp_path / "ran"
    (tmp_path / "evil.pth").write_bytes(_exec_reduce(marker))
    _refused(tmp_path / "evil.pth", marker, r"builtins\.exec, which a CACE model never needs")


def test_torch_zip_reaching_exec_through_getattr_is_not_run(tmp_path):
    marker = tmp_path / "ran"
    _torch_zip_with(tmp_path / "evil.pth", _exec_via_getattr(marker))
    _refused(tmp_path / "evil.pth", marker, r"builtins\.getattr, which")


def test_legacy_format_object_pickle_is_not_run(tmp_path):
    # a valid legacy header (magic number, protocol, sys info), then the object pickle
    marker = tmp_path / "ran"
    buf = io.BytesIO()
    torch.save({"weights": torch.zeros(3)}, buf, _use_new_zipfile_serialization=False)
    header = io.BytesIO(buf.getvalue())
    for _ in range(3):
        pickle.load(header)
    (tmp_path / "evil.pth").write_bytes(buf.getvalue()[:header.tell()] + _exec_via_getattr(marker))
    _refused(tmp_path / "evil.pth", marker, r"builtins\.getattr, which")


def test_legacy_tar_storage_table_is_not_run(tmp_path):
    # the oldest torch format: a tar whose 'storages' member is read with pickle_module.load
    marker = tmp_path / "ran"
    with tarfile.open(tmp_path / "evil.pth", "w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in (("storages", _exec_reduce(marker)), ("tensors", b""), ("pickle", b"")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    _refused(tmp_path / "evil.pth", marker, r"builtins\.exec, which")


def test_torchscript_archive_is_not_handed_to_jit(tmp_path, monkeypatch):
    # torch.load passes TorchScript archives to torch.jit.load, which compiles the file's code
    marker = tmp_path / "ran"

    def jit_load(*args, **kwargs):
        marker.write_text("ran")

    buf = io.BytesIO()
    torch.save({"weights": torch.zeros(3)}, buf)
    _torch_zip_with(tmp_path / "scripted.pt", zipfile.ZipFile(buf).read("archive/data.pkl"),
                    extra=("constants.pkl",))
    monkeypatch.setattr(torch.jit, "load", jit_load)
    _refused(tmp_path / "scripted.pt", marker, "TorchScript archive")


@pytest.mark.parametrize("module,name", [
    ("builtins", "getattr"), ("builtins", "dict"), ("__builtin__", "eval"), ("torch", "__builtins__"),
    ("torch", "load"), ("torch.hub", "load"), ("torch.serialization", "load"), ("numpy", "load"),
    ("collections", "namedtuple"), ("copyreg", "_reconstructor"), ("_codecs", "encode"), ("os", "system"),
    ("torch._utils", "_rebuild_tensor_v2.__globals__"), ("torch", "nn.Module.__setstate__"),
])
def test_only_exact_globals_resolve(tmp_path, module, name):
    # anything but the exact pairs published CACE files need, including attribute paths
    marker = tmp_path / "ran"
    data = (pickle.PROTO + b"\x04" + _str(module) + _str(name) + pickle.STACK_GLOBAL + pickle.STOP)
    _torch_zip_with(tmp_path / "evil.pth", data)
    _refused(tmp_path / "evil.pth", marker, "which a CACE model never needs")


def test_directory_is_not_a_model_file(tmp_path):
    with pytest.raises(ModelFileError, match="is a directory"):
        convert_original(tmp_path)
