/* SPDX-License-Identifier: GPL-2.0-only
   pair_style cace: CACE machine-learning potentials in LAMMPS through an embedded Python.
   Copyright (C) the cace_calc developers.

   This file is part of the LAMMPS plugin of cace_calc. It is compiled against the LAMMPS headers
   and is therefore distributed under the terms of the GNU General Public License, version 2, like
   LAMMPS itself (https://www.gnu.org/licenses/old-licenses/gpl-2.0.html). The rest of cace_calc
   is MIT-licensed; the plugin only calls it through the Python C API.

   How it works: LAMMPS keeps a ghost shell of one model cutoff + skin around each rank's atoms
   (init_one returns the cutoff) and a full neighbour list of the local atoms. Every step
   compute() hands zero-copy views of the positions, types and forces of the local and ghost
   atoms and the neighbour pairs to cace_calc.lammps.bridge.PairCACE.compute, which builds the
   graph of the edges into the local atoms, sums their energies and adds minus the gradient to
   the forces of all atoms; LAMMPS sends the ghost forces home (newton_pair on).
   Between message-passing layers the bridge calls back into this pair style (communicate) to
   copy per-atom quantities of the local atoms to their ghosts (forward communication) and, in
   the backward pass, to sum the ghosts' gradients onto the atoms they copy (reverse
   communication). The virial comes from sum_i x_i f_i over local and ghost atoms.
   With 'uncertainty yes' the bridge also fills, every step, each local atom's energy and force
   sigma (sigma_atom, read by compute cace/atom) and the global values (the same on every rank:
   energy sigma, largest force sigma, its atom ID, largest so far), which rank 0 puts in
   pvector for 'compute ID all pair cace' (which sums pvector over the ranks); it warns once when
   the largest force sigma passes the model's threshold and logs the largest of each run. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "pair_cace.h"

#include "atom.h"
#include "comm.h"
#include "error.h"
#include "force.h"
#include "memory.h"
#include "neigh_list.h"
#include "neighbor.h"
#include "update.h"
#include "utils.h"

#include <cstring>
#include <dlfcn.h>
#include <string>

#ifndef CACE_PYTHON
#error "compile with -DCACE_PYTHON=\"/path/to/python\" (cace-calc lammps build does this)"
#endif
#ifndef CACE_LIBPYTHON
#error "compile with -DCACE_LIBPYTHON=\"/path/to/libpythonX.Y.so\""
#endif
#ifndef CACE_LAMMPS_VERSION
#error "compile with -DCACE_LAMMPS_VERSION=YYYYMMDD, the LAMMPS version of the headers"
#endif

using namespace LAMMPS_NS;

int LAMMPS_NS::cace_host_lammps_version = 0;

namespace {

// Start the interpreter when LAMMPS runs as its own program (lmp); inside Python (the lammps
// module) it is already running. Returns an error message or "".
std::string start_python()
{
  if (Py_IsInitialized()) return "";
  // extension modules (numpy, torch) expect the interpreter's symbols to be global
  if (!dlopen(CACE_LIBPYTHON, RTLD_NOW | RTLD_GLOBAL))
    return std::string("cannot load ") + CACE_LIBPYTHON + ": " + dlerror();
  PyConfig config;
  PyConfig_InitPythonConfig(&config);
  config.install_signal_handlers = 0;    // leave Ctrl-C and MPI's signals to LAMMPS
  config.parse_argv = 0;
  // the Python (and virtual environment) the plugin was built with, so cace_calc is importable
  PyStatus status = PyConfig_SetBytesString(&config, &config.program_name, CACE_PYTHON);
  if (!PyStatus_Exception(status)) status = Py_InitializeFromConfig(&config);
  PyConfig_Clear(&config);
  if (PyStatus_Exception(status))
    return std::string("cannot start Python ") + CACE_PYTHON + ": " +
        (status.err_msg ? status.err_msg : "unknown reason");
  PyEval_SaveThread();    // release the GIL: every call below takes it with PyGILState_Ensure
  return "";
}

// holds the GIL for the lifetime of the object (also when an error unwinds the stack)
class GIL {
 public:
  GIL() : state(PyGILState_Ensure()) {}
  ~GIL() { PyGILState_Release(state); }
  GIL(const GIL &) = delete;
  GIL &operator=(const GIL &) = delete;

 private:
  PyGILState_STATE state;
};

// the pending Python exception as one line, "TypeName: message"; clears it
std::string python_error()
{
  PyObject *type = nullptr, *value = nullptr, *trace = nullptr;
  PyErr_Fetch(&type, &value, &trace);
  PyErr_NormalizeException(&type, &value, &trace);
  std::string msg = "unknown Python error";
  if (type) {
    msg = reinterpret_cast<PyTypeObject *>(type)->tp_name;
    PyObject *text = value ? PyObject_Str(value) : nullptr;
    if (text) {
      const char *s = PyUnicode_AsUTF8(text);
      if (s && *s) msg += std::string(": ") + s;
      Py_DECREF(text);
    }
    PyErr_Clear();
  }
  Py_XDECREF(type);
  Py_XDECREF(value);
  Py_XDECREF(trace);
  for (char &c : msg)
    if (c == '\n' || c == '\r') c = ' ';
  return msg;
}

PyObject *memory_view(void *data, size_t bytes, int flags)
{
  static char empty[8];
  return PyMemoryView_FromMemory(bytes ? static_cast<char *>(data) : empty,
                                 static_cast<Py_ssize_t>(bytes), flags);
}

const char *const CAPSULE_NAME = "cace_calc.lammps.PairCACE";

// communicate(rows, reverse): the Python callable the bridge exchanges per-atom rows with; its
// self is a capsule holding the PairCACE
PyObject *communicate_rows(PyObject *capsule, PyObject *args)
{
  PyObject *rows = nullptr;
  int reverse = 0;
  if (!PyArg_ParseTuple(args, "Op", &rows, &reverse)) return nullptr;
  auto *pair = static_cast<PairCACE *>(PyCapsule_GetPointer(capsule, CAPSULE_NAME));
  if (!pair) return nullptr;
  Py_buffer view;
  if (PyObject_GetBuffer(rows, &view, PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE | PyBUF_FORMAT) != 0)
    return nullptr;
  std::string problem;
  if (view.ndim != 2 || view.itemsize != sizeof(double) || !view.format || strcmp(view.format, "d") != 0)
    problem = "communicate: rows must be a C-contiguous float64 array [nall, width]";
  else
    problem = pair->communicate(static_cast<double *>(view.buf), view.shape[0], view.shape[1], reverse);
  PyBuffer_Release(&view);
  if (!problem.empty()) {
    PyErr_SetString(PyExc_ValueError, problem.c_str());
    return nullptr;
  }
  Py_RETURN_NONE;
}

PyMethodDef communicate_def = {"communicate", communicate_rows, METH_VARARGS,
                               "communicate(rows, reverse): LAMMPS forward or reverse communication"};

// allreduce(values, op): MPI_Allreduce in place of a float64 array [n] over the ranks, op "sum"
// or "max"; its self is a capsule holding the PairCACE
PyObject *allreduce_values(PyObject *capsule, PyObject *args)
{
  PyObject *values = nullptr;
  const char *op = nullptr;
  if (!PyArg_ParseTuple(args, "Os", &values, &op)) return nullptr;
  auto *pair = static_cast<PairCACE *>(PyCapsule_GetPointer(capsule, CAPSULE_NAME));
  if (!pair) return nullptr;
  const int max = strcmp(op, "max") == 0;
  if (!max && strcmp(op, "sum") != 0) {
    PyErr_Format(PyExc_ValueError, "allreduce: op must be 'sum' or 'max', got '%s'", op);
    return nullptr;
  }
  Py_buffer view;
  if (PyObject_GetBuffer(values, &view, PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE | PyBUF_FORMAT) != 0)
    return nullptr;
  int ok = view.ndim == 1 && view.itemsize == sizeof(double) && view.format && strcmp(view.format, "d") == 0;
  if (ok) pair->allreduce(static_cast<double *>(view.buf), view.shape[0], max);
  PyBuffer_Release(&view);
  if (!ok) {
    PyErr_SetString(PyExc_ValueError, "allreduce: values must be a C-contiguous float64 array [n]");
    return nullptr;
  }
  Py_RETURN_NONE;
}

PyMethodDef allreduce_def = {"allreduce", allreduce_values, METH_VARARGS,
                             "allreduce(values, op): MPI_Allreduce of float64 values over the ranks"};

}    // namespace

/* ---------------------------------------------------------------------- */

