"""Vendor adapters: one small async interface (:class:`~client_distill.adapters.base.Adapter`) over
each embedding API the client can buy from, chosen by name in :mod:`client_distill.adapters.registry`."""
