"""The client side of VL2V: talks to an embedding vendor over HTTP only, caches every answer, and
distils the teacher's embeddings into a local student (Align, Distill, Predict).

This package never imports :mod:`vendor_server`: the network is the black box.
"""