PairCACE::PairCACE(LAMMPS *lmp) :
    Pair(lmp), evaluator(nullptr), ghost_cutoff(0.0), comm_rows(nullptr), comm_width(0), elements_set(0),
    uncertainty(0), force_threshold(0.0), warned(0), sigma_atom(nullptr), sigma_nmax(0), sigma_step(-1),
    stats{0.0, 0.0, 0.0, 0.0}, run_largest{-1.0, 0.0, 0.0}
{
  if (cace_host_lammps_version != CACE_LAMMPS_VERSION)
    error->all(FLERR,
               "pair_style cace: the plugin was built for LAMMPS version {} but this LAMMPS is "
               "version {}; rebuild it with: cace-calc lammps build",
               CACE_LAMMPS_VERSION, cace_host_lammps_version);
  single_enable = 0;
  restartinfo = 0;
  one_coeff = 1;
  manybody_flag = 1;
  centroidstressflag = CENTROID_NOTAVAIL;
  // 'compute ID all pair cace' gives nextra values: 4 with uncertainty yes (settings), else none
  memory->create(pvector, 4, "pair:pvector");
  for (int i = 0; i < 4; i++) pvector[i] = 0.0;
}

PairCACE::~PairCACE()
{
  if (evaluator && Py_IsInitialized()) {
    GIL gil;
    Py_DECREF(evaluator);
  }
  if (allocated) {
    memory->destroy(setflag);
    memory->destroy(cutsq);
  }
  memory->destroy(sigma_atom);
  memory->destroy(pvector);
}

