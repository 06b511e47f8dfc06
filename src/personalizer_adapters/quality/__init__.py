"""Quality on held-out data: the last-items and next-basket evaluations and their baselines."""
