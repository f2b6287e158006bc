"""Library preparation: trim low-confidence residues and split predicted models into domains.

Full-length predicted models fit poorly as one rigid body: disordered tails and linkers float
outside any density, and domains move relative to each other. This subpackage turns one model into
a list of compact domain candidates, each an :class:`~difffit_screen.structures.Atoms` of its own.

Steps (:func:`split_domains`)
-----------------------------
1. **Trim** (:func:`trim_low_confidence`, the package's one pLDDT trimming, also used by the
   library store): for predicted models (AlphaFold, ColabFold ...), whole residues whose pLDDT
   (B-factor column) is below ``plddt_min`` (default 70, the usual "confident" threshold of
   AlphaFold DB) are removed.
2. **Cluster** the remaining residues into domains:

   - *PAE route* (a predicted-aligned-error matrix is given, see :func:`read_pae`): the residues
     are the nodes of a graph with an edge of weight ``1 / PAE**pae_power`` between every pair
     whose (symmetrised) PAE is below ``pae_cutoff`` (5 Å), clustered by modularity at
     resolution 1: Louvain (seeded, default, fast) or greedy modularity (Clauset-Newman-Moore).
     This is Tristan Croll's ``pae_to_domains`` (as used by ChimeraX and DomainFit), with
     self-loops left out.
   - *Structure route* (no PAE): recursive bisection of the residue contact graph (CA-CA within
     ``contact_cutoff`` = 8 Å). Each bisection tries every partition of the current residue set,
     in sequence order, into one inner segment and the rest (one or two cut points, so a domain
     may be discontinuous, like the GroEL equatorial domain) and takes the one of lowest
     normalised cut ``cut/vol(A) + cut/vol(B)``. A split is kept when that value is below
     ``ncut_max`` (0.05) and both parts hold at least ``min_size`` residues; parts are split
     again the same way. The normalised cut is the compactness criterion: it is the fraction of
     each part's contacts that cross the interface, small only for two compact bodies that touch
     over a small face.

3. **Clean up**: runs of one label shorter than ``min_segment`` residues (15) are given to the
   domain they have most contacts (or PAE-graph weight) with; domains below ``min_size``
   residues (40) are merged into the domain they have most contacts with, or dropped when they
   touch none; domains above ``max_size`` (600) are bisected further at their best cut,
   whatever its value.
4. Each domain becomes an :class:`Atoms` named ``<accession or parent name>_D<n>``, ``n`` from 1
   in sequence order of each domain's first residue, with ``meta`` keys ``parent``,
   ``residue_ranges`` (``"A:1-133,A:409-523"``), ``domain_index``, ``n_domains``, ``n_residues``,
   ``n_pieces`` (stretches once trimmed residues are skipped: 2 for a domain interrupted by
   another), ``method``, ``mean_plddt``, ``compactness`` (radius of gyration over
   ``2.2 * n**0.38`` Å, about 1 for a compact globule) and ``plddt_min`` (the cut-off applied,
   or ``None``), besides the parent's own keys (``accession`` ...).

Residues are the polymer residues of the model in file order (the order of the PAE matrix rows).

Modules
-------
``residues``
    :class:`Residues`, the per-residue view of a model; residue ranges; compactness.
``plddt``
    whether B-factors are pLDDT; trimming low-confidence residues (domains and store).
``pae``
    PAE JSON files: reading their layouts, finding a model's file.
``bisection``
    the structure route: contact graph, normalised-cut bisection.
``pae_clusters``
    the PAE route: modularity clustering of the PAE graph.
``cleanup``
    label clean-up: short runs, small and large domains, sequence order.
``split``
    :func:`assign_domains` and :func:`split_domains`, the two steps together.
``table``
    the ``domains.parquet`` rows and the run summary.
``files``
    model files in, domain files and tables out (the ``domains`` command's work).
"""

from . import bisection, cleanup, files, pae, pae_clusters, plddt, residues, split, table
from .bisection import *  # noqa: F403
from .cleanup import *  # noqa: F403
from .files import *  # noqa: F403
from .pae import *  # noqa: F403
from .pae_clusters import *  # noqa: F403
from .plddt import *  # noqa: F403
from .residues import *  # noqa: F403
from .split import *  # noqa: F403
from .table import *  # noqa: F403

# the public names of each module, in the order of the steps
__all__ = [
    *residues.__all__,
    *plddt.__all__,
    *pae.__all__,
    *bisection.__all__,
    *pae_clusters.__all__,
    *cleanup.__all__,
    *split.__all__,
    *table.__all__,
    *files.__all__,
]
