#!/usr/bin/env python3
"""Writes the seed corpus for safetensors_header_fuzz into tests/fuzz/corpus/safetensors/.

Two kinds of seeds, matching the two ways the fuzzer reads an input: whole safetensors files, and bare header
JSON (which the fuzzer frames with its length and a 4096-byte zero data region). Deterministic; rerun after
changing it and commit the result.
"""
import json
import os
import struct

DTYPE_SIZES = {"F32": 4, "F16": 2, "BF16": 2, "F64": 8, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
               "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}


def header_json(tensors, metadata=None, start=0, gap=0):
    header = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    offset = start
    for name, dtype, shape in tensors:
        count = 1
        for dim in shape:
            count *= dim
        size = count * DTYPE_SIZES[dtype]
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size + gap
    return json.dumps(header, separators=(",", ":")), offset


def whole_file(tensors, metadata=None):
    text, data_size = header_json(tensors, metadata)
    text += " " * (-len(text) % 8)  # The reference writer pads the header to 8 bytes.
    data = bytes((i * 37 + 11) & 0xff for i in range(data_size))
    return struct.pack("<Q", len(text)) + text.encode() + data


def main():
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "safetensors")
    os.makedirs(out, exist_ok=True)
    layer = [("model.layers.0.self_attn.q_proj.weight", "BF16", [8, 4]),
             ("model.layers.0.mlp.experts.0.up_proj.weight", "BF16", [4, 8]),
             ("model.norm.weight", "F32", [4])]
    seeds = {
        "file_empty_header": whole_file([]),
        "file_one_f32": whole_file([("w", "F32", [2, 2])]),
        "file_layer_metadata": whole_file(layer, {"format": "pt"}),
        "file_all_dtypes": whole_file([(f"t_{d.lower()}", d, [3]) for d in DTYPE_SIZES]),
        "file_scalar_and_empty": whole_file([("scalar", "F16", []), ("empty", "BF16", [0, 7])]),
        "json_layer": header_json(layer, {"format": "pt"})[0].encode(),
        "json_gaps": header_json([("a", "U8", [16]), ("b", "F16", [2, 3]), ("c", "I64", [2])], gap=24)[0].encode(),
        "json_all_dtypes": header_json([(f"t_{d.lower()}", d, [2, 2]) for d in DTYPE_SIZES])[0].encode(),
    }
    for name, content in seeds.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(content)


if __name__ == "__main__":
    main()
