"""Buying teacher embeddings: the vendor settings (typed, and from ``VL2V_*``), the budgeted
:class:`~client_distill.buy.teacher.Teacher` (an adapter, the disk cache and the query ledger), the order in
which images are bought, and the purchase of a whole teacher set, written as versioned files. Builds on
:mod:`client_distill.adapters` and :mod:`client_distill.data`."""
