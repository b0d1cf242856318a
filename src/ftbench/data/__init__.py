"""Sources, downloads and the token cache."""
