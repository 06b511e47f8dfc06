"""Numbers from outside (query, cookies, config, CSV, HTTP headers) are ASCII digits, nothing else."""


def ascii_digits(text: str) -> bool:
    """True for a non-empty run of 0-9 only: ``str.isdigit`` alone also accepts "²", "٣" and other Unicode
    digits, some of which ``int()`` refuses (a crash) and some of which it reads (a surprise)."""
    return text.isascii() and text.isdigit()
