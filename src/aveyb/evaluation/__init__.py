"""Metrics (paper's and standard), learning-rate x seed sweeps with selection on validation,
and reports (markdown / CSV tables, matplotlib plots)."""
