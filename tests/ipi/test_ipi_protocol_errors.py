"""A server that breaks the i-PI protocol: the driver names the protocol error and allocates
nothing the message announces beyond sane bounds."""

import os
import socket
import threading

import numpy as np
import pytest
from ipi_helpers import model_file, socket_name, water_box, water_model

from cace_calc.cli import main
from cace_calc.ipi import CACEDriver, DriverProtocolError
from cace_calc.ipi.protocol import IPIConnection, header


def _int(v: int) -> bytes:
    return np.int32(v).tobytes()


def _init(text: bytes) -> bytes:
    return header("INIT") + _int(0) + _int(len(text)) + text


def _serve_bytes(data: bytes):
    """Run a driver on one end of a socket pair whose other end has sent ``data``."""
    ours, theirs = socket.socketpair()
    with theirs:
        theirs.sendall(data)
        driver = CACEDriver(water_model(), template=water_box())
        with IPIConnection(ours, "test server", timeout=10) as conn:
            driver._serve(conn)


@pytest.mark.parametrize("data,match", [
    (header("INIT") + _int(0) + _int(-5), "INIT announced a parameter string of -5 bytes"),
    (header("INIT") + _int(0) + _int(2**31 - 1), "INIT announced a parameter string of 2147483647 bytes"),
    (_init(b"batch_size: 1000000000000"), "INIT announced batch_size 1000000000000"),
    (_init(b"batch_size: 1e12"), "INIT announced batch_size '1e12', not an integer"),
    (_init(b"batch_size: 0"), "INIT announced batch_size 0"),
])
def test_bad_init_is_a_named_protocol_error(data, match):
    with pytest.raises(DriverProtocolError, match=f"i-PI protocol error: {match}"):
        _serve_bytes(data)


def test_negative_message_length_is_refused():
    ours, theirs = socket.socketpair()
    with theirs, IPIConnection(ours, "test server", timeout=10) as conn:
        with pytest.raises(DriverProtocolError, match="message of -1 bytes"):
            conn.recv_bytes(-1)


def test_command_line_reports_the_protocol_error(tmp_path, capsys):
    name = socket_name()
    path = f"/tmp/ipi_{name}"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)

    def serve():
        conn, _ = server.accept()
        with conn:
            conn.sendall(header("STATUS"))
            conn.recv(12)
            conn.sendall(header("INIT") + _int(0) + _int(-5))
            conn.recv(12)  # returns when the driver hangs up

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        water_box().write(tmp_path / "w.xyz")
        rc = main(["ipi", "--model", str(model_file(tmp_path)), "--unix", name, "--template",
                   str(tmp_path / "w.xyz"), "--timeout", "10"])
        thread.join(10)
    finally:
        server.close()
        os.unlink(path)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1
    assert err == ["cace-calc ipi: error: i-PI protocol error: INIT announced a parameter string of -5 bytes "
                   "(expected 0 to 67108864)"]
