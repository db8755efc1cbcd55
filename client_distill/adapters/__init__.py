"""Vendor adapters: one small async interface (:class:`~client_distill.adapters.base.Adapter`) over
each embedding API the client can buy from, chosen by name in :mod:`client_distill.adapters.registry`.
The adapter is assembled from four parts, each a module: the HTTP exchange (``transport``), when to
try again (``retry``), what is reserved before a send may be billed (``reservations``) and how many
items a request may hold (``limits``)."""
