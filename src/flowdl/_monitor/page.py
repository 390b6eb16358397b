"""The dashboard page: live (events from the server) or frozen (events embedded)."""

from __future__ import annotations

from typing import Any

from flowdl._web.assets import html_text, safe_inline_script, script_json, static_text
from flowdl._web.page_parts import (
    LIVE_POLICY,
    OFFLINE_POLICY,
    charts_script,
    head,
    template,
)


def dashboard_page(
    *, title: str, total_epochs: int, events: list[dict[str, Any]] | None = None
) -> str:
    """The dashboard's HTML.

    The chart code (flowdl's own SVG renderer) is always inside the page. Without
    `events` the page is live: it loads ``events`` from the server that sent it (a
    relative URL, so it also works through an SSH tunnel or a proxy path). With
    `events` (``[{"type": ..., "data": ...}]``, as `flowdl._monitor.hub.EventHub.events`
    gives them) it is frozen: every event is inside the page and it loads nothing.

    Args:
        title: the page's title.
        total_epochs: the run's length (shown before the first event arrives).
        events: the events of a frozen page, or ``None`` for the live page.

    Returns:
        The page, as text.

    Example:
        >>> page = dashboard_page(title="run <1>", total_epochs=3)
        >>> "<title>run &lt;1&gt;</title>" in page, "flowdlCharts" in page, "<script src" in page
        (True, True, False)
    """
    live = events is None
    boot: dict[str, Any] = {"mode": "live" if live else "frozen", "total_epochs": total_epochs}
    if not live:
        boot["events"] = events
    return template("dashboard.html").substitute(
        head=head(title, LIVE_POLICY if live else OFFLINE_POLICY),
        title=html_text(title),
        status="connecting" if live else "snapshot",
        total=total_epochs,
        charts=charts_script(),
        graph_view=safe_inline_script(static_text("graph_view.js")),
        boot=script_json(boot),
        dashboard=safe_inline_script(static_text("dashboard.js")),
    )
