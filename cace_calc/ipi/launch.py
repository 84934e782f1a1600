"""Run i-PI and its socket drivers as subprocesses: start, follow progress, stop cleanly.

Every process is stopped (terminate, then kill) when the run ends, fails, times out or is
interrupted; a driver that fails stops i-PI, whose log is quoted in the error.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from .inputs import OUTPUT_PREFIX


def ipi_executable() -> list[str]:
    """The command that starts i-PI with this Python (its ``i-pi`` script)."""
    script = Path(sys.executable).parent / "i-pi"
    if not script.is_file():
        found = shutil.which("i-pi")
        if found is None:
            raise FileNotFoundError("the i-pi program was not found: install i-PI with `pip install ipi`")
        script = Path(found)
    return [sys.executable, str(script)]


def _tail(path: Path, n: int = 15) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(lines[-n:])


def _stop(proc: subprocess.Popen, grace: float = 5.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(grace)


def read_new_lines(path: str | os.PathLike, offset: int) -> tuple[list[str], int]:
    """The complete lines written to the file ``path`` from byte ``offset`` on (none if it does
    not exist yet) and the offset after them: follows a file another process is writing."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            chunk = f.read()
    except FileNotFoundError:
        return [], offset
    end = chunk.rfind(b"\n")
    if end < 0:
        return [], offset
    return chunk[:end].decode(errors="replace").splitlines(), offset + end + 1


class _Progress:
    """Follows the step column of i-PI's properties file."""

    def __init__(self, path: Path, total: int, enabled: bool):
        self.path, self.offset, self.step = path, 0, 0
        self.bar = None
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, unit="step", desc="i-PI")

    def update(self) -> None:
        lines, self.offset = read_new_lines(self.path, self.offset)
        for line in reversed(lines):
            if line.strip() and not line.startswith("#"):
                self.step = int(float(line.split()[0]))
                break
        if self.bar is not None:
            self.bar.n = self.step
            self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def run_ipi(directory: str | os.PathLike, *, drivers: Sequence[Sequence[str]] = (),
            socket_file: str | None = None, total_steps: int = 0, progress: bool = True,
            timeout: float | None = None, startup_timeout: float = 120.0,
            env: dict[str, str] | None = None, on_poll: Callable[[], None] | None = None) -> None:
    """Run ``i-pi input.xml`` in ``directory`` with the given driver commands.

    The drivers start once i-PI has created ``socket_file`` (for unix sockets; otherwise
    right away, and they must retry the connection themselves). Logs go to ``i-pi.log``
    and ``driver-K.log`` in ``directory``. ``timeout`` (s) bounds the whole run; ``env`` is
    the environment of i-PI (default: this process's). ``on_poll`` is called about every 0.1 s
    while the run goes on, and once at its end (e.g. to follow a log).
    Raises ``RuntimeError`` (quoting the failing process's log) if i-PI or a driver fails,
    ``TimeoutError`` when the run takes too long.
    """
    directory = Path(directory)
    start = time.monotonic()
    ipi_log = directory / "i-pi.log"
    driver_logs = [directory / f"driver-{k}.log" for k in range(len(drivers))]
    with contextlib.ExitStack() as stack:  # unwinds: stop each process, then close its log
        if socket_file is not None:
            stack.callback(_remove, socket_file)  # left behind when i-PI is killed
        bar = stack.enter_context(contextlib.closing(
            _Progress(directory / f"{OUTPUT_PREFIX}.out", total_steps, progress)))
        ipi = _start(stack, ipi_executable() + ["input.xml"], directory, ipi_log, env)
        if drivers and socket_file is not None:
            while not os.path.exists(socket_file):
                if ipi.poll() is not None:
                    raise RuntimeError(f"i-PI stopped before opening its socket (exit code "
                                       f"{ipi.returncode}); end of {ipi_log}:\n{_tail(ipi_log)}")
                if time.monotonic() - start > startup_timeout:
                    raise TimeoutError(f"i-PI did not open {socket_file} within {startup_timeout} s; "
                                       f"end of {ipi_log}:\n{_tail(ipi_log)}")
                time.sleep(0.05)
        procs = [_start(stack, cmd, directory, log, None) for cmd, log in zip(drivers, driver_logs)]
        all_gone = None
        while ipi.poll() is None:
            for k, proc in enumerate(procs):
                if proc.poll() not in (None, 0):
                    raise RuntimeError(f"driver {k} failed (exit code {proc.returncode}); end of "
                                       f"{driver_logs[k]}:\n{_tail(driver_logs[k])}")
            if procs and all(p.poll() is not None for p in procs):
                all_gone = all_gone or time.monotonic()
                if time.monotonic() - all_gone > 30:
                    raise RuntimeError(f"all drivers exited but i-PI keeps running; end of {ipi_log}:\n"
                                       f"{_tail(ipi_log)}")
            if timeout is not None and time.monotonic() - start > timeout:
                raise TimeoutError(f"the i-PI run in {directory} did not finish within {timeout} s")
            bar.update()
            if on_poll is not None:
                on_poll()
            time.sleep(0.1)
        bar.update()
        if on_poll is not None:
            on_poll()
        if ipi.returncode != 0:
            raise RuntimeError(f"i-PI failed (exit code {ipi.returncode}); end of {ipi_log}:\n"
                               f"{_tail(ipi_log)}")
        for k, proc in enumerate(procs):  # i-PI sent EXIT: drivers end by themselves
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                raise RuntimeError(f"driver {k} did not exit after i-PI finished") from None
            if proc.returncode != 0:
                raise RuntimeError(f"driver {k} failed (exit code {proc.returncode}); end of "
                                   f"{driver_logs[k]}:\n{_tail(driver_logs[k])}")


def _start(stack: contextlib.ExitStack, cmd, cwd: Path, log: Path, env) -> subprocess.Popen:
    out = stack.enter_context(open(log, "w"))  # noqa: SIM115  (closed by the stack)
    proc = subprocess.Popen(list(cmd), cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, env=env)
    stack.callback(_stop, proc)
    return proc


def _remove(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)
