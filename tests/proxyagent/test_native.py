"""The compiled request path (proxyagent.compile): extensions current, and imported in place of the sources."""

from __future__ import annotations

import subprocess
import sys

import pytest

from proxyagent import compile as native


def test_no_extension_is_older_than_its_source() -> None:
    # A stale extension would run old code while the tests read the new source.
    assert native.stale_modules() == [], "run `make native` (or python -m proxyagent.compile)"


def test_either_every_request_path_module_is_compiled_or_none_is() -> None:
    assert native.compiled_modules() in ([], list(native.all_modules()))


@pytest.mark.skipif(not native.compiled_modules(), reason="no C compiler here: the request path runs interpreted")
def test_a_fresh_interpreter_imports_the_extensions_and_says_so() -> None:
    code = (
        "import proxyagent.agent\n"
        "from proxyagent import compile as native\n"
        "import importlib\n"
        "print(native.request_path_kind())\n"
        "print(*(importlib.import_module(m).__file__ for m in native.NATIVE_MODULES), sep='\\n')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[0] == "compiled"
    assert len(out[1:]) == len(native.NATIVE_MODULES)
    assert all(path.endswith(".so") for path in out[1:])


def test_an_edited_source_makes_its_extension_stale(monkeypatch: pytest.MonkeyPatch) -> None:
    if not native.compiled_modules():
        pytest.skip("no C compiler here: nothing compiled to go stale")
    module = native.NATIVE_MODULES[0]
    digests = native.source_digests()
    digests[module] = "0" * 64
    monkeypatch.setattr(native, "source_digests", lambda: digests)
    assert native.stale_modules() == [module]
