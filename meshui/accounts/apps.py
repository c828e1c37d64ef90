from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "meshui.accounts"
    label = "accounts"
    verbose_name = "Accounts and roles"

    def ready(self) -> None:
        # Registers the token scheme with drf-spectacular (extensions register on import).
        from meshui.accounts import schema  # noqa: F401
