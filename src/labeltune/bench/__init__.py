"""`labeltune bench`: label supervision vs prompting vs an encoder, on the paper's datasets."""

from .runner import list_suites, load_suite, run_suite

__all__ = ["list_suites", "load_suite", "run_suite"]
