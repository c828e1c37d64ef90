"""bench/config_convergence.py still runs: 5 agents, 1 round, its section written to a scratch report."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.sections import write_section

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_convergence_bench_runs_at_a_tiny_size(tmp_path: Path) -> None:
    report = tmp_path / "benchmarks.md"
    write_section(report, "proxy", ["## Sidecar proxy overhead", "", "kept as it was"])
    # The bench makes its own throwaway database; the environment's names none it should touch.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "MESHUI_"))}
    done = subprocess.run(
        [sys.executable, "bench/config_convergence.py", "--quick", "--out", str(report)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    text = report.read_text()
    assert "kept as it was" in text, "only its own section is rewritten"
    assert "<!-- bench:config-convergence -->" in text
    (row,) = [line for line in text.splitlines() if line.startswith("| 5 |")]
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[1] == "1"  # rounds
    assert all(float(cell) > 0 for cell in cells[2:7]), row
