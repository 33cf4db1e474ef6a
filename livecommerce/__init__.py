"""livecommerce: the server core (app, configuration, data layer, accounts, catalogue)."""

__version__ = "0.1.0"
