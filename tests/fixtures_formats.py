"""Real sample files of every format ML Guard sniffs, written by the real libraries.

``make_samples(directory)`` writes them and returns ``{key: Sample}``; each sample knows the
format (and flavour) the sniffer must report.  Nothing here is a committed binary blob: every
file is produced by code, the way users produce them.  Libraries that are not installed are
skipped (their samples are simply absent), so callers should look samples up with ``.get``.
"""
from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import os
import pickle
import random
import shutil
import tarfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Sample:
    path: Path
    format: str            # expected Format value
    flavour: str | None = None
    check_flavour: bool = True


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def make_samples(directory: str | os.PathLike) -> dict[str, Sample]:
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    s: dict[str, Sample] = {}

    def add(key, path, fmt, flavour=None, check_flavour=True):
        s[key] = Sample(Path(path), fmt, flavour, check_flavour)

    # ---- pickles, all protocols
    obj = {"weights": [1.5, 2.5, 3.5], "name": "model", "layers": (1, 2, 3), "n": 10 ** 30}
    for proto in range(6):
        add(f"pickle_p{proto}", _write(d / f"obj_p{proto}.pkl", pickle.dumps(obj, protocol=proto)), "pickle")
    strings = {f"key{i}": f"value number {i}" for i in range(20)}
    add("pickle_p0_strings", _write(d / "strings_p0.pkl", pickle.dumps(strings, protocol=0)), "pickle")
    big = {f"key{i}": f"value number {i}" for i in range(20000)}
    add("pickle_p0_big", _write(d / "big_p0.pkl", pickle.dumps(big, protocol=0)), "pickle")
    add("pickle_p1_list", _write(d / "list_p1.pkl", pickle.dumps(list(range(50)), protocol=1)), "pickle")
    add("pickle_p0_none", _write(d / "none_p0.pkl", pickle.dumps(None, protocol=0)), "pickle")
    # a protocol-0 payload the way attackers write them (GLOBAL + REDUCE), never loaded
    add("pickle_p0_reduce", _write(d / "evil_p0.pkl", b"cos\nsystem\n(S'echo hi'\ntR."), "pickle")
    add("pickle_p0_reduce_nostop", _write(d / "evil_nostop.pkl", b"cos\nsystem\n(S'echo hi'\ntR"), "pickle")

    # ---- compressed pickles (pandas / joblib style)
    p4 = pickle.dumps(obj, protocol=4)
    add("gzip_pickle", _write(d / "obj.pkl.gz", gzip.compress(p4)), "gzip")
    add("bz2_pickle", _write(d / "obj.pkl.bz2", bz2.compress(p4)), "bzip2")
    add("xz_pickle", _write(d / "obj.pkl.xz", lzma.compress(p4)), "xz")
    add("lzma_alone_pickle", _write(d / "obj.pkl.lzma", lzma.compress(p4, format=lzma.FORMAT_ALONE)), "lzma")
    add("zlib_pickle", _write(d / "obj.pkl.zlib", zlib.compress(p4)), "zlib")
    add("zlib_pickle_l1", _write(d / "obj1.zlib", zlib.compress(p4, 1)), "zlib")
    add("zlib_pickle_l9", _write(d / "obj9.zlib", zlib.compress(p4, 9)), "zlib")

    # ---- tar / nemo-like
    member = d / "_member.pkl"
    member.write_bytes(p4)
    with tarfile.open(d / "bundle.tar", "w", format=tarfile.GNU_FORMAT) as t:
        t.add(member, arcname="model_weights.ckpt")
    add("tar_gnu", d / "bundle.tar", "tar")
    with tarfile.open(d / "bundle_pax.tar", "w", format=tarfile.PAX_FORMAT) as t:
        t.add(member, arcname="model_config.yaml")
    add("tar_pax", d / "bundle_pax.tar", "tar")
    with tarfile.open(d / "bundle.nemo", "w:gz") as t:
        t.add(member, arcname="model_weights.ckpt")
    add("tar_gz_nemo", d / "bundle.nemo", "gzip")
    # old v7 tar: no "ustar" magic, only the header checksum
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as t:
        t.add(member, arcname="model.pkl")
    raw = bytearray(buf.getvalue())
    raw[257:265] = b"\x00" * 8
    raw[148:156] = b"        "
    raw[148:156] = (b"%06o\x00 " % sum(raw[:512]))
    add("tar_v7", _write(d / "old.tar", bytes(raw)), "tar")
    member.unlink()

    # ---- zips
    with zipfile.ZipFile(d / "plain.zip", "w") as z:
        z.writestr("readme.txt", "hello")
        z.writestr("weights/model.pkl", p4)
    add("zip_plain", d / "plain.zip", "zip", "plain")
    zbytes = (d / "plain.zip").read_bytes()
    add("zip_prepended", _write(d / "prepended.bin", os.urandom(100) + zbytes), "zip", "plain")
    add("zip_named_txt", _write(d / "notes.txt", zbytes), "zip", "plain")
    with zipfile.ZipFile(d / "empty.zip", "w"):
        pass
    add("zip_empty", d / "empty.zip", "zip", "plain")
    with zipfile.ZipFile(d / "stored_comment.zip", "w", zipfile.ZIP_STORED) as z:
        z.comment = b"x" * 1000
        z.writestr("a/data.pkl", p4)
        z.writestr("a/data/0", b"\x00" * 64)
        z.writestr("a/version", "3\n")
    add("zip_torchlike_comment", d / "stored_comment.zip", "zip", "pytorch")

    # ---- json / yaml / text family
    add("json_obj", _write(d / "config.json", json.dumps({"a": 1, "b": [1, 2, 3]}).encode()), "json")
    add("json_arr", _write(d / "list.json", b"[1, 2, {\"x\": null}]\n"), "json")
    big_json = json.dumps({"vocab": {f"tok{i}": i for i in range(200000)}}).encode()
    add("json_big", _write(d / "tokenizer.json", big_json), "json")
    add("yaml_marker", _write(d / "conf.yaml", b"---\nmodel:\n  name: bert\n  layers: 12\n"), "yaml")
    add("yaml_plain", _write(d / "params.yml", b"model:\n  name: bert\nlr: 0.001\nlist:\n  - a\n  - b\n"), "yaml")
    add("yaml_directive", _write(d / "dir.yaml", b"%YAML 1.2\n---\na: 1\n"), "yaml")
    add("yaml_env", _write(d / "environment.yml",
                           b"name: ml\nchannels:\n  - conda-forge\ndependencies:\n  - python=3.11\n  - numpy\n"), "yaml")
    add("text_english", _write(d / "README.md", (
        "# My model\n\nThis is a small model. It was trained on data.\n"
        "N. Smith wrote it. (c) 2024 ACME Inc.\nIt does things; see below.\n\n"
        "Le modèle est très bon — 日本語も大丈夫。\n").encode()), "text")
    add("text_csv", _write(d / "data.csv", b"col1,col2,label\n1,2,cat\n3,4,dog\n5,6,cat\n"), "text")
    add("text_python", _write(d / "train.py", (
        "import os\nimport torch\n\n\nclass Net(torch.nn.Module):\n    def __init__(self):\n"
        "        super().__init__()\n\n\ndef main():\n    print(os.getcwd())\n\n\nif __name__ == '__main__':\n"
        "    main()\n").encode()), "text")
    add("text_requirements", _write(d / "requirements.txt",
                                    b"torch==2.3.0\nnumpy>=1.26\n-r other.txt\nsafetensors\n"), "text")
    add("text_ini", _write(d / "setup.cfg", b"[metadata]\nname = x\nversion = 1.0\n"), "text")
    add("text_shell", _write(d / "run.sh", b"#!/bin/sh\nset -e\npython train.py \"$@\"\n"), "text")
    add("text_toml", _write(d / "pyproject.toml", b"[project]\nname = \"x\"\ndependencies = [\"torch\"]\n"),
        "text")
    add("text_dotted", _write(d / "dots.txt", b"...\n"), "text")
    add("text_parens", _write(d / "parens.txt", b"(see the docs)\n"), "text")
    add("text_letters", _write(d / "letters.txt", b"I think so.\nS'pose not.\n"), "text")
    add("text_cat", _write(d / "cat.txt", b"cat file\nfoo\nbar\n"), "text")
    add("text_big", _write(d / "big.txt", ("All work and no play. " * 20000).encode()), "text")
    add("text_utf8_cut", _write(d / "cut.txt", ("é" * (40 * 1024)).encode()), "text")
    add("binary_random", _write(d / "random.dat", random.Random(1234).randbytes(10000)), "binary")
    add("binary_latin1", _write(d / "latin1.txt", "caf\xe9 na\xefve\n".encode("latin-1")), "binary")
    add("empty", _write(d / "empty.pt", b""), "empty")
    for exe in ("/bin/true", "/usr/bin/true"):
        if os.path.exists(exe):
            shutil.copyfile(exe, d / "true_exe")
            add("elf", d / "true_exe", "executable", "elf")
            break

    _joblib_samples(d, add)
    _numpy_samples(d, add)
    _torch_samples(d, add)
    _safetensors_samples(d, add)
    _onnx_samples(d, add)
    _gguf_samples(d, add)
    _h5py_samples(d, add)
    _keras_samples(d, add)
    _sevenzip_samples(d, add)
    _notebook_samples(d, add)
    return s


