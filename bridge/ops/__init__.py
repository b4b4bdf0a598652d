"""Operator tools: the `wsmigrate` command line, the admin API, the parity report, the simulator."""
