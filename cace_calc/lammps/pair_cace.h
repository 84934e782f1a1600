/* SPDX-License-Identifier: GPL-2.0-only
   pair_style cace: CACE machine-learning potentials in LAMMPS through an embedded Python.
   Copyright (C) the cace_calc developers.

   This file is part of the LAMMPS plugin of cace_calc. It is compiled against the LAMMPS headers
   and is therefore distributed under the terms of the GNU General Public License, version 2, like
   LAMMPS itself (https://www.gnu.org/licenses/old-licenses/gpl-2.0.html). The rest of cace_calc
   is MIT-licensed; the plugin only calls it through the Python C API. */

#ifndef CACE_PAIR_CACE_H
#define CACE_PAIR_CACE_H

#include "pair.h"

#include <string>
#include <vector>

typedef struct _object PyObject;

namespace LAMMPS_NS {

// LAMMPS version (YYYYMMDD) of the process that loaded the plugin; set by lammpsplugin_init
extern int cace_host_lammps_version;

class PairCACE : public Pair {
 public:
  PairCACE(class LAMMPS *);
  ~PairCACE() override;
  void compute(int, int) override;
  void settings(int, char **) override;
  void coeff(int, char **) override;
  void init_style() override;
  double init_one(int, int) override;
  int pack_forward_comm(int, int *, double *, int, int *) override;
  void unpack_forward_comm(int, int, double *) override;
  int pack_reverse_comm(int, int, double *) override;
  void unpack_reverse_comm(int, int *, double *) override;

  // forward (reverse = 0) or reverse communication of rows [nall, width] of doubles; returns an
  // error message or ""
  std::string communicate(double *rows, long nrows, long width, int reverse);

 private:
  PyObject *evaluator;    // a cace_calc.lammps.bridge.PairCACE
  double ghost_cutoff;    // cutoff of the model, Angstrom (LAMMPS adds the skin)
  std::vector<int> pair_i, pair_j;    // the full neighbour list of the local atoms as pairs
  double *comm_rows;      // the rows being communicated, [nall, comm_width]
  int comm_width;
  int elements_set;
  void check_setup(const char *command);
};

}    // namespace LAMMPS_NS

#endif
