"""Benchmarks: ``aveyb bench`` measures throughput, latency and peak memory.

:mod:`~aveyb.bench.runner` holds the measurement method, :mod:`~aveyb.bench.official_style` the
authors'-structure Avey-B we compare against side by side, :mod:`~aveyb.bench.report` the tables
and plots. ``docs/benchmark.md`` describes the method.
"""
