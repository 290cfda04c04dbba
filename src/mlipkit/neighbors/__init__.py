"""Neighbor lists: full lists with integer cell shifts.

``attach_neighbors(batch, cutoff)`` adds ``edge_index`` and ``shifts`` to a
Batch using vesin; :mod:`mlipkit.neighbors.reference` is an O(N²) version used
to test it. ``edge_vectors`` is the one place r_ij is formed.
"""

from mlipkit.neighbors.geometry import edge_vectors
from mlipkit.neighbors.vesin_list import attach_neighbors, neighbor_list

__all__ = ["attach_neighbors", "neighbor_list", "edge_vectors"]
