"""ROS-free test helpers for images."""


def png_bomb(width: int, height: int) -> bytes:
    """A valid 1-bit grayscale PNG of width x height, all black: tiny (20000x20000 is 48 KB)
    but 8 bits per pixel once decoded (400 MB), a decompression bomb."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    rows = bytes(1 + (width + 7) // 8) * 1000  # filter byte 0 + packed zero pixels, 1000 rows
    deflate = zlib.compressobj(9)
    data = b"".join(deflate.compress(rows) for _ in range(height // 1000))
    data += deflate.compress(rows[: (height % 1000) * (1 + (width + 7) // 8)]) + deflate.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", data) + chunk(b"IEND", b"")
