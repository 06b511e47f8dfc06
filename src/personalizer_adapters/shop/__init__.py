"""A demo storefront that embeds the worker the way a customer's site would: only the public snippet and
the v1 HTTP contract (client-side with pz.js, or edge-side injection when served through the worker)."""
