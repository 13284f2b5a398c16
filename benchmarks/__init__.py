"""Benchmarks: `python -m benchmarks.<name>`; each prints its figures, last line one JSON object."""
