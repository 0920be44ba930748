#!/usr/bin/env python3
"""Writes a small GGUF with the PyPI `gguf` package's GGUFWriter, and a JSON
description of it read back with gguf's GGUFReader: the container oracle for
crates/gguf/tests/container.rs (gguf-and-quants.md §7, §8.5).

Re-run: pip install gguf==0.19.0 numpy
        python3 tools/reference/make_container_fixture.py crates/gguf/tests/fixtures/container
"""
import json
import os
import sys

import numpy as np
import gguf


def main(out_dir):
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "gguf_py_writer.gguf")
    rng = np.random.default_rng(7)
    w = gguf.GGUFWriter(path, "deepseek4", use_temp_file=False)
    w.data_alignment = 64
    w.add_uint32("general.alignment", 64)
    w.add_uint8("t.u8", 250)
    w.add_int8("t.i8", -100)
    w.add_uint16("t.u16", 60000)
    w.add_int16("t.i16", -20000)
    w.add_uint32("t.u32", 4096)
    w.add_int32("t.i32", -123456)
    w.add_float32("t.f32", 0.5)
    w.add_bool("t.bool", True)
    w.add_string("t.str", "DwarfStar ｜DSML｜ ✓")
    w.add_uint64("t.u64", 1 << 50)
    w.add_int64("t.i64", -(1 << 50))
    w.add_float64("t.f64", 0.25)
    w.add_array("t.arr_u32", [4, 128, 0])
    w.add_array("t.arr_str", ["<｜User｜>", "a b", ""])
    w.add_array("t.arr_f32", [1.5, -2.0])
    nested = [[1, 2], [3]]
    w.add_array("t.arr_nested", nested)
    w.add_tensor("f32", rng.standard_normal((3, 5)).astype(np.float32))
    w.add_tensor("f16", rng.standard_normal((7,)).astype(np.float16))
    q8 = rng.integers(0, 256, size=(2, 34 * 2), dtype=np.uint8)
    w.add_tensor("q8_0", q8, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    r = gguf.GGUFReader(path)
    desc = {"alignment": int(r.alignment), "data_start": int(r.data_offset), "tensors": [], "metadata": {}}
    for t in r.tensors:
        desc["tensors"].append({
            "name": t.name,
            "type": t.tensor_type.name,
            "shape": [int(x) for x in t.shape],
            "data_offset": int(t.data_offset),
            "n_bytes": int(t.n_bytes),
        })
    for f in r.fields.values():
        if f.name.startswith("GGUF."):
            continue
        desc["metadata"][f.name] = f.contents()
    # GGUFReader flattens arrays of arrays; state what was written instead.
    desc["metadata"]["t.arr_nested"] = nested
    with open(os.path.join(out_dir, "gguf_py_writer.json"), "w") as fh:
        json.dump(desc, fh, indent=1, ensure_ascii=False, default=lambda o: o.item())
        fh.write("\n")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "crates/gguf/tests/fixtures/container")
