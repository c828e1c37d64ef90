"""Traffic policy on the outbound side: circuit breaking, retries with a budget, outlier detection, faults.

Requests to a destination whose policy asks for per-request work (retries, a
per-try timeout, circuit-breaker limits, outlier detection, fault injection)
or that hashes a header take the *policy path* (``proxyagent.http.policy_path``):
the router hands them a destination-level target, the native relay declines
them (their connection moves to the Python path), and the exchange defers
to a ``PolicyRequest`` at its few decision points: admission, each try's
connection, response head, failure and deadline, and its end. A request body
is kept (up to ``max_replay_body_bytes``) only when the request may be
replayed. Every other destination keeps the fast path as it was: one
``is None`` test per decision point is all the policy path costs it. A
weighted split alone needs no per-request work and stays on the fast path.

The modules here hold per-destination state, shared by that destination's
requests and kept across snapshots: ``circuit_breaker``, ``retry_budget``,
``outlier`` and ``destination`` (which ties them to one destination).
"""
