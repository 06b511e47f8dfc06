"""A shop's file opened as it is: gzip-compressed or not, in whatever encoding it was saved.

The encoding is decided per file, in this order, and named in the build's summary:
1. a byte order mark: UTF-8 (Excel's "CSV UTF-8"), UTF-16 little or big endian (Excel's "Unicode text");
2. UTF-8, when every byte of the file decodes as UTF-8 (checked over the whole file, at C speed);
3. Windows-1252 otherwise: what Excel's plain "CSV" writes on most Western European PCs (``0xE8`` is ``è``).
Bytes that no text encoding produces (NUL, or a workbook's, an archive's, a PDF's signature) are refused with
one line naming the file and what it looks like, never a traceback.
"""

from __future__ import annotations

import codecs
import gzip
import io
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, TextIO

GZIP = b"\x1f\x8b"
BOMS = ((codecs.BOM_UTF8, "utf-8-sig", "UTF-8 with BOM"), (codecs.BOM_UTF16_LE, "utf-16", "UTF-16 LE"),
        (codecs.BOM_UTF16_BE, "utf-16", "UTF-16 BE"))
NOT_TEXT = ((b"PK\x03\x04", "a zip archive or an Excel workbook (.xlsx): save the sheet as CSV"),
            (b"\xd0\xcf\x11\xe0", "an old Excel workbook (.xls): save the sheet as CSV"),
            (b"PAR1", "a Parquet file: give it the .parquet suffix"),
            (b"%PDF", "a PDF document"), (b"\x89PNG", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"))
LABELS = {"utf-8": "UTF-8", "cp1252": "Windows-1252"}
CHUNK = 1 << 20


class NotText(ValueError):
    """The file is not text in any encoding this reader accepts."""


def data_suffix(path: Path) -> str:
    """The suffix naming the data's format, compression aside: ``x.csv.gz`` -> ``.csv``."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    return suffixes[-1] if suffixes else ""


@contextmanager
def binary(path: Path) -> Iterator[BinaryIO]:
    """The file's bytes, decompressed when it is gzip (by its first bytes, whatever its name)."""
    with path.open("rb") as raw:
        compressed = raw.read(2) == GZIP
        raw.seek(0)
        if not compressed:
            yield raw
            return
        with gzip.GzipFile(fileobj=raw) as unzipped:
            yield unzipped  # type: ignore[misc]  # GzipFile is a BinaryIO in all but name


def _utf8_throughout(stream: BinaryIO) -> bool:
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        while chunk := stream.read(CHUNK):
            decoder.decode(chunk)
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


def detect(path: Path) -> tuple[str, str]:
    """``(codec, label)`` of a text file (see the module's rules); ``NotText`` when it is not one."""
    try:
        with binary(path) as stream:
            head = stream.read(4096)
            for bom, codec, label in BOMS:
                if head.startswith(bom):
                    return codec, label
            for magic, what in NOT_TEXT:
                if head.startswith(magic):
                    raise NotText(f"{path}: not a text file: {what}")
            if b"\x00" in head:
                raise NotText(f"{path}: not a text file (NUL bytes: a binary file, or UTF-16 without its byte order "
                              "mark: save it as UTF-8)")
            stream.seek(0)
            if _utf8_throughout(stream):
                return "utf-8", "UTF-8"
    except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        raise NotText(f"{path}: cannot be read: {exc}") from None
    return "cp1252", "Windows-1252"


@contextmanager
def open_text(path: Path) -> Iterator[tuple[TextIO, str]]:
    """The file as text (newlines kept as they are, for the CSV reader) and its encoding's label."""
    codec, label = detect(path)
    with binary(path) as stream:
        # cp1252 leaves five bytes undefined: read them as U+FFFD rather than fail a whole export on one byte
        yield io.TextIOWrapper(stream, encoding=codec, errors="replace" if codec == "cp1252" else "strict",
                               newline=""), label
