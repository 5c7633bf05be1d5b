"""Benchmarks for langtransfer: ``python -m benchmarks.run [--quick]`` (see docs/performance.md)."""
