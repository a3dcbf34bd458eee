"""Benchmarks: fan-out, end to end through the local stack, cold start and connect rate.

``python -m bench`` runs the default suite and prints one table per benchmark; ``python -m bench NAME
--help`` shows one benchmark's options. Numbers are written as JSON under ``bench/results/``.
Benchmarks assert nothing about timings: they measure and report.
"""
