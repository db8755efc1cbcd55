"""The vendor: owns a CLIP model and sells it only as metered, pay-per-query embedding endpoints.

This package never imports :mod:`client_distill`.
"""
