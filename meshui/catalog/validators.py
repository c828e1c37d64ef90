"""Validators for names and labels, following Kubernetes' rules so that names
round-trip between the mesh and a cluster unchanged."""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator

DNS_LABEL_MAX = 63
dns_label = RegexValidator(
    r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$",
    "Use lowercase letters, digits and '-', starting and ending with a letter or digit.",
    code="invalid_name",
)

_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)([a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)(\.[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*$"
)
_LABEL_NAME = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?)$")
_MAX_LABELS = 64
PORT_PROTOCOLS = ("http", "grpc", "tcp")


def validate_host(value: str) -> None:
    """An IPv4/IPv6 address or a DNS host name."""
    try:
        ipaddress.ip_address(value)
    except ValueError:
        if not _HOSTNAME.match(value):
            raise ValidationError("Enter an IP address or a DNS host name.", code="invalid_host") from None


def validate_labels(value: Any) -> None:
    """A flat mapping of Kubernetes-style label keys (optional DNS prefix) to short string values."""
    if not isinstance(value, dict):
        raise ValidationError("Labels must be an object mapping names to strings.", code="invalid_labels")
    if len(value) > _MAX_LABELS:
        raise ValidationError(f"At most {_MAX_LABELS} labels.", code="too_many_labels")
    for key, item in value.items():
        prefix, _, name = key.rpartition("/")
        if (prefix and not _HOSTNAME.match(prefix)) or not _LABEL_NAME.match(name):
            raise ValidationError(f"Invalid label name {key!r}.", code="invalid_label_name")
        if not isinstance(item, str) or not _LABEL_VALUE.match(item):
            raise ValidationError(
                f"Label {key!r} must have a string value of at most 63 letters, digits, '-', '_' or '.'.",
                code="invalid_label_value",
            )


def validate_ports(value: Any) -> None:
    """A list of ``{"name", "port", "protocol"}`` objects with unique names and port numbers."""
    if not isinstance(value, list):
        raise ValidationError("Ports must be a list.", code="invalid_ports")
    if len(value) > 32:
        raise ValidationError("At most 32 ports.", code="too_many_ports")
    names: set[str] = set()
    numbers: set[int] = set()
    for index, port in enumerate(value):
        where = f"ports[{index}]"
        if not isinstance(port, dict) or set(port) - {"name", "port", "protocol"}:
            raise ValidationError(f"{where} must be an object with name, port and protocol.", code="invalid_port")
        number = port.get("port")
        if not isinstance(number, int) or isinstance(number, bool) or not 1 <= number <= 65535:
            raise ValidationError(f"{where}.port must be an integer from 1 to 65535.", code="invalid_port")
        name = port.get("name", "")
        if not isinstance(name, str) or (name and (len(name) > 15 or not re.match(dns_label.regex, name))):
            raise ValidationError(f"{where}.name must be a DNS label of at most 15 characters.", code="invalid_port")
        protocol = port.get("protocol", "http")
        if protocol not in PORT_PROTOCOLS:
            raise ValidationError(f"{where}.protocol must be one of {', '.join(PORT_PROTOCOLS)}.", code="invalid_port")
        if number in numbers or (name and name in names):
            raise ValidationError(f"{where} repeats a port name or number.", code="duplicate_port")
        numbers.add(number)
        if name:
            names.add(name)
