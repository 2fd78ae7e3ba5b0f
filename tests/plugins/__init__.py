"""Small real server plugins the plugin tests load through ``server.plugins``."""
