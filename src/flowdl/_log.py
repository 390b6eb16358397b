"""flowdl's loggers: ``logging.getLogger("flowdl")`` and one child per area.

flowdl configures no handler but the `logging.NullHandler` on the package logger
(the library convention), so nothing is shown unless the application configures
logging; then every flowdl message can be routed, filtered or silenced as any other
library's. The areas are ``flowdl.monitor`` (the monitor's lines, at INFO),
``flowdl.observe`` (the lines of `Graph.log`, at INFO) and ``flowdl.checkpoint``
(files saved and loaded, at DEBUG).

Example:
    >>> import logging
    >>> logger("monitor").name
    'flowdl.monitor'
    >>> any(isinstance(h, logging.NullHandler) for h in logging.getLogger("flowdl").handlers)
    True
"""

from __future__ import annotations

import logging

__all__ = ["PACKAGE", "logger"]

PACKAGE = "flowdl"
"""The package logger's name."""

_package = logging.getLogger(PACKAGE)
if not any(isinstance(handler, logging.NullHandler) for handler in _package.handlers):
    _package.addHandler(logging.NullHandler())


def logger(area: str) -> logging.Logger:
    """The logger of one area of flowdl: ``flowdl.<area>``."""
    return logging.getLogger(f"{PACKAGE}.{area}")
