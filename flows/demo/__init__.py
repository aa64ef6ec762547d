"""The demo and its sample data: a source database to load, for `etlctl demo`, tests and benchmarks."""
