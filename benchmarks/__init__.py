"""skltr's benchmark scripts.

Each runs from the repository root as a module, ``python -m
benchmarks.run``, or as a file, ``python benchmarks/run.py``; their
underscore modules are the helpers they share.
"""