/* ----------------------------------------------------------------------
   pair_style cace MODEL [dtype float32|float64] [device cpu|cuda|cuda:N] [compile no|yes]
                         [uncertainty no|yes]
------------------------------------------------------------------------- */

void PairCACE::settings(int narg, char **arg)
{
  if (narg < 1 || narg % 2 == 0)
    error->all(FLERR,
               "pair_style cace: expected MODEL [dtype float32|float64] [device cpu|cuda] [compile no|yes] "
               "[uncertainty no|yes]");
  if (strcmp(update->unit_style, "metal") != 0)
    error->all(FLERR, "pair_style cace needs 'units metal' (eV, Angstrom), not 'units {}'",
               update->unit_style);
  std::string dtype = "float64", device = "cpu", compile = "no", with_uncertainty = "no";
  for (int i = 1; i < narg; i += 2) {
    if (strcmp(arg[i], "dtype") == 0)
      dtype = arg[i + 1];
    else if (strcmp(arg[i], "device") == 0)
      device = arg[i + 1];
    else if (strcmp(arg[i], "compile") == 0)
      compile = arg[i + 1];
    else if (strcmp(arg[i], "uncertainty") == 0)
      with_uncertainty = arg[i + 1];
    else
      error->all(FLERR, "pair_style cace: unknown keyword '{}'; use dtype, device, compile or uncertainty",
                 arg[i]);
  }

  std::string failure = start_python();
  if (!failure.empty()) error->all(FLERR, "pair_style cace: " + failure);

  std::string message;
  {
    GIL gil;
    Py_CLEAR(evaluator);
    elements_set = 0;
    uncertainty = warned = 0;
    nextra = 0;
    sigma_step = -1;
    PyObject *module = PyImport_ImportModule("cace_calc.lammps.bridge");
    if (module) {
      evaluator = PyObject_CallMethod(module, "PairCACE", "sssss", arg[0], dtype.c_str(), device.c_str(),
                                      compile.c_str(), with_uncertainty.c_str());
      Py_DECREF(module);
    }
    PyObject *cut = evaluator ? PyObject_GetAttrString(evaluator, "ghost_cutoff") : nullptr;
    if (cut) {
      ghost_cutoff = PyFloat_AsDouble(cut);
      Py_DECREF(cut);
    }
    // the communication buffers hold the widest per-atom row the model exchanges
    PyObject *width = cut ? PyObject_GetAttrString(evaluator, "exchange_width") : nullptr;
    if (width) {
      comm_forward = comm_reverse = static_cast<int>(PyLong_AsLong(width));
      Py_DECREF(width);
    }
    // the model's force sigma threshold (eV/A; 0: none), for the warning
    PyObject *threshold = width ? PyObject_GetAttrString(evaluator, "force_threshold") : nullptr;
    if (threshold) {
      force_threshold = PyFloat_AsDouble(threshold);
      Py_DECREF(threshold);
    }
    PyObject *capsule = threshold ? PyCapsule_New(this, CAPSULE_NAME, nullptr) : nullptr;
    PyObject *function = capsule ? PyCFunction_New(&communicate_def, capsule) : nullptr;
    PyObject *reduce = function ? PyCFunction_New(&allreduce_def, capsule) : nullptr;
    Py_XDECREF(capsule);
    PyObject *result =
        reduce ? PyObject_CallMethod(evaluator, "set_communicator", "OO", function, reduce) : nullptr;
    Py_XDECREF(function);
    Py_XDECREF(reduce);
    Py_XDECREF(result);
    if (PyErr_Occurred()) {
      message = python_error();
      Py_CLEAR(evaluator);
    }
  }
  if (!message.empty()) error->all(FLERR, "pair_style cace: " + message);
  uncertainty = with_uncertainty == "yes";
  nextra = uncertainty ? 4 : 0;
}

