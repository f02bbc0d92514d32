"""UTF-8 decoding of a sweep file, once for the parser, the API and the UI."""

from __future__ import annotations


class NotUtf8(ValueError):
    """Bytes that are not UTF-8: the first bad byte, its offset and its line (from 1)."""

    def __init__(self, byte: int, offset: int, line: int) -> None:
        super().__init__(f"not UTF-8: byte 0x{byte:02x} at offset {offset} (line {line})")
        self.byte, self.offset, self.line = byte, offset, line


def decode_utf8(raw: bytes) -> str:
    """`raw` as text; NotUtf8 naming the first byte that is not UTF-8."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise NotUtf8(raw[exc.start], exc.start, line) from None


def encodable(text: str) -> bool:
    """False for text holding lone surrogates, which no UTF-8 file can contain."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
