"""Shared by the tests that check for leaked file descriptors."""
from __future__ import annotations

import os


def open_fds() -> set[int]:
    """This process's open file descriptors."""
    return {int(n) for n in os.listdir("/proc/self/fd")}