/* ----------------------------------------------------------------------
   pair_coeff * * EL1 EL2 ... (one element symbol per atom type)
------------------------------------------------------------------------- */

void PairCACE::coeff(int narg, char **arg)
{
  if (!evaluator) error->all(FLERR, "pair_coeff cace: pair_style cace MODEL must come first");
  int ntypes = atom->ntypes;
  if (narg != 2 + ntypes || strcmp(arg[0], "*") != 0 || strcmp(arg[1], "*") != 0)
    error->all(FLERR, "pair_coeff cace: expected '* *' and one element per atom type ({} types)",
               ntypes);

  std::string message;
  {
    GIL gil;
    PyObject *symbols = PyList_New(ntypes);
    for (int i = 0; i < ntypes; i++) PyList_SET_ITEM(symbols, i, PyUnicode_FromString(arg[2 + i]));
    PyObject *result = PyObject_CallMethod(evaluator, "set_elements", "O", symbols);
    Py_DECREF(symbols);
    if (!result) message = python_error();
    Py_XDECREF(result);
  }
  if (!message.empty()) error->all(FLERR, "pair_coeff cace: " + message);

  if (!allocated) {
    allocated = 1;
    memory->create(setflag, ntypes + 1, ntypes + 1, "pair:setflag");
    memory->create(cutsq, ntypes + 1, ntypes + 1, "pair:cutsq");
  }
  for (int i = 1; i <= ntypes; i++)
    for (int j = i; j <= ntypes; j++) setflag[i][j] = 1;
  elements_set = 1;
}

/* ---------------------------------------------------------------------- */

void PairCACE::check_setup(const char *command)
{
  if (strcmp(update->unit_style, "metal") != 0)
    error->all(FLERR, "{}: pair_style cace needs 'units metal' (eV, Angstrom), not 'units {}'",
               command, update->unit_style);
  if (force->newton_pair == 0)
    error->all(FLERR, "{}: pair_style cace needs 'newton on' (forces on ghost atoms are sent home)",
               command);
  if (!evaluator || !elements_set)
    error->all(FLERR, "{}: pair_style cace needs 'pair_coeff * * EL1 EL2 ...'", command);
}

void PairCACE::init_style()
{
  check_setup("run");
  // every neighbour of a local atom within cutoff + skin, local or ghost (the bridge drops the
  // pairs beyond the cutoff)
  neighbor->add_request(this, NeighConst::REQ_FULL);
}

