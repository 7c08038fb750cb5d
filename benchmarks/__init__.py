"""On-demand benchmarks (`python -m benchmarks.<name>`); not part of the test suite or the DVC pipeline."""
