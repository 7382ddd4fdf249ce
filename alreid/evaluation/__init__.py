"""Evaluation: Market-1501 retrieval metrics, BAKS/BAUS/AUC and the paper's open-set protocol.

``protocol`` is imported lazily by callers that need it; everything here needs only numpy,
pandas and scikit-learn.
"""

from alreid.evaluation.metrics import auc_known_unknown, baks, baus, evaluate_retrieval, rank_metrics

__all__ = ["auc_known_unknown", "baks", "baus", "evaluate_retrieval", "rank_metrics"]
