"""Cache rules for static files: Vite's content-hashed dashboard assets are immutable."""

from __future__ import annotations

import re

from whitenoise.middleware import WhiteNoiseMiddleware

# Vite names every built asset `assets/<name>-<hash>.<ext>` (source maps: `.<ext>.map`);
# the hash is 8 or more URL-safe base64 characters.
_VITE_ASSET = re.compile(r"^dashboard/assets/[^/]+-[A-Za-z0-9_-]{8,}\.[A-Za-z0-9]+(?:\.map)?$")


class StaticFilesMiddleware(WhiteNoiseMiddleware):
    """WhiteNoise, with the dashboard's hashed Vite assets cached forever as well as the names that
    Django's manifest storage hashed (production, after `collectstatic`), which WhiteNoise itself knows."""

    def immutable_file_test(self, path: str, url: str) -> bool:
        if url.startswith(self.static_prefix) and _VITE_ASSET.match(url[len(self.static_prefix) :]):
            return True
        return bool(super().immutable_file_test(path, url))
