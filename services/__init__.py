"""One package per service; each has a pure core and a thin shell (app.py, __main__.py)."""
