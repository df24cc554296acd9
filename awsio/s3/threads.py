"""A small pool of daemon threads for blocking GETs (read-ahead, the Python backend's get_many).

``concurrent.futures.ThreadPoolExecutor`` joins its workers when the interpreter exits: a GET
stalled mid-body then holds up Ctrl-C for the whole read timeout, retries included. These
workers are daemon threads, so exit never waits for them; their results are thrown away anyway.
Workers start on demand, up to ``size``, and end after ``linger`` idle seconds or when the pool
is shut down: a pool that is not used holds no thread. A forked child starts with no worker and
no job of its parent's.

:func:`renew_lock_after_fork`: an object's ``_lock`` that another thread held at a fork stays
held in the child, where no thread will release it; registered objects get a fresh one there.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections import deque
from concurrent.futures import Future
from typing import Any, Callable, Tuple

__all__ = ["DaemonPool", "renew_lock_after_fork"]

_locked: "weakref.WeakSet[Any]" = weakref.WeakSet()


def renew_lock_after_fork(obj: Any) -> None:
    """Give ``obj._lock`` a new ``threading.Lock`` in every forked child (see the module docstring)."""
    _locked.add(obj)


def _renew_locks() -> None:
    for obj in list(_locked):
        obj._lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_renew_locks)

_Job = Tuple["Future[Any]", Callable[..., Any], Tuple[Any, ...]]


class DaemonPool:
    """Runs submitted calls on up to ``size`` daemon threads named ``name-N``."""

    def __init__(self, size: int, name: str, linger: float = 2.0) -> None:
        if size < 1:
            raise ValueError("a DaemonPool needs at least one thread")
        self._size = size
        self._name = name
        self._linger = linger
        self._started = 0
        self._closed = False
        self._reset()

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._jobs: deque[_Job] = deque()
        self._cond = threading.Condition(threading.Lock())
        self._workers = 0  # alive
        self._waiting = 0  # alive and waiting for a job

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        """Run ``fn(*args)`` on a worker; RuntimeError after :meth:`shutdown`."""
        fut: Future[Any] = Future()
        if self._pid != os.getpid():  # the parent's workers do not exist here
            self._reset()
        with self._cond:
            if self._closed:
                raise RuntimeError(f"{self._name}: the pool is shut down")
            self._jobs.append((fut, fn, args))
            if self._waiting >= len(self._jobs):
                self._cond.notify()
            elif self._workers < self._size:
                self._workers += 1
                self._started += 1
                threading.Thread(target=self._work, name=f"{self._name}-{self._started}", daemon=True).start()
        return fut

    def _next_job(self) -> _Job | None:
        with self._cond:
            while not self._jobs and not self._closed:
                self._waiting += 1
                woken = self._cond.wait(self._linger)
                self._waiting -= 1
                if not woken and not self._jobs:
                    break  # idle for `linger` seconds
            if not self._jobs:
                self._workers -= 1
                return None
            return self._jobs.popleft()

    def _work(self) -> None:
        while True:
            job = self._next_job()
            if job is None:
                return
            fut, fn, args = job
            if fut.set_running_or_notify_cancel():
                try:
                    fut.set_result(fn(*args))
                except BaseException as exc:  # noqa: BLE001 - handed to whoever waits on the future
                    fut.set_exception(exc)
            del job, fut, fn, args  # drop the result before waiting for the next job

    def shutdown(self) -> None:
        """Cancel the jobs not started; every worker ends after its current job. Never blocks."""
        if self._pid != os.getpid():  # the parent's lock may have been held at the fork
            self._reset()
        with self._cond:
            self._closed = True
            jobs, self._jobs = self._jobs, deque()
            self._cond.notify_all()
        for fut, _, _ in jobs:
            # cancel() alone does not wake concurrent.futures.wait(): no worker will take the job
            # and notify for it, so do it here.
            if fut.cancel():
                fut.set_running_or_notify_cancel()
