"""Privacy requests: erase and the durable tombstone list."""
