"""Distillation methods. A method is one class, in one module of this package (or anywhere else that
registers it): it declares its ``name``, its ``stages``, the hparams that make it what it is
(``hparam_defaults``) and how it exports (``export_head``), and ``@register_method`` makes it known.
Nothing else lists it: the command line's choices are read from this package's source without torch
(:mod:`~client_distill.methods.catalog`), the trainer, the sweep and the export ask the registry
(:mod:`~client_distill.methods.registry`) for the class.

This ``__init__`` imports nothing, so that the torch-free catalog can be imported alone."""
