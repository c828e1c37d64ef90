"""A ketama-style hash ring: a key keeps its endpoint while the endpoint set is stable.

Each endpoint owns points on a 64-bit ring placed by hashing its address and
port, so where an endpoint's points fall does not depend on the others: adding
or removing one endpoint moves only the keys whose nearest point was its own
(about 1/n of them). A key goes to the owner of the first point at or after the
key's hash, wrapping around.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_left
from collections.abc import Callable, Sequence
from math import gcd

from proxyagent.routing import Endpoint

# Points per unit of weight: ketama's 160 keeps the spread within a few percent of even.
POINTS_PER_WEIGHT = 160
# Building costs one hash per four points; beyond this many points the per-endpoint count shrinks
# (and a change of the endpoint set then moves more keys than 1/n).
MAX_POINTS = 65_536
_MASK64 = (1 << 64) - 1


def key_hash(key: bytes) -> int:
    """128 bits of the key: the low 64 place it on a ring, the high 64 choose a split's version."""
    return int.from_bytes(hashlib.blake2b(key, digest_size=16).digest(), "little")


def ring_position(hashed: int) -> int:
    return hashed & _MASK64


class HashRing:
    __slots__ = ("_owners", "_points", "endpoints")

    def __init__(self, endpoints: Sequence[Endpoint]) -> None:
        self.endpoints = tuple(endpoints)
        divisor = 0
        for endpoint in self.endpoints:
            divisor = gcd(divisor, max(1, endpoint.weight))
        shares = [max(1, endpoint.weight) // max(1, divisor) for endpoint in self.endpoints]
        per_share = POINTS_PER_WEIGHT
        total = sum(shares) * per_share
        if total > MAX_POINTS:
            per_share = max(4, MAX_POINTS // max(1, sum(shares)))
        placed: list[tuple[int, int]] = []
        for index, endpoint in enumerate(self.endpoints):
            name = f"{endpoint.address}:{endpoint.port}".encode()
            points = shares[index] * per_share
            for block in range((points + 3) // 4):
                digest = hashlib.blake2b(name + b"#%d" % block, digest_size=32).digest()
                for quarter in range(min(4, points - block * 4)):
                    placed.append((int.from_bytes(digest[quarter * 8 : quarter * 8 + 8], "little"), index))
        placed.sort()
        self._points = [point for point, _ in placed]
        self._owners = [owner for _, owner in placed]

    def lookup(self, position: int, skip: Callable[[Endpoint], bool] | None = None) -> Endpoint | None:
        """The owner of the first point at or after ``position``; with ``skip``, the first owner it does not
        refuse, walking on around the ring (None when it refuses them all)."""
        points = self._points
        if not points:
            return None
        start = bisect_left(points, position)
        count = len(points)
        endpoints = self.endpoints
        if skip is None:
            return endpoints[self._owners[start % count]]
        refused: set[int] = set()
        for step in range(count):
            owner = self._owners[(start + step) % count]
            if owner in refused:
                continue
            endpoint = endpoints[owner]
            if not skip(endpoint):
                return endpoint
            refused.add(owner)
            if len(refused) == len(endpoints):
                break
        return None
