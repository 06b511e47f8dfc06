"""The build's tuning: the model's constants chosen on each shop's own data (``tuning.search``).

The defaults live here, without numpy, so the command line shows them without loading the search.
"""

PEOPLE = 20_000   # shoppers tuned on, at most (drawn with the config's seed)
BUDGET_S = 300.0  # the search's time budget, seconds (the 1M-shopper build itself takes longer)
