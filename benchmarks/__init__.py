"""Benchmarks of bulk proxy changes against the site emulator (see docs/performance.md)."""
