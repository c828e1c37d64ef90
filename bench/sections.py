"""docs/benchmarks.md is shared by several benchmarks: each one rewrites only its own section."""

from __future__ import annotations

from pathlib import Path

_TITLE = [
    "# Benchmarks",
    "",
    "Written by `make bench`; every figure below was measured in the run its section describes.",
    "",
]


def write_section(path: Path, name: str, lines: list[str]) -> None:
    begin, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    body = "\n".join([begin, *lines, end])
    text = path.read_text() if path.exists() else "\n".join(_TITLE)
    if begin in text and end in text:
        before, rest = text.split(begin, 1)
        after = rest.split(end, 1)[1]
        text = before + body + after
    else:
        if begin not in text and "<!-- bench:" not in text:
            text = "\n".join(_TITLE)  # an older, unsectioned report: start afresh
        text = text.rstrip("\n") + "\n\n" + body + "\n"
    path.write_text(text)
