"""Doctest collection: the Lightning module needs the optional ``lightning`` extra."""
import importlib.util

collect_ignore = [] if importlib.util.find_spec("lightning") is not None else ["lightning.py"]
