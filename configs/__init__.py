"""Experiment configs: one `get_config(arg)` per file; shared sections in `common.py`."""