def _joblib_samples(d: Path, add) -> None:
    try:
        import joblib
        import numpy as np
        from joblib.numpy_pickle_compat import write_zfile
    except ImportError:
        return
    obj = {"coef": np.arange(5.0), "name": "clf"}
    joblib.dump(obj, d / "model.joblib")
    add("joblib", d / "model.joblib", "pickle")
    for method, fmt in (("zlib", "zlib"), ("gzip", "gzip"), ("bz2", "bzip2"), ("lzma", "lzma"), ("xz", "xz")):
        path = d / f"model_{method}.joblib"
        joblib.dump(obj, path, compress=(method, 3))
        add(f"joblib_{method}", path, fmt)
    # joblib < 0.10 "z-file": 'ZF' + padded hex length + zlib; joblib.load still reads it
    with open(d / "old_zfile.pkl", "wb") as f:
        write_zfile(f, pickle.dumps(obj, protocol=2))
    add("joblib_zfile", d / "old_zfile.pkl", "zlib", "joblib-zf")


def _numpy_samples(d: Path, add) -> None:
    try:
        import numpy as np
    except ImportError:
        return
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    np.save(d / "array.npy", a)
    add("npy", d / "array.npy", "npy")
    np.save(d / "objects.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    add("npy_object", d / "objects.npy", "npy")
    np.savez(d / "arrays.npz", a=a, b=a * 2)
    add("npz", d / "arrays.npz", "zip", "npz")
    np.savez_compressed(d / "arrays_c.npz", a=a, b=a * 2)
    add("npz_compressed", d / "arrays_c.npz", "zip", "npz")
    np.savez(d / "objects.npz", a=a, o=np.array([{"k": 1}], dtype=object))
    add("npz_object", d / "objects.npz", "zip", "npz")


def _torch_samples(d: Path, add) -> None:
    try:
        import torch
    except ImportError:
        return
    sd = {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3), "b": torch.zeros(3)}
    torch.save(sd, d / "model.pt")
    add("torch_zip", d / "model.pt", "zip", "pytorch")
    torch.save(sd, d / "legacy.pt", _use_new_zipfile_serialization=False)
    add("torch_legacy", d / "legacy.pt", "pickle", "torch-legacy")
    buf = io.BytesIO()
    torch.save(sd, buf)
    _write(d / "pytorch_model.bin", buf.getvalue())
    add("torch_bin", d / "pytorch_model.bin", "zip", "pytorch")

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(3, 2)

        def forward(self, x):
            return torch.relu(self.lin(x))

    torch.jit.save(torch.jit.script(Net()), str(d / "scripted.pt"))
    add("torchscript", d / "scripted.pt", "zip", "torchscript")
    # enough tensors for the zip kernel to skim their directory
    torch.save({f"t{i}": torch.full((8,), float(i)) for i in range(200)}, d / "many.pt")
    add("torch_many", d / "many.pt", "zip", "pytorch")


