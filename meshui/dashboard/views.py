"""The browser dashboard: the built single-page app behind a session login.

Vite builds the app into ``settings.DASHBOARD_DIST_DIR`` (``make frontend``). Its
assets are served by WhiteNoise under ``/static/dashboard/``; this module serves
its ``index.html`` for every page route, so a deep link such as
``/traces/<trace id>`` opens the app, whose router takes over from there.
"""

from __future__ import annotations

import threading
from pathlib import Path

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.decorators.http import require_safe

_lock = threading.Lock()
# (path, mtime, size) -> the file's bytes; a rebuild changes the key.
_cached: tuple[tuple[str, int, int], bytes] | None = None


def _index_html() -> bytes | None:
    """The built index.html, re-read only when the file changes; None when there is no build."""
    global _cached
    path = Path(settings.DASHBOARD_DIST_DIR) / "index.html"
    try:
        stat = path.stat()
    except OSError:
        return None
    key = (str(path), stat.st_mtime_ns, stat.st_size)
    with _lock:
        if _cached is not None and _cached[0] == key:
            return _cached[1]
        try:
            content = path.read_bytes()
        except OSError:
            return None
        _cached = (key, content)
        return content


@require_safe
@login_required
@ensure_csrf_cookie
def index(request: HttpRequest) -> HttpResponse:
    """The app's shell; the app reads the ``csrftoken`` cookie to send with its writes."""
    content = _index_html()
    if content is None:
        response = render(
            request,
            "dashboard/build_missing.html",
            {"dist_dir": settings.DASHBOARD_DIST_DIR},
            status=503,
        )
    else:
        response = HttpResponse(content, content_type="text/html; charset=utf-8")
    # The shell names the current hashed assets: revalidate it on every load.
    response["Cache-Control"] = "no-cache"
    return response
