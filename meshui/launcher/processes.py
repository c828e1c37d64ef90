"""Running a set of long-lived child processes as one unit, and stopping them in order."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]


@dataclass
class ProcessGroup:
    """Children started in their own sessions, so that Ctrl-C reaches only us and we stop them in order."""

    env: Mapping[str, str]
    children: list[Child] = field(default_factory=list)

    def start(self, name: str, argv: Sequence[str], extra_env: Mapping[str, str] | None = None) -> Child:
        process = subprocess.Popen(list(argv), env={**self.env, **(extra_env or {})}, start_new_session=True)
        child = Child(name, process)
        self.children.append(child)
        return child

    def first_exited(self) -> Child | None:
        return next((child for child in self.children if child.process.poll() is not None), None)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM newest first (each finishes in-flight work), then SIGKILL whatever outlives ``timeout``."""
        for child in reversed(self.children):
            if child.process.poll() is None:
                os.killpg(child.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for child in reversed(self.children):
            remaining = max(0.0, deadline - time.monotonic())
            try:
                child.process.wait(timeout=remaining)
            except subprocess.TimeoutExpired:
                os.killpg(child.process.pid, signal.SIGKILL)
                child.process.wait()
        self.children.clear()
