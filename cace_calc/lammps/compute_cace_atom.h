/* SPDX-License-Identifier: GPL-2.0-only
   compute cace/atom: the per-atom uncertainties of pair_style cace ... uncertainty yes.
   Copyright (C) the cace_calc developers.

   Part of the LAMMPS plugin of cace_calc; compiled against the LAMMPS headers and therefore
   distributed under the terms of the GNU General Public License, version 2, like LAMMPS itself
   (https://www.gnu.org/licenses/old-licenses/gpl-2.0.html). See pair_cace.cpp. */

#ifndef CACE_COMPUTE_CACE_ATOM_H
#define CACE_COMPUTE_CACE_ATOM_H

#include "compute.h"

namespace LAMMPS_NS {

class PairCACE;

class ComputeCACEAtom : public Compute {
 public:
  ComputeCACEAtom(class LAMMPS *, int, char **);
  ~ComputeCACEAtom() override;
  void init() override;
  void compute_peratom() override;
  double memory_usage() override;

 private:
  PairCACE *pair;
  int nmax;
  double **sigma;    // [nmax][2]: energy sigma (eV), force sigma (eV/A)
};

}    // namespace LAMMPS_NS

#endif
