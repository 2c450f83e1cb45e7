"""Random-number generator state as plain JSON, so a restarted run continues bit for bit.

A ``numpy.random.Generator`` is fully described by its bit generator's ``state`` dict
(integers, strings and small integer arrays). These helpers turn it into JSON-able data
and back without pickle: restoring constructs one of numpy's own bit generators by name
from a fixed list and assigns the state, so loading never runs code from the file.
"""

from __future__ import annotations

import json

import numpy as np

__all__ = ["rng_state", "rng_from_state", "rng_to_bytes", "rng_from_bytes"]

_BIT_GENERATORS = ("PCG64", "PCG64DXSM", "Philox", "SFC64", "MT19937")


def _encode(value):
    if isinstance(value, dict):
        return {str(k): _encode(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return {"__ndarray__": value.dtype.str, "data": value.tolist()}
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, (int, str)) or value is None:
        return value
    raise TypeError(f"unexpected value in a bit generator state: {type(value).__name__}")


def _decode(value):
    if isinstance(value, dict):
        if "__ndarray__" in value:
            return np.asarray(value["data"], dtype=np.dtype(value["__ndarray__"]))
        return {k: _decode(v) for k, v in value.items()}
    return value


def rng_state(gen: np.random.Generator) -> dict:
    """The state of ``gen`` as a JSON-able dict. Not collective.

    ``rng_from_state(rng_state(g))`` draws exactly the numbers ``g`` would draw next.
    """
    if not isinstance(gen, np.random.Generator):
        raise TypeError(f"expected a numpy.random.Generator, got {type(gen).__name__}")
    state = gen.bit_generator.state
    if state.get("bit_generator") not in _BIT_GENERATORS:
        raise TypeError(f"unsupported bit generator {state.get('bit_generator')!r} "
                        f"(supported: {', '.join(_BIT_GENERATORS)})")
    return _encode(state)


def rng_from_state(state: dict) -> np.random.Generator:
    """A new ``numpy.random.Generator`` in the state recorded by :func:`rng_state`.

    Not collective.
    """
    if not isinstance(state, dict) or state.get("bit_generator") not in _BIT_GENERATORS:
        raise ValueError("not a random generator state recorded by rng_state")
    bitgen = getattr(np.random, state["bit_generator"])()
    bitgen.state = _decode(state)
    return np.random.Generator(bitgen)


def rng_to_bytes(gen: np.random.Generator) -> np.ndarray:
    """:func:`rng_state` as UTF-8 JSON in a uint8 array (how checkpoints store it)."""
    return np.frombuffer(json.dumps(rng_state(gen)).encode(), dtype=np.uint8).copy()


def rng_from_bytes(data: np.ndarray) -> np.random.Generator:
    """Inverse of :func:`rng_to_bytes`."""
    return rng_from_state(json.loads(np.asarray(data, dtype=np.uint8).tobytes().decode()))
