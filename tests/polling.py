"""Waiting on real processes and servers: poll a condition against a deadline, never a bare sleep."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import pytest

T = TypeVar("T")


def until(check: Callable[[], T], timeout: float, what: str, interval: float = 0.25) -> T:
    """The first truthy result of `check`, or a test failure naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not (result := check()):
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} after {timeout:.0f} s")
        time.sleep(interval)
    return result
