"""REST routes, one module per resource; shared dependencies in ``deps``."""
