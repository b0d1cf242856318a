"""The error every stage raises for a config mistake, so a message reaches the user the same way from each."""


class ConfigError(ValueError):
    """A config mistake; the message names the key and what is allowed."""
