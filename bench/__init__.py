"""Benchmarks of the framework against the shell pipeline and madoop."""
