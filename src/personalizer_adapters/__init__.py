"""I/O adapters around the core: seed generator, batch build, command line. CPython only, never at the edge."""
