"""Memory stays flat whatever the table size: the same peak RSS for 10x the rows (bench/memory.py
measures 200k vs 2M; here a smaller pair keeps the suite quick)."""

from __future__ import annotations

import pytest

from lab.memory import peak_rss_kib


@pytest.mark.parametrize("mode", ["full", "incremental"])
def test_peak_rss_does_not_grow_with_rows(mode):
    small, large = peak_rss_kib(50_000, mode), peak_rss_kib(500_000, mode)
    assert large / small < 1.15, (small, large)