double PairCACE::init_one(int, int)
{
  // sets the ghost shell: every atom whose features reach a local atom's energy
  return ghost_cutoff;
}

/* ---------------------------------------------------------------------- */

void PairCACE::compute(int eflag, int vflag)
{
  ev_init(eflag, vflag);
  int nlocal = atom->nlocal;
  int nall = nlocal + atom->nghost;    // a rank without local atoms still joins the exchanges
  if (uncertainty && atom->nmax > sigma_nmax) {
    sigma_nmax = atom->nmax;
    memory->destroy(sigma_atom);
    memory->create(sigma_atom, sigma_nmax, 2, "pair:sigma_atom");
  }

  // the neighbour list as (i, j) pairs, i local
  size_t npairs = 0;
  for (int ii = 0; ii < list->inum; ii++) npairs += list->numneigh[list->ilist[ii]];
  pair_i.resize(npairs);
  pair_j.resize(npairs);
  size_t k = 0;
  for (int ii = 0; ii < list->inum; ii++) {
    int i = list->ilist[ii];
    const int *jlist = list->firstneigh[i];
    for (int jj = 0; jj < list->numneigh[i]; jj++, k++) {
      pair_i[k] = i;
      pair_j[k] = jlist[jj] & NEIGHMASK;
    }
  }

  std::string message;
  {
    GIL gil;
    size_t n = static_cast<size_t>(nall);
    PyObject *pi = memory_view(pair_i.data(), npairs * sizeof(int), PyBUF_READ);
    PyObject *pj = memory_view(pair_j.data(), npairs * sizeof(int), PyBUF_READ);
    PyObject *x = memory_view(&atom->x[0][0], 3 * n * sizeof(double), PyBUF_READ);
    PyObject *type = memory_view(atom->type, n * sizeof(int), PyBUF_READ);
    PyObject *f = memory_view(&atom->f[0][0], 3 * n * sizeof(double), PyBUF_WRITE);
    PyObject *ea = Py_None, *va = Py_None;
    Py_INCREF(Py_None);
    Py_INCREF(Py_None);
    if (eflag_atom) {
      Py_DECREF(ea);
      ea = memory_view(eatom, n * sizeof(double), PyBUF_WRITE);
    }
    if (vflag_atom) {
      Py_DECREF(va);
      va = memory_view(&vatom[0][0], 6 * n * sizeof(double), PyBUF_WRITE);
    }
    // uncertainty yes: the atom IDs, the per-atom sigmas and the global values
    PyObject *tags = Py_None, *sig = Py_None, *st = Py_None;
    if (uncertainty) {
      static_assert(sizeof(tagint) == sizeof(int), "the bridge reads atom IDs as int32");
      tags = memory_view(atom->tag, n * sizeof(tagint), PyBUF_READ);
      size_t rows = static_cast<size_t>(nlocal) * 2 * sizeof(double);
      sig = memory_view(rows ? &sigma_atom[0][0] : nullptr, rows, PyBUF_WRITE);
      st = memory_view(stats, sizeof(stats), PyBUF_WRITE);
    } else {
      Py_INCREF(Py_None);
      Py_INCREF(Py_None);
      Py_INCREF(Py_None);
    }
    PyObject *result = PyObject_CallMethod(evaluator, "compute", "iiOOOOOOOOOO", nlocal, nall, x, type, pi,
                                           pj, f, ea, va, tags, sig, st);
    double energy = result ? PyFloat_AsDouble(result) : 0.0;
    if (PyErr_Occurred()) message = python_error();
    Py_XDECREF(result);
    Py_DECREF(x);
    Py_DECREF(type);
    Py_DECREF(pi);
    Py_DECREF(pj);
    Py_DECREF(f);
    Py_DECREF(ea);
    Py_DECREF(va);
    Py_DECREF(tags);
    Py_DECREF(sig);
    Py_DECREF(st);
    if (eflag_global) eng_vdwl += energy;
  }
  if (!message.empty()) error->one(FLERR, "pair cace: " + message);
  if (uncertainty) record_uncertainty();

  if (vflag_fdotr) virial_fdotr_compute();
}

