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
  void setup() override;
  void finish() override;
  double init_one(int, int) override;
  int pack_forward_comm(int, int *, double *, int, int *) override;
  void unpack_forward_comm(int, int, double *) override;
  int pack_reverse_comm(int, int, double *) override;
  void unpack_reverse_comm(int, int *, double *) override;

  // forward (reverse = 0) or reverse communication of rows [nall, width] of doubles; returns an
  // error message or ""
  std::string communicate(double *rows, long nrows, long width, int reverse);
  // values[n] replaced by their sum (max = 0) or largest value (max = 1) over all ranks
  void allreduce(double *values, long n, int max);

  // uncertainty yes: per local atom the energy sigma (eV) and force sigma (eV/A) of the step
  // uncertainty_step(), as rows [nlocal][2]; nullptr without uncertainty
  int has_uncertainty() const { return uncertainty; }
  double **atom_uncertainty() const { return sigma_atom; }
  bigint uncertainty_step() const { return sigma_step; }

 private:
  PyObject *evaluator;    // a cace_calc.lammps.bridge.PairCACE
  double ghost_cutoff;    // cutoff of the model, Angstrom (LAMMPS adds the skin)
  std::vector<int> pair_i, pair_j;    // the full neighbour list of the local atoms as pairs
  double *comm_rows;      // the rows being communicated, [nall, comm_width]
  int comm_width;
  int elements_set;
  int uncertainty;          // pair_style ... uncertainty yes
  double force_threshold;   // the model's force sigma threshold, eV/A (0: none)
  int warned;               // the threshold warning was printed
  double **sigma_atom;      // [nmax][2]: energy sigma (eV), force sigma (eV/A) of the local atoms
  int sigma_nmax;
  bigint sigma_step;        // the step sigma_atom and pvector belong to (-1: none yet)
  double stats[4];          // energy sigma, largest force sigma, its atom ID, largest so far
  double run_largest[3];    // largest force sigma of the run (eV/A), its atom ID and step
  void check_setup(const char *command);
  void record_uncertainty();
};

}    // namespace LAMMPS_NS

#endif
