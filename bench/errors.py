"""The one exception type a user can cause; the CLI turns it into one line and exit code 2."""


class UserError(ValueError):
    """Bad input from the user: an unknown name, a value out of range, missing data."""


def choices(names) -> str:
    """Format valid choices for an error message."""
    return ", ".join(sorted(names))
