"""A llama_batch whose arrays numpy owns."""

from __future__ import annotations

import ctypes

import numpy as np


class TokenBatch:
    """A llama_batch whose arrays numpy owns, filled with a few slice assignments.

    Filling llama_batch_init's arrays element by element costs a GIL round trip per field per token, and
    with the UI thread running those round trips can slow decoding several times over.
    """

    def __init__(self, llama_cpp, size: int):
        self.token = np.zeros(size, dtype=np.int32)
        self.pos = np.zeros(size, dtype=np.int32)
        self.n_seq_id = np.ones(size, dtype=np.int32)
        self.seq_ids = np.zeros(size, dtype=np.int32)
        self.logits = np.zeros(size, dtype=np.int8)
        pointer = ctypes.POINTER(llama_cpp.llama_seq_id)
        base = self.seq_ids.ctypes.data
        self.seq_id_ptrs = (pointer * size)(*(ctypes.cast(base + 4 * i, pointer) for i in range(size)))
        self.struct = llama_cpp.llama_batch(
            n_tokens=0,
            token=self.token.ctypes.data_as(ctypes.POINTER(llama_cpp.llama_token)),
            embd=None,
            pos=self.pos.ctypes.data_as(ctypes.POINTER(llama_cpp.llama_pos)),
            n_seq_id=self.n_seq_id.ctypes.data_as(ctypes.POINTER(ctypes.c_int32)),
            seq_id=self.seq_id_ptrs,
            logits=self.logits.ctypes.data_as(ctypes.POINTER(ctypes.c_int8)),
        )

    def fill(self, tokens: list[int], positions: list[int], seqs: list[int], logits: list[bool]):
        count = len(tokens)
        self.token[:count] = tokens
        self.pos[:count] = positions
        self.seq_ids[:count] = seqs
        self.logits[:count] = logits
        self.struct.n_tokens = count
        return self.struct
