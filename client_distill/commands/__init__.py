"""One module per ``vl2v`` sub-command group. Each exposes ``register(subparsers, settings)``
which adds its parsers and sets ``func`` on them; ``settings`` (a
:class:`~client_distill.buy.settings.ClientSettings`, read from the environment once per parser) gives the
flags that the environment may set their defaults. :mod:`client_distill.cli` lists the modules."""