def _safetensors_samples(d: Path, add) -> None:
    try:
        import numpy as np
        from safetensors.numpy import save_file
    except ImportError:
        return
    save_file({"w": np.ones((2, 2), dtype=np.float32)}, str(d / "model.safetensors"),
              metadata={"format": "np"})
    add("safetensors", d / "model.safetensors", "safetensors")
    # a polyglot: a valid safetensors file with a zip appended (sniffed as safetensors, zip embedded)
    zbuf = io.BytesIO()
    with zipfile.ZipFile(zbuf, "w") as z:
        z.writestr("extra.pkl", pickle.dumps({"a": 1}, protocol=4))
    _write(d / "polyglot.safetensors", (d / "model.safetensors").read_bytes() + zbuf.getvalue())
    add("safetensors_zip", d / "polyglot.safetensors", "safetensors")
    # a header whose length starts with the bytes \x80\x02 (0x280) must not look like a pickle
    for pad in range(0, 700):
        tensors = {"t": np.zeros(1, dtype=np.uint8)}
        path = d / "hdr.safetensors"
        save_file(tensors, str(path), metadata={"pad": "x" * pad})
        head = path.read_bytes()[:2]
        if head == b"\x80\x02":
            add("safetensors_0x280", path, "safetensors")
            break
    else:
        path.unlink(missing_ok=True)


