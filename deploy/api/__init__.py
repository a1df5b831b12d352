"""The public Python API, one module per command: ``deploy.<name>(...)`` takes the options of
``deploy <name>`` as keyword arguments and returns what the command prints or writes.
:mod:`deploy` exposes these lazily (``import deploy`` loads neither torch nor Lava)."""
