"""The client side of i-PI's socket wire format: connecting, 12-byte headers, raw arrays.

Every message starts with a 12-byte ASCII header padded with spaces (``STATUS``, ``INIT``,
``POSDATA``, ``GETFORCE``, ``EXIT`` from the server; ``NEEDINIT``, ``READY``, ``HAVEDATA``,
``FORCEREADY`` from the client). Numbers travel as native little-endian int32 and float64.
"""

from __future__ import annotations

import socket
import time

import numpy as np

HEADER_LEN = 12
DEFAULT_SOCKETS_PREFIX = "/tmp/ipi_"


class IPIConnectionError(ConnectionError):
    """No i-PI server at the given address, or the server went away during a run."""


class DriverProtocolError(RuntimeError):
    """The server sent something the i-PI protocol does not allow at this point."""


def header(name: str) -> bytes:
    """The 12-byte header for message ``name``."""
    return name.upper().ljust(HEADER_LEN).encode("ascii")


def _describe(unix: str | None, host: str | None, port: int | None, prefix: str) -> str:
    return f"unix socket {prefix + unix!r}" if unix is not None else f"inet address {host}:{port}"


class IPIConnection:
    """A connected client socket to an i-PI server.

    Use :meth:`connect`. ``timeout`` (s) bounds the wait for each message from the server;
    ``None`` waits as long as i-PI needs (it may legitimately pause between steps).
    """

    def __init__(self, sock: socket.socket, where: str, timeout: float | None = None):
        self.sock = sock
        self.where = where
        self.sock.settimeout(timeout)
        self.timeout = timeout

    @classmethod
    def connect(cls, *, unix: str | None = None, host: str | None = None, port: int | None = None,
                sockets_prefix: str = DEFAULT_SOCKETS_PREFIX, wait: float = 0.0,
                timeout: float | None = None) -> IPIConnection:
        """Connect to i-PI at unix socket ``sockets_prefix + unix`` or at ``host:port`` (inet).

        ``wait`` (s): keep retrying that long while nobody listens yet (i-PI starting up).
        Raises :class:`IPIConnectionError` with the address when no server answers.
        """
        if (unix is None) == (host is None):
            raise ValueError("give exactly one of unix=NAME or host=HOST (with port=N)")
        if host is not None and (port is None or not 0 < int(port) < 65536):
            raise ValueError(f"an inet address needs a port between 1 and 65535, got port={port!r}")
        if unix is not None and not unix:
            raise ValueError("unix socket name is empty")
        where = _describe(unix, host, port, sockets_prefix)
        deadline = time.monotonic() + max(float(wait), 0.0)
        while True:
            try:
                sock = cls._open(unix, host, port, sockets_prefix)
                break
            except (FileNotFoundError, ConnectionRefusedError) as e:
                if time.monotonic() < deadline:
                    time.sleep(0.2)
                    continue
                if unix is not None and isinstance(e, FileNotFoundError):
                    hint = ("the file does not exist: start i-PI first, and check that its "
                            f"<ffsocket mode='unix'> has <address>{unix}</address>")
                elif unix is not None:
                    hint = ("the file exists but no server listens on it (left over from an i-PI "
                            "run that crashed?): start i-PI, or remove the stale file")
                else:
                    hint = ("connection refused: start i-PI first, and check the <address> and "
                            "<port> of its <ffsocket mode='inet'>")
                raise IPIConnectionError(f"no i-PI server at {where}: {hint}") from e
            except socket.gaierror as e:
                raise IPIConnectionError(f"cannot resolve host {host!r}: {e.strerror}") from e
            except (TimeoutError, OSError) as e:
                raise IPIConnectionError(f"cannot connect to i-PI at {where}: {e}") from e
        return cls(sock, where, timeout)

    @staticmethod
    def _open(unix, host, port, prefix) -> socket.socket:
        if unix is not None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            address = prefix + unix
        else:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # i-PI's messages are tiny
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)  # notice a vanished machine
            address = (host, int(port))
        sock.settimeout(30.0)  # for connect() only
        try:
            sock.connect(address)
        except BaseException:
            sock.close()
            raise
        return sock

    def recv_bytes(self, n: int) -> bytes:
        """Exactly ``n`` bytes; raises :class:`IPIConnectionError` if the server hangs up."""
        if n < 0:
            raise DriverProtocolError(f"i-PI protocol error: the server announced a message of {n} bytes")
        buf = bytearray(n)
        view = memoryview(buf)
        got = 0
        while got < n:
            try:
                k = self.sock.recv_into(view[got:], n - got)
            except TimeoutError as e:
                raise IPIConnectionError(f"the i-PI server at {self.where} sent nothing for "
                                         f"{self.timeout} s; giving up") from e
            except OSError as e:  # connection reset
                raise IPIConnectionError(f"lost the connection to the i-PI server at {self.where} "
                                         f"in the middle of the run: {e}") from e
            if k == 0:
                raise IPIConnectionError(f"the i-PI server at {self.where} closed the connection in "
                                         "the middle of the run without sending EXIT (it crashed or "
                                         "was killed)")
            got += k
        return bytes(buf)

    def recv_header(self) -> str:
        """The next message name, upper case without padding."""
        raw = self.recv_bytes(HEADER_LEN)
        try:
            return raw.decode("ascii").strip()
        except UnicodeDecodeError:
            raise DriverProtocolError(f"the server sent a non-ASCII message header {raw!r}") from None

    def recv_array(self, dtype, count: int) -> np.ndarray:
        """``count`` values of ``dtype`` (int32 or float64) as a 1-D array."""
        dtype = np.dtype(dtype)
        return np.frombuffer(self.recv_bytes(dtype.itemsize * int(count)), dtype=dtype).copy()

    def recv_int(self) -> int:
        return int(self.recv_array(np.int32, 1)[0])

    def send(self, *parts: bytes) -> None:
        """Send the concatenated ``parts``; a closed server raises :class:`IPIConnectionError`."""
        try:
            self.sock.sendall(b"".join(parts))
        except OSError as e:
            raise IPIConnectionError(f"lost the connection to the i-PI server at {self.where} "
                                     f"while sending: {e}") from e

    def close(self) -> None:
        """Close the socket (idempotent)."""
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
