"""Character-level text: the shipped Tiny Shakespeare, a character tokenizer, and a dataset of
every contiguous block of a token stream (what a character language model trains on).
"""
import gzip
import json
from importlib import resources

import numpy as np

from .datasets import DataFileError


def load_text(path=None):
    """The text of a UTF-8 file (``.gz`` is decompressed), or the shipped Tiny Shakespeare
    (1,115,394 characters; source and licence: disttrain/data/files/README.md) when ``path`` is None."""
    try:
        if path is None:
            ref = resources.files("disttrain.data").joinpath("files", "tinyshakespeare.txt.gz")
            with ref.open("rb") as raw, gzip.open(raw, "rt", encoding="utf-8") as f:
                return f.read()
        opener = gzip.open if str(path).endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        raise DataFileError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, EOFError) as exc:
        raise DataFileError(f"{path or 'the shipped Tiny Shakespeare'}: cannot read it as UTF-8 text ({exc})") from None


class CharTokenizer:
    """Characters <-> integer ids; the vocabulary is the sorted set of characters (as in nanoGPT)."""

    def __init__(self, chars):
        self.chars = "".join(chars)
        if len(set(self.chars)) != len(self.chars):
            raise ValueError("CharTokenizer: the vocabulary repeats a character")
        self._ids = {c: i for i, c in enumerate(self.chars)}

    @classmethod
    def from_text(cls, text):
        return cls(sorted(set(text)))

    @property
    def vocab_size(self):
        return len(self.chars)

    def encode(self, text):
        try:
            return np.fromiter((self._ids[c] for c in text), dtype=np.int64, count=len(text))
        except KeyError as exc:
            raise ValueError(f"CharTokenizer: character {exc.args[0]!r} is not in the vocabulary") from None

    def decode(self, ids):
        return "".join(self.chars[int(i)] for i in np.asarray(ids).reshape(-1))

    def to_json(self):
        return json.dumps({"kind": "char", "chars": self.chars}, ensure_ascii=False)

    @classmethod
    def from_json(cls, text):
        obj = json.loads(text)
        if not isinstance(obj, dict) or obj.get("kind") != "char" or not isinstance(obj.get("chars"), str):
            raise ValueError("not a character vocabulary (expected {\"kind\": \"char\", \"chars\": \"...\"})")
        return cls(obj["chars"])


class _Windows:
    """Row i = tokens[i + shift : i + shift + block]; gathered by slice or index array without
    ever materialising all rows."""

    def __init__(self, tokens, block, shift, count):
        self.tokens, self.block, self.shift, self.count = tokens, block, shift, count
        self.shape = (count, block)
        self.dtype = tokens.dtype
        self.ndim = 2
        self._offsets = np.arange(block)

    def __len__(self):
        return self.count

    def __getitem__(self, index):
        if isinstance(index, slice):
            index = np.arange(*index.indices(self.count))
        starts = np.asarray(index, dtype=np.int64)
        if starts.size and (starts.min() < -self.count or starts.max() >= self.count):
            raise IndexError(f"block index out of range for {self.count} blocks")
        starts = np.where(starts < 0, starts + self.count, starts)
        return self.tokens[starts[..., None] + self.shift + self._offsets]


class TokenBlocks:
    """Sample i of a token stream: (tokens[i : i+block], tokens[i+1 : i+block+1]), for every start
    i with a full target block (len(tokens) - block samples). A shuffled loader over it draws
    random contiguous blocks, as nanoGPT's sampling does."""

    def __init__(self, tokens, block_size):
        tokens = np.ascontiguousarray(tokens, dtype=np.int64)
        if tokens.ndim != 1 or len(tokens) <= block_size:
            raise ValueError(f"TokenBlocks: need a 1-d token stream longer than block_size {block_size}, got "
                             f"shape {tokens.shape}")
        n = len(tokens) - block_size
        self.arrays = (_Windows(tokens, block_size, 0, n), _Windows(tokens, block_size, 1, n))

    def __len__(self):
        return len(self.arrays[0])

    def __getitem__(self, index):
        return tuple(a[index] for a in self.arrays)
