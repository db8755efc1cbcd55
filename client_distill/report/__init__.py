"""The protocol's report (tables, plot, premise diagnostics, cost against the teacher) and the demo,
which runs a sweep against a local vendor and reports it."""
