"""The legacy delivery path: one socket per view, flat JSON frames (behaviour of the old app).

`legacy` never imports `unified` or `bridge`; it may import `metrics`.
"""
