"""One module per ``vl2v`` sub-command group. Each exposes ``register(subparsers)`` which adds its
parsers and sets ``func`` on them; :mod:`client_distill.cli` lists the modules."""
