"""Inbound authorization: path normalization and policy evaluation, pure functions of the request."""
