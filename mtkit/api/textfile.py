"""Text files a user hands mtkit (recipes, prediction inputs): decoded strictly, with errors that point at the byte.

UTF-8 is the format; a leading UTF-8 byte-order mark is dropped, and a file that starts with a UTF-16
or UTF-32 byte-order mark (what Windows editors and PowerShell's `>` write) is decoded as such. Any
other bytes that are not UTF-8 raise an MtkitError naming the line, column and byte offset.
"""

from __future__ import annotations

import codecs
from pathlib import Path

from mtkit.api.errors import MtkitError

__all__ = ["decode_text", "read_text_file"]

# Longest first: the UTF-32 LE mark starts with the UTF-16 LE one.
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def _position(data: bytes, offset: int) -> tuple[int, int]:
    """1-based (line, byte column) of `offset` in `data`."""
    line_start = data.rfind(b"\n", 0, offset) + 1
    return data.count(b"\n", 0, offset) + 1, offset - line_start + 1


def decode_text(data: bytes, source: str | Path, *, fix: str) -> str:
    """`data` as text (see the module docstring); `fix` ends the error message (what the user should do).

    Raises:
        MtkitError: the bytes are not UTF-8 and carry no UTF-16/32 byte-order mark.
    """
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                return data.decode(encoding)
            except UnicodeDecodeError as exc:
                line, column = _position(data, exc.start)
                raise MtkitError(
                    f"{source}: starts with a {encoding.replace('-sig', '')} byte-order mark but byte {exc.start} "
                    f"(line {line}, column {column}) cannot be decoded as {encoding.replace('-sig', '')}; {fix}"
                ) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line, column = _position(data, exc.start)
        byte = data[exc.start]
        if b"\x00" in data[:200]:
            guess = "it looks like UTF-16 or UTF-32 without a byte-order mark"
        else:
            guess = f"it looks like a legacy encoding such as latin-1 or cp1252 (0x{byte:02x} is {bytes([byte]).decode('cp1252', 'replace')!r} there)"
        raise MtkitError(
            f"{source}: not UTF-8 text: byte 0x{byte:02x} at line {line}, column {column} (byte offset {exc.start}); {guess}; {fix}"
        ) from None
    nul = data.find(b"\x00")
    if nul >= 0:  # valid UTF-8, but no text file holds NUL: ASCII saved as UTF-16/32 without a byte-order mark
        line, column = _position(data, nul)
        raise MtkitError(
            f"{source}: not UTF-8 text: a NUL byte at line {line}, column {column} (byte offset {nul}); "
            f"it looks like UTF-16 or UTF-32 without a byte-order mark; {fix}"
        )
    return text


def read_text_file(path: Path, *, what: str, fix: str) -> str:
    """Read and decode a text file; a missing file, a directory or an unreadable file is an MtkitError.

    Args:
        path: the file.
        what: what the file is, for messages ("recipe file", "input file").
        fix: how to repair an undecodable file, appended to the message.
    """
    if path.is_dir():
        raise MtkitError(f"{path}: is a directory, not a {what}; pass a file")
    if not path.is_file():
        raise MtkitError(f"{path}: no such {what}; check the path")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise MtkitError(f"{path}: cannot read the {what} ({exc.strerror or type(exc).__name__}); check its permissions") from None
    return decode_text(data, path, fix=fix)
