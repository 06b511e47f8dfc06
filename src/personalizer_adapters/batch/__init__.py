"""Batch jobs: the record build, the profile model and its forked stages, input reading, the seed, refresh."""
