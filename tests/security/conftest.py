"""The corpus's summary: how many cases were tried, and that none got through."""

from __future__ import annotations

from typing import Any

from tests.security import corpus


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not corpus.TRIED:
        return
    tried = ", ".join(f"{count} {category}" for category, count in sorted(corpus.TRIED.items()))
    total = sum(corpus.TRIED.values())
    terminalreporter.section("bad-input corpus")
    if corpus.GOT_THROUGH:
        terminalreporter.write_line(f"{total} cases tried ({tried}); {len(corpus.GOT_THROUGH)} GOT THROUGH:")
        for name in corpus.GOT_THROUGH:
            terminalreporter.write_line(f"  {name}")
    else:
        terminalreporter.write_line(f"{total} cases tried ({tried}); none got through.")
