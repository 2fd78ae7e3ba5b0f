"""A module named as a server plugin that has no ``register`` function."""

VERSION = "1"
