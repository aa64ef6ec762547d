"""Run every benchmark in turn."""

from bench import memory

memory.main()
