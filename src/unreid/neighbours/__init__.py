"""k-reciprocal neighbourhoods, shared by pseudo labelling and re-ranking.

Both the Jaccard distance that feeds DBSCAN (`unreid.pseudo_labels`) and the
k-reciprocal re-ranking of retrieval results (`unreid.evaluation.rerank`) are
built from the same pieces of Zhong et al. (CVPR 2017): rankings with one tie
rule, reciprocal sets, their expansion, and local query expansion. They live
here so that neither side has to import the other.
"""

from __future__ import annotations

from unreid.neighbours.ranking import ambiguous_rows, ranked_neighbours, sort_candidates
from unreid.neighbours.reciprocal import expanded_pairs, query_expansion, reciprocal_sets
from unreid.neighbours.unit_features import UNIT_NORM_TOL, as_unit_features

__all__ = [
    "UNIT_NORM_TOL",
    "ambiguous_rows",
    "as_unit_features",
    "expanded_pairs",
    "query_expansion",
    "ranked_neighbours",
    "reciprocal_sets",
    "sort_candidates",
]
