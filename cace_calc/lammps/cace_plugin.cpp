/* SPDX-License-Identifier: GPL-2.0-only
   Registration of pair_style cace and compute cace/atom with the LAMMPS PLUGIN package.
   Copyright (C) the cace_calc developers.

   Compiled against the LAMMPS headers, hence GPL-2.0 like LAMMPS (see pair_cace.cpp). LAMMPS
   loads the shared library (plugin load FILE, or every *plugin.so in LAMMPS_PLUGIN_PATH) and
   calls lammpsplugin_init with itself, the library handle and its registration callback. */

#include "compute_cace_atom.h"
#include "pair_cace.h"

#ifndef CACE_LAMMPS_VERSION_STRING
#error "compile with -DCACE_LAMMPS_VERSION_STRING=\"D Mon YYYY\""
#endif

using namespace LAMMPS_NS;

extern "C" {
int lammps_version(void *handle);    // LAMMPS' C library interface

// the registration record the PLUGIN package reads (its layout in LAMMPS 2021 and later)
typedef void *(cace_factory1)(void *);
typedef void *(cace_factory2)(void *, int, char **);
typedef struct {
  const char *version;
  const char *style;
  const char *name;
  const char *info;
  const char *author;
  union {
    cace_factory1 *v1;
    cace_factory2 *v2;
  } creator;
  void *handle;
} cace_plugin_record;
typedef void (*cace_register_function)(cace_plugin_record *, void *);

void lammpsplugin_init(void *lmp, void *handle, void *register_function);
}

static void *create_pair_cace(void *lmp)
{
  return static_cast<Pair *>(new PairCACE(static_cast<LAMMPS *>(lmp)));
}

static void *create_compute_cace_atom(void *lmp, int narg, char **arg)
{
  return static_cast<Compute *>(new ComputeCACEAtom(static_cast<LAMMPS *>(lmp), narg, arg));
}

void lammpsplugin_init(void *lmp, void *handle, void *register_function)
{
  // checked when the pair style is created, so that a mismatch ends with a LAMMPS error
  cace_host_lammps_version = lammps_version(lmp);
  cace_plugin_record plugin;
  plugin.version = CACE_LAMMPS_VERSION_STRING;
  plugin.style = "pair";
  plugin.name = "cace";
  plugin.info = "pair_style cace: CACE machine-learning potentials from cace_calc (GPL-2.0 plugin)";
  plugin.author = "the cace_calc developers";
  plugin.creator.v1 = &create_pair_cace;
  plugin.handle = handle;
  auto register_style = reinterpret_cast<cace_register_function>(register_function);
  (*register_style)(&plugin, lmp);

  plugin.style = "compute";
  plugin.name = "cace/atom";
  plugin.info = "compute cace/atom: per-atom uncertainties of pair_style cace (GPL-2.0 plugin)";
  plugin.creator.v2 = &create_compute_cace_atom;
  (*register_style)(&plugin, lmp);
}
