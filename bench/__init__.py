"""Benchmarks: `make bench` (python -m bench). Each reports ratios against a baseline run in the
same process, because these machines are shared and absolute timings drift from run to run."""
