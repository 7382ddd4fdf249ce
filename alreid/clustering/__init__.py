"""Clustering views used by the samplers and trainers: k-NN, k-reciprocal Jaccard, DBSCAN, FINCH, NP3."""
