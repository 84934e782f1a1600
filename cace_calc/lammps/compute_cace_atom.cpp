/* SPDX-License-Identifier: GPL-2.0-only
   compute cace/atom: the per-atom uncertainties of pair_style cace ... uncertainty yes.
   Copyright (C) the cace_calc developers.

   Part of the LAMMPS plugin of cace_calc; compiled against the LAMMPS headers and therefore
   distributed under the terms of the GNU General Public License, version 2, like LAMMPS itself
   (https://www.gnu.org/licenses/old-licenses/gpl-2.0.html). See pair_cace.cpp.

   compute ID group-ID cace/atom: a per-atom array of two columns, c_ID[1] the energy sigma of
   the atom (eV) and c_ID[2] its force sigma (eV/A, per Cartesian component), as the ASE
   calculator's energies_uncertainty and forces_uncertainty; zero for atoms outside the group.
   It copies what pair_style cace computed on the current step. */

#include "compute_cace_atom.h"

#include "pair_cace.h"

#include "atom.h"
#include "error.h"
#include "force.h"
#include "memory.h"
#include "update.h"

using namespace LAMMPS_NS;

ComputeCACEAtom::ComputeCACEAtom(LAMMPS *lmp, int narg, char **arg) :
    Compute(lmp, narg, arg), pair(nullptr), nmax(0), sigma(nullptr)
{
  if (narg != 3) error->all(FLERR, "compute cace/atom: expected 'compute ID group-ID cace/atom'");
  peratom_flag = 1;
  size_peratom_cols = 2;
}

ComputeCACEAtom::~ComputeCACEAtom()
{
  memory->destroy(sigma);
}

void ComputeCACEAtom::init()
{
  // pair_style cace, alone or as the one cace sub-style of a hybrid
  pair = dynamic_cast<PairCACE *>(force->pair_match("cace", 1, 0));
  if (!pair)
    error->all(FLERR, "compute cace/atom needs pair_style cace (alone or once in pair_style hybrid)");
  if (!pair->has_uncertainty())
    error->all(FLERR, "compute cace/atom needs 'uncertainty yes' in pair_style cace");
}

void ComputeCACEAtom::compute_peratom()
{
  invoked_peratom = update->ntimestep;
  if (pair->uncertainty_step() != update->ntimestep)
    error->all(FLERR, "compute cace/atom: pair_style cace has not computed step {} (use it in dumps, "
               "fixes and variables of a run)", update->ntimestep);
  if (atom->nmax > nmax) {
    nmax = atom->nmax;
    memory->destroy(sigma);
    memory->create(sigma, nmax, 2, "cace/atom:sigma");
    array_atom = sigma;
  }
  double **from = pair->atom_uncertainty();
  const int *mask = atom->mask;
  for (int i = 0; i < atom->nlocal; i++) {
    const int in_group = mask[i] & groupbit;
    sigma[i][0] = in_group ? from[i][0] : 0.0;
    sigma[i][1] = in_group ? from[i][1] : 0.0;
  }
}

double ComputeCACEAtom::memory_usage()
{
  return 2.0 * nmax * sizeof(double);
}
