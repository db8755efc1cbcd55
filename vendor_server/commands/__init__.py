"""One module per ``vl2v-vendor`` sub-command group, each with ``register(subparsers)``."""
