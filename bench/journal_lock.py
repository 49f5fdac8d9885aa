"""The journal file's lock: Optuna's symlink lock, made safe for a process that stalls.

Optuna's :class:`~optuna.storages.journal.JournalFileSymlinkLock` lets a waiter break a lock
held longer than its grace period, which is how a worker killed while writing stops blocking the
others. Its ``release`` however renames away whatever lock file is there. A worker stalled past
the grace period while holding the lock (SIGSTOP, swapping, a suspended laptop) therefore either
dies on waking with "did not possess lock" (the lock was broken and released meanwhile) or,
worse, silently frees the lock another worker holds now. Here every acquisition links to a token
of its own, a waiter breaks only a holder it has seen hold the lock for the whole grace period,
and ``release`` removes only a link that still carries its token.

A write made by a stalled process after its lock was broken is one ``O_APPEND`` write of whole
lines, which Linux keeps contiguous on a local file system, and the journal's replay decides
between conflicting operations by their order in the file; bench's unit leases then drop the
stalled worker's result (see :mod:`bench.work`).
"""
from __future__ import annotations

import logging
import os
import time
import uuid

from optuna.storages.journal import JournalFileSymlinkLock

GRACE_S = 30.0          # Optuna's default: longer than any single journal write
_MAX_SLEEP_S = 0.05
_log = logging.getLogger(__name__)


def _holder(link: str) -> str | None:
    try:
        return os.readlink(link)
    except OSError:     # released meanwhile (or never a link: then it is not ours either)
        return None


class OwnedSymlinkLock(JournalFileSymlinkLock):
    """A symlink lock whose link names its owner; see the module docstring."""

    def __init__(self, filepath: str, grace_period: float = GRACE_S) -> None:
        if grace_period <= 0:
            raise ValueError(f"grace_period {grace_period!r} must be positive")
        self._lock_file = filepath + ".lock"
        self.grace_period = grace_period
        self._token: str | None = None

    def acquire(self) -> bool:
        token = f"{os.getpid()}-{uuid.uuid4().hex}"
        seen, since, sleep = None, 0.0, 0.001
        while True:
            try:
                os.symlink(token, self._lock_file)
                self._token = token
                return True
            except FileExistsError:
                pass
            holder = _holder(self._lock_file)
            if holder is None:
                continue
            now = time.monotonic()
            if holder != seen:      # a new holder: its grace period starts now
                seen, since = holder, now
            elif now - since > self.grace_period:
                _log.warning("the journal lock %s has been held by %s for more than %.0f s; "
                             "breaking it", self._lock_file, holder, self.grace_period)
                self._remove_if(holder)
                seen, sleep = None, 0.001
                continue
            time.sleep(sleep)
            sleep = min(2 * sleep, _MAX_SLEEP_S)

    def release(self) -> None:
        token, self._token = self._token, None
        if token is None:
            return
        if not self._remove_if(token):
            _log.warning("the journal lock %s was broken while this process held it (stalled "
                         "for more than %.0f s); its write went through unlocked",
                         self._lock_file, self.grace_period)

    def _remove_if(self, owner: str) -> bool:
        """Remove the lock link if it carries ``owner``; never remove another owner's link."""
        if _holder(self._lock_file) != owner:
            return False
        moved = f"{self._lock_file}.{uuid.uuid4().hex}.release"
        try:
            os.rename(self._lock_file, moved)     # atomic: from here on nobody else sees it
        except OSError:
            return False
        if _holder(moved) == owner:
            os.unlink(moved)
            return True
        # The owner changed between the check and the rename (a third process broke and took
        # it): put that link back unless yet another one has been made meanwhile.
        try:
            os.link(moved, self._lock_file, follow_symlinks=False)
        except OSError:
            pass
        os.unlink(moved)
        return False
