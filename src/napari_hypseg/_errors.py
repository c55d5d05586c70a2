"""Errors whose message is meant for the user as it stands."""


class UserError(ValueError):
    """Bad input the user can fix (wrong file, 2D image, NaNs, missing model...).

    The CLI prints the message on one line; widgets show it as a notification.
    """


class SettingError(UserError):
    """An out-of-range setting; ``setting`` names the field so the CLI can name its option instead."""

    def __init__(self, setting: str, reason: str):
        self.setting, self.reason = setting, reason
        super().__init__(f"{setting} {reason}")


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM stopped a job; the message says what was kept (the CLI exits 130)."""
