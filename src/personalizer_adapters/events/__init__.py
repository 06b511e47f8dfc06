"""Beacons at the origin: the event log (SQLite WAL) and the experiments report."""
