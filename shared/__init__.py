"""What the vendor and the client legitimately share: the wire protocol and the synthetic world.

Nothing in here may import :mod:`vendor_server` or :mod:`client_distill`; both sides import it.
"""
