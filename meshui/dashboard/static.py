"""Cache rules for static files: Vite's content-hashed dashboard assets are immutable."""

from __future__ import annotations

import re
from os.path import basename, splitext

from django.conf import settings

# Vite names every built asset `assets/<name>-<hash>.<ext>` (source maps: `.<ext>.map`);
# the hash is 8 or more URL-safe base64 characters.
_VITE_ASSET = re.compile(r"^dashboard/assets/[^/]+-[A-Za-z0-9_-]{8,}\.[A-Za-z0-9]+(?:\.map)?$")


def immutable_file_test(path: str, url: str) -> bool:
    """WhiteNoise's WHITENOISE_IMMUTABLE_FILE_TEST: may this file be cached forever?

    True for the dashboard's hashed Vite assets, and, as WhiteNoise's own test does,
    for names that the manifest storage hashed (production, after `collectstatic`).
    """
    prefix = "/" + (settings.STATIC_URL or "/").strip("/") + "/"
    if not url.startswith(prefix):
        return False
    name = url[len(prefix) :]
    if _VITE_ASSET.match(name):
        return True
    return _hashed_by_manifest_storage(name, url)


def _hashed_by_manifest_storage(name: str, url: str) -> bool:
    from django.contrib.staticfiles.storage import staticfiles_storage

    stem, ext = splitext(name)
    unhashed = splitext(stem)[0] + ext
    if unhashed == name:
        return False
    try:
        static_url = staticfiles_storage.url(unhashed)
    except ValueError:
        return False
    return bool(static_url) and basename(static_url) == basename(url)