/* ----------------------------------------------------------------------
   uncertainty yes: the step's values for compute pair (pvector, summed over the ranks: rank 0
   holds them) and compute cace/atom; the warning, once, when the largest force sigma passes
   the model's threshold
------------------------------------------------------------------------- */

void PairCACE::record_uncertainty()
{
  sigma_step = update->ntimestep;
  if (stats[1] > run_largest[0]) {
    run_largest[0] = stats[1];
    run_largest[1] = stats[2];
    run_largest[2] = static_cast<double>(update->ntimestep);
  }
  for (int i = 0; i < 4; i++) pvector[i] = comm->me == 0 ? stats[i] : 0.0;
  if (force_threshold > 0.0 && stats[1] > force_threshold && !warned) {
    warned = 1;
    if (comm->me == 0)
      error->warning(FLERR,
                     "pair cace: step {}: force uncertainty {:.3f} eV/A on atom ID {} passed the model's "
                     "threshold {:.3f} eV/A; the model is outside its training data here",
                     update->ntimestep, stats[1], static_cast<bigint>(stats[2]), force_threshold);
  }
}

// a run starts: its largest force sigma starts again
void PairCACE::setup()
{
  run_largest[0] = -1.0;
}

// a run ends: its largest force sigma, in the log
void PairCACE::finish()
{
  if (uncertainty && run_largest[0] >= 0.0 && comm->me == 0)
    utils::logmesg(lmp, "pair cace: largest force uncertainty of the run {:.4g} eV/A on atom ID {} at step {}\n",
                   run_largest[0], static_cast<bigint>(run_largest[1]), static_cast<bigint>(run_largest[2]));
}

void PairCACE::allreduce(double *values, long n, int max)
{
  MPI_Allreduce(MPI_IN_PLACE, values, static_cast<int>(n), MPI_DOUBLE, max ? MPI_MAX : MPI_SUM, world);
}

/* ----------------------------------------------------------------------
   per-atom rows of the bridge: forward and reverse communication
------------------------------------------------------------------------- */

std::string PairCACE::communicate(double *rows, long nrows, long width, int reverse)
{
  if (nrows != atom->nlocal + atom->nghost)
    return "communicate: " + std::to_string(nrows) + " rows for " +
        std::to_string(atom->nlocal + atom->nghost) + " local and ghost atoms";
  if (width < 1 || width > comm_forward)
    return "communicate: row width " + std::to_string(width) + " outside 1.." + std::to_string(comm_forward);
  comm_rows = rows;
  comm_width = static_cast<int>(width);
  if (reverse)
    comm->reverse_comm(this, comm_width);
  else
    comm->forward_comm(this, comm_width);
  comm_rows = nullptr;
  return "";
}

int PairCACE::pack_forward_comm(int n, int *list, double *buf, int, int *)
{
  for (int i = 0; i < n; i++)
    std::memcpy(buf + static_cast<size_t>(i) * comm_width,
                comm_rows + static_cast<size_t>(list[i]) * comm_width, comm_width * sizeof(double));
  return n * comm_width;
}

void PairCACE::unpack_forward_comm(int n, int first, double *buf)
{
  std::memcpy(comm_rows + static_cast<size_t>(first) * comm_width, buf,
              static_cast<size_t>(n) * comm_width * sizeof(double));
}

int PairCACE::pack_reverse_comm(int n, int first, double *buf)
{
  std::memcpy(buf, comm_rows + static_cast<size_t>(first) * comm_width,
              static_cast<size_t>(n) * comm_width * sizeof(double));
  return n * comm_width;
}

void PairCACE::unpack_reverse_comm(int n, int *list, double *buf)
{
  for (int i = 0; i < n; i++) {
    double *row = comm_rows + static_cast<size_t>(list[i]) * comm_width;
    const double *in = buf + static_cast<size_t>(i) * comm_width;
    for (int k = 0; k < comm_width; k++) row[k] += in[k];
  }
}
