"""Many runs: the sweep config, the plan (runs and the teacher sets they need), the hparam search and
the launchers (local processes, Ray). Calls :mod:`client_distill.train` and :mod:`client_distill.buy`
directly, never the command line."""
