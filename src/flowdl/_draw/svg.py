"""`g.svg()`: DOT text rendered to SVG by Graphviz's ``dot`` program."""

from __future__ import annotations

import os
import shutil
import subprocess

from flowdl._errors import FlowdlError

INSTALL_HINT = (
    "install Graphviz: apt-get install graphviz (Debian, Ubuntu), brew install graphviz "
    "(macOS), conda install graphviz, or https://graphviz.org/download; g.dot() gives the "
    "DOT text without it"
)


class GraphvizError(FlowdlError, RuntimeError):
    """Graphviz's ``dot`` program is missing or failed to render a drawing.

    Attributes:
        problem: what went wrong.
        fix: how to fix it.
    """


def find_dot() -> str:
    """The path of Graphviz's ``dot`` program on PATH.

    Raises:
        GraphvizError: it is not there (the message says how to install it).
    """
    found = shutil.which("dot")
    if found is None:
        raise GraphvizError(
            "rendering SVG needs Graphviz's `dot` program, which is not on PATH",
            expected="the `dot` executable of Graphviz, found through PATH",
            received=f"PATH={os.environ.get('PATH', '')}",
            fix=INSTALL_HINT,
        )
    return found


def render_svg(dot_text: str, timeout: float = 120.0) -> str:
    """Run ``dot -Tsvg`` on `dot_text`; the SVG document.

    Raises:
        GraphvizError: ``dot`` is missing, fails or takes longer than `timeout` seconds.
    """
    program = find_dot()
    try:
        done = subprocess.run(
            [program, "-Tsvg"],
            input=dot_text.encode(),
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as error:
        raise GraphvizError(
            f"Graphviz's dot did not finish rendering within {timeout:g} s",
            fix="draw less: g.svg(depth=0) keeps nested graphs closed",
        ) from error
    if done.returncode != 0:
        stderr = done.stderr.decode(errors="replace").strip()
        raise GraphvizError(
            f"Graphviz's dot failed to render the drawing (exit status {done.returncode})",
            received=stderr or "no message on stderr",
            fix="this is a bug in flowdl's DOT output if g.dot() came unchanged; please report "
            "it with the DOT text",
        )
    return done.stdout.decode()
