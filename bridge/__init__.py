"""The composition root: the reference server (app factory, CLI) and the bridge between paths.

`bridge` may import `legacy`, `unified` and `metrics`; nothing imports `bridge`.
"""
