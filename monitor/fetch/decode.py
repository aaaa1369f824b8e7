"""Our own capped decompression: httpx's decoder inflates a whole chunk at once, which a gzip
bomb exploits, so the body is inflated step by step and stopped at the cap."""

from __future__ import annotations

import zlib

from monitor.logs import get_logger

log = get_logger(__name__)


_STEP = 1024 * 1024


class TooLarge(Exception):
    pass


class CappedDecoder:
    """Undo Content-Encoding with a hard cap on the output of every single zlib call."""

    def __init__(self, encoding: str, cap: int) -> None:
        self.encoding = encoding
        self.cap = cap
        self.size = 0
        self._parts: list[bytes] = []
        self._first = True
        self._obj: zlib._Decompress | None = None
        if encoding in ("gzip", "x-gzip"):
            self._obj = zlib.decompressobj(zlib.MAX_WBITS | 16)
        elif encoding == "deflate":
            self._obj = zlib.decompressobj(zlib.MAX_WBITS)

    def feed(self, data: bytes) -> None:
        if self._obj is None:
            self._add(data)
            return
        if self._first and self.encoding == "deflate" and data:
            self._first = False
            # Some servers send raw deflate without the zlib header; sniff like browsers do.
            if not looks_like_zlib(data):
                self._obj = zlib.decompressobj(-zlib.MAX_WBITS)
        pending = data
        while pending:
            # Small steps: one call's output (and zlib's buffer growth) stays ~1 MiB.
            out = self._obj.decompress(pending, min(self.cap - self.size + 1, _STEP))
            self._add(out)
            pending = self._obj.unconsumed_tail
            if self._obj.eof:
                rest = self._obj.unused_data
                if not rest or self.encoding == "deflate":
                    return
                # Concatenated gzip members form one valid body.
                self._obj = zlib.decompressobj(zlib.MAX_WBITS | 16)
                pending = rest

    def finish(self) -> bytes:
        if self._obj is not None and not self._obj.eof:
            self._add(self._obj.flush())
        return b"".join(self._parts)

    def _add(self, data: bytes) -> None:
        if not data:
            return
        self.size += len(data)
        if self.size > self.cap:
            raise TooLarge(f"body is larger than {self.cap} bytes after {self.encoding} decoding")
        self._parts.append(data)


def looks_like_zlib(data: bytes) -> bool:
    return len(data) >= 2 and data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0