def _onnx_samples(d: Path, add) -> None:
    try:
        import onnx
        from onnx import TensorProto, helper
    except ImportError:
        return
    x = helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 2])
    y = helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1, 2])
    w = helper.make_tensor("W", TensorProto.FLOAT, [1, 2], [1.0, 2.0])
    graph = helper.make_graph([helper.make_node("Add", ["X", "W"], ["Y"])], "g", [x], [y], [w])
    model = helper.make_model(graph, producer_name="mlguard-tests")
    onnx.save(model, str(d / "model.onnx"))
    add("onnx", d / "model.onnx", "onnx")
    graph2 = helper.make_graph([helper.make_node("Relu", ["X"], ["Y"])], "g2", [x], [y])
    onnx.save(helper.make_model(graph2, doc_string="tiny"), str(d / "tiny.onnx"))
    add("onnx_tiny", d / "tiny.onnx", "onnx")
    big = helper.make_tensor("B", TensorProto.FLOAT, [40000], [0.5] * 40000)
    graph3 = helper.make_graph([helper.make_node("Add", ["X", "B"], ["Y"])], "g3", [x], [y], [big])
    onnx.save(helper.make_model(graph3), str(d / "big.onnx"))
    add("onnx_big", d / "big.onnx", "onnx")


def _gguf_samples(d: Path, add) -> None:
    try:
        import gguf
        import numpy as np
    except ImportError:
        return
    w = gguf.GGUFWriter(str(d / "model.gguf"), "llama")
    w.add_block_count(1)
    w.add_string("tokenizer.chat_template", "{{ messages }}")
    w.add_tensor("tok", np.ones((4, 4), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    add("gguf", d / "model.gguf", "gguf")


def _h5py_samples(d: Path, add) -> None:
    try:
        import h5py
        import numpy as np
    except ImportError:
        return
    with h5py.File(d / "data.h5", "w") as f:
        f["x"] = np.arange(10)
    add("hdf5", d / "data.h5", "hdf5", None)
    with h5py.File(d / "ublock.h5", "w", userblock_size=1024) as f:
        f["x"] = np.arange(10)
    with open(d / "ublock.h5", "r+b") as f:
        f.write(b"user block text\n")
    add("hdf5_userblock", d / "ublock.h5", "hdf5", None)


def _keras_samples(d: Path, add) -> None:
    os.environ.setdefault("KERAS_BACKEND", "torch")
    try:
        import keras
    except Exception:
        return
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.save(d / "model.keras")
    add("keras", d / "model.keras", "zip", "keras")
    model.save(d / "legacy_model.h5")
    add("keras_h5", d / "legacy_model.h5", "hdf5", "keras-h5")


def _sevenzip_samples(d: Path, add) -> None:
    try:
        import py7zr
    except ImportError:
        return
    with py7zr.SevenZipFile(d / "bundle.7z", "w") as z:
        z.writestr(pickle.dumps({"a": 1}, protocol=4), "model.pkl")
    add("sevenzip", d / "bundle.7z", "7z")


def _notebook_samples(d: Path, add) -> None:
    try:
        import nbformat
    except ImportError:
        return
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# Title"), nbformat.v4.new_code_cell("print(1)")]
    nbformat.write(nb, str(d / "small.ipynb"))
    add("notebook", d / "small.ipynb", "notebook")
    # over the sniffer's 1 MiB parse limit: decided from head and tail ("nbformat" sits at the end)
    nb.cells = [nbformat.v4.new_code_cell(f"x = {i}\n" + "y = 'a'\n" * 50) for i in range(1500)]
    (d / "large.ipynb").write_text(json.dumps(nb, indent=1, sort_keys=True))
    add("notebook_large", d / "large.ipynb", "notebook")
