"""The comparison report's pieces: runs on disk -> one DataFrame -> per-configuration aggregates -> tables,
plots and the Section-7 analyses, assembled by ``python -m experiments.report``."""
