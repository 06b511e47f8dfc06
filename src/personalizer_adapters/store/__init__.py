"""The origin's state: the event log, the profile store (shoppers' history, the generation's shared records,
tombstones), behind one contract whatever engine keeps it.

``eventlog`` and ``profiles`` are the embedded SQLite engine: the default for ``make dev``, the tests and a
single host.
"""
