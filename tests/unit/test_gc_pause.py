"""driver.gc_paused turns the collector off for a load and back on once the last load ends, even
when loads in threads overlap (a plain save/restore would leave it off)."""

from __future__ import annotations

import gc

from flows.etl.driver import gc_paused


def test_overlapping_pauses_restore_the_collector_once():
    assert gc.isenabled()
    first, second = gc_paused(), gc_paused()
    first.__enter__()
    second.__enter__()
    assert not gc.isenabled()
    first.__exit__(None, None, None)
    assert not gc.isenabled()  # the second load still runs
    second.__exit__(None, None, None)
    assert gc.isenabled()


def test_a_collector_off_before_stays_off():
    gc.disable()
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
