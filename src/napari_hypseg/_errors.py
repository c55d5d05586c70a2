"""Errors whose message is meant for the user as it stands."""


class UserError(ValueError):
    """Bad input the user can fix (wrong file, 2D image, NaNs, missing model...).

    The CLI prints the message on one line; widgets show it as a notification.
    """
