"""Flag parsing shared by the command-line tools.

Each tool defines its flags on its own ``flags.FlagValues()``, so tools imported
together (in tests, or one tool calling another) cannot clash; absl's global
flags (``--verbosity`` ...) are parsed after them.
"""

from __future__ import annotations

import sys
from typing import Callable, List, Sequence

from absl import flags


def parse(prog: str, tool_flags: flags.FlagValues, argv: Sequence[str]) -> List[str]:
    """Parses the tool's flags, then absl's own; returns argv[0] and the positional arguments.

    A bad flag prints one line naming it and exits with status 2.
    """
    try:
        rest = tool_flags(list(argv), known_only=True)
        return flags.FLAGS(rest)
    except flags.Error as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        sys.exit(2)


def run_cli(prog: str, tool_flags: flags.FlagValues, main: Callable, argv: Sequence[str]) -> int:
    """Parses ``argv`` starting from the flag defaults and runs ``main`` (for tests and embedding)."""
    tool_flags.unparse_flags()
    try:
        rest = parse(prog, tool_flags, argv)
    except SystemExit as e:
        return int(e.code or 0)
    return main(rest)
