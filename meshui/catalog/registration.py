"""What an agent tells us when it registers, checked before anything is written."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.core.exceptions import ValidationError

from meshui.catalog.validators import DNS_LABEL_MAX, dns_label, validate_host, validate_labels


class InvalidRegistration(ValueError):  # noqa: N818 - reads as what it is at the raise site
    """Field-level problems with a registration; ``errors`` maps field to message."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{name}: {message}" for name, message in sorted(errors.items())))
        self.errors = errors


@dataclass(frozen=True)
class Registration:
    agent_id: str
    service: str
    namespace: str
    workload: str
    address: str
    inbound_port: int
    admin_port: int
    agent_version: str = ""
    service_account: str = "default"
    labels: dict[str, str] = field(default_factory=dict)
    admin_mtls: bool = False

    def __post_init__(self) -> None:
        errors: dict[str, str] = {}
        if not self.agent_id or len(self.agent_id) > 128 or not self.agent_id.isprintable():
            errors["agent_id"] = "must be 1 to 128 printable characters"
        for name in ("service", "namespace", "workload", "service_account"):
            value = getattr(self, name)
            try:
                if len(value) > DNS_LABEL_MAX:
                    raise ValidationError(f"at most {DNS_LABEL_MAX} characters")
                dns_label(value)
            except ValidationError as exc:
                errors[name] = exc.messages[0]
        try:
            validate_host(self.address)
        except ValidationError as exc:
            errors["address"] = exc.messages[0]
        for name in ("inbound_port", "admin_port"):
            if not 1 <= getattr(self, name) <= 65535:
                errors[name] = "must be from 1 to 65535"
        try:
            validate_labels(self.labels)
        except ValidationError as exc:
            errors["labels"] = exc.messages[0]
        if len(self.agent_version) > 64:
            errors["agent_version"] = "at most 64 characters"
        if errors:
            raise InvalidRegistration(errors)

    @property
    def admin_address(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{host}:{self.admin_port}"
