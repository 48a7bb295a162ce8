"""Format scanners: the ONNX protobuf walk (large initializers, and many small ones), the safetensors header
check at growing file sizes, and the safetensors and GGUF header kernels (native vs pure Python).

Run: python benches/bench_formats.py   (results go into docs/performance.md by hand)
Inputs are generated in a temporary folder (the 100 GB safetensors file is sparse).
"""
from __future__ import annotations

import json
import os
import struct
import tempfile

import gguf
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from mlguard import engine, scan_file
from mlguard.config import Config
from mlguard.engine.pure.onnx_schema import SCHEMA
from mlguard.scan import scan_tree
from timing import median


def onnx_model(tensors: int, elements: int) -> bytes:
    inits = [numpy_helper.from_array(np.full(elements, i, np.float32), f"w{i}") for i in range(tensors)]
    nodes = [helper.make_node("Add", ["x" if i == 0 else f"h{i - 1}", f"w{i}"], [f"h{i}"]) for i in range(tensors)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [elements])],
                              [helper.make_tensor_value_info(f"h{tensors - 1}", TensorProto.FLOAT, [elements])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def safetensors_file(path: str, size: int) -> None:
    header = json.dumps({"w": {"dtype": "U8", "shape": [size], "data_offsets": [0, size]}}).encode()
    header += b" " * (-len(header) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(header)) + header)
        f.truncate(8 + len(header) + size)


def safetensors_header_bytes(tensors: int) -> bytes:
    """A header like a transformer checkpoint's: ``tensors`` 2-D F16 entries and a little metadata."""
    entries = {f"model.layers.{i // 8}.mlp.w{i % 8}.weight": {"dtype": "F16", "shape": [4096, 4096],
                                                            "data_offsets": [i * 2**25, (i + 1) * 2**25]}
               for i in range(tensors)}
    header = json.dumps({"__metadata__": {"format": "pt"}, **entries}).encode()
    return struct.pack("<Q", len(header)) + header


def gguf_header_bytes(path: str, vocab: int, tensors: int) -> bytes:
    """The header of a llama-style GGUF file: a tokenizer of ``vocab`` tokens (tokens, scores, types, merges) and
    ``tensors`` tensor infos (their data is not written: the kernel never reads it)."""
    w = gguf.GGUFWriter(path, "llama")
    w.add_array("tokenizer.ggml.tokens", [f"tok{i}" for i in range(vocab)])
    w.add_array("tokenizer.ggml.scores", [float(i) for i in range(vocab)])
    w.add_array("tokenizer.ggml.token_type", [1] * vocab)
    w.add_array("tokenizer.ggml.merges", [f"t{i} k{i}" for i in range(vocab)])
    for i in range(tensors):
        w.add_tensor_info(f"blk.{i // 9}.w{i % 9}.weight", (4096, 4096), np.dtype(np.float16), 2 * 4096 * 4096)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    w.close()
    with open(path, "rb") as f:
        return f.read()


def main() -> None:
    rows = ["| input | size | walk (protobuf kernel) | walk throughput | whole scan_file |", "| --- | --- | --- | --- | --- |"]
    with tempfile.TemporaryDirectory() as folder:
        for label, tensors, elements in (("64 initializers of 4 MiB", 64, 1 << 20),
                                         ("256 initializers of 4 MiB", 256, 1 << 20),
                                         ("50,000 initializers of 64 B", 50_000, 16)):
            data = onnx_model(tensors, elements)
            path = os.path.join(folder, "m.onnx")
            with open(path, "wb") as f:
                f.write(data)
            walk_s = median(lambda: engine.protobuf_walk(data, SCHEMA, "Model"))
            scan_s = median(lambda: scan_file(path))
            rows.append(f"| {label} | {len(data) / 1e6:,.1f} MB | {walk_s * 1e3:.2f} ms | "
                        f"{len(data) / walk_s / 1e6:,.0f} MB/s | {scan_s * 1e3:.2f} ms |")
            del data
        rows += ["", "| safetensors file (header + one U8 tensor; sparse) | scan_file |", "| --- | --- |"]
        config = Config(max_file_size=1 << 50)
        for size in (1 << 20, 1 << 30, 100 << 30):
            path = os.path.join(folder, f"w{size}.safetensors")
            safetensors_file(path, size)
            shown = f"{size >> 30} GiB" if size >= 1 << 30 else f"{size >> 20} MiB"
            rows.append(f"| {shown} | {median(lambda: scan_tree(path, config)) * 1e3:.2f} ms |")
            os.unlink(path)
        rows += ["", "| header kernel | input | header | native | python | native speed-up |",
                 "| --- | --- | --- | --- | --- | --- |"]
        for kernel, label, data in (
                ("safetensors_header", "1,000 tensors", safetensors_header_bytes(1_000)),
                ("safetensors_header", "100,000 tensors", safetensors_header_bytes(100_000)),
                ("gguf_header", "32,000-token vocabulary, 291 tensors",
                 gguf_header_bytes(os.path.join(folder, "s.gguf"), 32_000, 291)),
                ("gguf_header", "128,256-token vocabulary, 723 tensors",
                 gguf_header_bytes(os.path.join(folder, "l.gguf"), 128_256, 723))):
            kernel_fn = getattr(engine, kernel)
            native, python = (median(lambda: kernel_fn(data, engine=name)) for name in ("native", "python"))
            rows.append(f"| {kernel} | {label} | {len(data) / 1e6:,.2f} MB | {native * 1e3:.2f} ms | "
                        f"{python * 1e3:.1f} ms | {python / native:,.0f}x |")
    print(f"onnx {onnx.__version__}, engine {engine.engine_name()}\n")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
