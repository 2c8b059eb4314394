"""Flag parsing shared by the command-line tools.

Each tool defines its flags on its own ``flags.FlagValues()``, so tools imported
together (in tests, or one tool calling another) cannot clash; absl's global
flags (``--verbosity`` ...) are parsed after them. Importing this module sets
``TF_CPP_MIN_LOG_LEVEL=1`` unless it is set (see below).
"""

from __future__ import annotations

import os
import sys
from typing import Callable, List, Optional, Sequence

from absl import app, flags

# Every command-line tool imports this module before TensorFlow, so this is the one place that
# quiets TensorFlow's C++ INFO lines (as the original's TF_CPP_MIN_LOG_LEVEL=1); warnings and errors
# still show, and a value the user set is kept. TensorFlow reads it once, when it is first imported.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")


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


HELP_FLAGS = ("-h", "--help", "--helpshort", "--helpfull")


def flag_help(doc: str, tool_flags: flags.FlagValues) -> Callable[[Sequence[str]], Optional[str]]:
    """A `run_app` help function: the module docstring and the tool's flags on -h/--help."""
    def help_text(argv: Sequence[str]) -> Optional[str]:
        if any(a in HELP_FLAGS for a in argv[1:]):
            return doc + "\nFlags:\n" + tool_flags.get_help(include_special_flags=False)
        return None
    return help_text


def run_app(prog: str, tool_flags: flags.FlagValues, main: Callable,
            help_text: Callable[[Sequence[str]], Optional[str]],
            flags_parser: Optional[Callable[[List[str]], List[str]]] = None) -> None:
    """Console-script entry point: prints ``help_text(sys.argv)`` and exits 0 when it is not
    None, else runs ``main`` under absl with the tool's flags parsed first (by `parse`, or by
    ``flags_parser`` for a tool that reports its own parse errors)."""
    text = help_text(sys.argv)
    if text is not None:
        try:
            print(text)
        except BrokenPipeError:  # e.g. `progan-dataset --help | head`
            pass
        sys.exit(0)
    app.run(main, flags_parser=flags_parser or (lambda argv: parse(prog, tool_flags, argv)))
