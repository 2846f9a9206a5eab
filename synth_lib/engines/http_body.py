"""Reading an HTTP response body with a byte cap, on the wire and after decompression.

A server may answer 30 MiB for a 128-token request, or 30 KB of gzip that unpacks to
30 MiB. The body is read as a stream of raw chunks and decompressed here, chunk by chunk,
with zlib's `max_length`, so no more than `cap` bytes (plus one chunk) are ever held,
compressed or not. Encodings other than gzip and deflate are refused rather than trusted
to a decoder without a bound.
"""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator

import httpx

ACCEPT_ENCODING = "gzip, deflate"
_ZLIB_OR_GZIP = 32 + zlib.MAX_WBITS  # zlib picks the header (gzip or zlib) by itself


class BodyTooLarge(Exception):
    """The body (raw or decompressed) is over its cap."""


class BodyEncodingError(Exception):
    """A Content-Encoding we do not decode, or a stream that does not decompress."""


class BoundedDecoder:
    """Decompresses gzip/deflate (or passes identity through), never past `cap` bytes."""

    def __init__(self, encoding: str, cap: int) -> None:
        self.cap = cap
        self.size = 0
        names = [e.strip().lower() for e in encoding.split(",") if e.strip()]
        names = [n for n in names if n != "identity"]
        if len(names) > 1 or (names and names[0] not in ("gzip", "x-gzip", "deflate")):
            raise BodyEncodingError(f"Content-Encoding {encoding!r} is not decoded")
        self._zlib = zlib.decompressobj(_ZLIB_OR_GZIP) if names else None

    def _take(self, data: bytes) -> bytes:
        self.size += len(data)
        if self.size > self.cap:
            raise BodyTooLarge(f"body over {self.cap} bytes after decompression")
        return data

    def feed(self, chunk: bytes) -> bytes:
        if self._zlib is None:
            return self._take(chunk)
        out = []
        data = chunk
        try:
            while data and not self._zlib.eof:
                out.append(self._take(self._zlib.decompress(data, self.cap - self.size + 1)))
                data = self._zlib.unconsumed_tail
        except zlib.error as exc:
            raise BodyEncodingError(f"body does not decompress: {exc}") from exc
        return b"".join(out)


async def read_capped(response: httpx.Response, cap: int, *, truncate: bool = False) -> bytes:
    """The decoded body, at most `cap` bytes: over the cap raises, or with `truncate` stops.

    The raw (wire) size is capped too, so a body that does not decompress to much but is
    itself huge is not read to its end either.
    """
    declared = response.headers.get("content-length", "")
    if not truncate and declared.isdigit() and int(declared) > cap:
        raise BodyTooLarge(f"Content-Length {declared} over the cap of {cap} bytes")
    decoder = BoundedDecoder(response.headers.get("content-encoding", "identity"), cap)
    parts: list[bytes] = []
    raw = 0
    chunks: AsyncIterator[bytes] = response.aiter_raw()
    try:
        async for chunk in chunks:
            raw += len(chunk)
            try:
                if raw > cap:
                    raise BodyTooLarge(f"body over {cap} bytes on the wire")
                parts.append(decoder.feed(chunk))
            except BodyTooLarge:
                if not truncate:
                    raise
                break
            if truncate and decoder.size >= cap:
                break
    finally:
        await response.aclose()
    body = b"".join(parts)
    return body[:cap] if truncate else body
