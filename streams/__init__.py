"""orderflow's worker, core and tools. Before any of it is imported: compiled or pure modules
(streams/compiled.py)."""

from streams.compiled import guard

guard()
