"""Binary frames round-trip and keep arrays 4-byte aligned for Float32Array views."""

import numpy as np

from fusevis.viewer.frames import decode_frame, encode_frame


def test_round_trip_keeps_header_shapes_and_values() -> None:
    arrays = {"a": np.arange(6, dtype=np.float64).reshape(2, 3), "b/c": np.array([1.5], np.float32)}
    frame = encode_frame({"kind": "x", "seq": 3}, arrays)
    header, decoded = decode_frame(frame)
    assert header == {"kind": "x", "seq": 3}
    np.testing.assert_array_equal(decoded["a"], arrays["a"].astype(np.float32))
    np.testing.assert_array_equal(decoded["b/c"], [1.5])
    length = int.from_bytes(frame[:4], "little")
    assert (4 + length) % 4 == 0
