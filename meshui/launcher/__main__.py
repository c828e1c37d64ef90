"""``python -m meshui.launcher demo [...]``."""

import sys

from meshui.launcher import demo

_COMMANDS = {"demo": demo.run}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in _COMMANDS:
        print(f"usage: python -m meshui.launcher {{{','.join(_COMMANDS)}}} [options]", file=sys.stderr)
        return 2
    return _COMMANDS[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
