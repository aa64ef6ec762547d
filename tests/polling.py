"""Waiting on real processes and servers: poll a condition against a deadline, never a bare sleep."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import pytest

from lab import shell

T = TypeVar("T")


def until(check: Callable[[], T], timeout: float, what: str, interval: float = 0.25) -> T:
    """The first truthy result of `check`, or a test failure naming `what` after `timeout` seconds."""
    return shell.until(check, timeout, what, interval, error=pytest.fail.Exception)
