"""The vendor's operator console (``/console``): keys, spend, traffic and extraction coverage on web
pages, read from the ledger (see docs/console.md). :mod:`~vendor_server.console.routes` serves the pages,
:mod:`~vendor_server.console.session` signs the operator in, :mod:`~vendor_server.console.traffic` counts
what the ledger's books do not hold, :mod:`~vendor_server.console.coverage` is the embedding-space
partition, :mod:`~vendor_server.console.charts` draws."""
