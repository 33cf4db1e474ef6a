"""Broadcasts: the weekly series, each broadcast's lifecycle and its live room."""
