"""Telling a dead holder of the orchestrator lock from a live or remote one (flows.lock.dead_reason)."""

from __future__ import annotations

import os

import psutil

from flows.lock import Holder, dead_reason


def _gone_pid() -> tuple[int, float]:
    proc = psutil.Popen(["true"])
    started = proc.create_time()
    proc.wait()
    return proc.pid, started


def test_a_holder_whose_process_is_gone_on_this_host_is_dead():
    pid, started = _gone_pid()
    assert (
        dead_reason(None, Holder("here", pid, started, "lease"), "here")
        == f"its process {pid} on here is gone"
    )


def test_a_reused_pid_is_not_the_holder():
    me = psutil.Process(os.getpid())
    holder = Holder("here", me.pid, me.create_time() - 3600, "lease")
    assert dead_reason(None, holder, "here")


def test_a_live_holder_keeps_the_lock():
    me = psutil.Process(os.getpid())
    assert dead_reason(None, Holder("here", me.pid, me.create_time(), "lease"), "here") is None


def test_a_holder_on_another_host_keeps_the_lease_semantics():
    pid, started = _gone_pid()
    assert dead_reason(None, Holder("elsewhere", pid, started, "lease"), "here") is None
