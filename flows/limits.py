"""`[workers]` resource limits: what one host allows each table run (memory, CPU share, priority).

    [workers]
    memory_max = "2G"      # a run whose RSS passes this is stopped and ends Failed
    memory_high = "1536M"  # a warning in the worker's log (systemd: MemoryHigh=, reclaim pressure)
    cpu_quota = "150%"     # systemd only: CPUQuota= on each worker unit
    nice = 10              # every table run's scheduling priority

Sizes are bytes, or a number with K, M, G or T (powers of 1024, as systemd reads them). Parsed
here for `load_config` (so `etlctl config check` reports a bad value) and for the worker, which
reads only this section (`flows.config.worker_limits`): its runs are bounded even when the rest
of the file is broken.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from flows.errors import ConfigError

WHERE = "[workers]"
KEYS = ("memory_max", "memory_high", "cpu_quota", "nice")
_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
_SIZE = re.compile(r"(\d+)\s*([KMGT]?)B?", re.IGNORECASE)
_PERCENT = re.compile(r"(\d+(?:\.\d+)?)%")
MIN_MEMORY = 64 * 1024**2  # below this no Python interpreter with Prefect loaded can run a table


@dataclass(frozen=True)
class WorkerLimits:
    """Per-host limits; None means no limit. Memory in bytes, cpu_quota in percent of one CPU."""

    memory_max: int | None = None
    memory_high: int | None = None
    cpu_quota: float | None = None
    nice: int | None = None

    @property
    def any(self) -> bool:
        return any(getattr(self, key) is not None for key in KEYS)


def parse_limits(raw: dict[str, Any]) -> WorkerLimits:
    """The [workers] table of the config file, checked; raises ConfigError naming key and value."""
    unknown = sorted(set(raw) - set(KEYS))
    if unknown:
        raise ConfigError(f"unknown key {unknown[0]!r} in {WHERE} (allowed: {', '.join(sorted(KEYS))})")
    memory_max = _size(raw, "memory_max")
    memory_high = _size(raw, "memory_high")
    if memory_max is not None and memory_high is not None and memory_high > memory_max:
        raise ConfigError(
            f"memory_high in {WHERE} ({raw['memory_high']!r}) must not exceed "
            f"memory_max ({raw['memory_max']!r})"
        )
    return WorkerLimits(memory_max, memory_high, _percent(raw, "cpu_quota"), _nice(raw))


def size_text(size: int) -> str:
    """Bytes as systemd writes them, in the largest unit that divides them (536870912 -> 512M)."""
    for suffix in ("T", "G", "M", "K"):
        if size % _UNITS[suffix] == 0:
            return f"{size // _UNITS[suffix]}{suffix}"
    return str(size)


def percent_text(value: float) -> str:
    """150.0 -> "150%", 12.5 -> "12.5%": CPUQuota='s spelling."""
    return f"{value:g}%"


def mib(size: int) -> str:
    return f"{size / 1024**2:.0f} MiB"


def _bad(key: str, value: Any, wanted: str) -> ConfigError:
    return ConfigError(f"{key} in {WHERE} must be {wanted}, not {value!r}")


def _size(raw: dict[str, Any], key: str) -> int | None:
    value = raw.get(key)
    if value is None:
        return None
    wanted = f'a size such as "512M" or "2G" (at least {mib(MIN_MEMORY)})'
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise _bad(key, value, wanted)
    match = _SIZE.fullmatch(value.strip()) if isinstance(value, str) else None
    if isinstance(value, str) and not match:
        raise _bad(key, value, wanted)
    size = int(match.group(1)) * _UNITS[match.group(2).upper()] if match else int(value)
    if size < MIN_MEMORY:
        raise _bad(key, value, wanted)
    return size


def _percent(raw: dict[str, Any], key: str) -> float | None:
    value = raw.get(key)
    if value is None:
        return None
    match = _PERCENT.fullmatch(value.strip()) if isinstance(value, str) else None
    if not match or float(match.group(1)) <= 0:
        raise _bad(key, value, 'a share of one CPU such as "50%" or "150%"')
    return float(match.group(1))


def _nice(raw: dict[str, Any]) -> int | None:
    value = raw.get("nice")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not -20 <= value <= 19:
        raise _bad("nice", value, "a whole number from -20 to 19")
    return value
