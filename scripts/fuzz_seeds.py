"""Seed inputs for scripts/fuzz.sh: real files of each format from the fixtures, and near misses."""
import glob, json, os, struct, sys

name, out = sys.argv[1], sys.argv[2]
root = os.path.join(os.path.dirname(__file__), "..", "Tests", "Fixtures")


def put(tag, data):
    with open(os.path.join(out, "seed-" + tag), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def safetensors(header, data):
    h = json.dumps(header).encode()
    return struct.pack("<Q", len(h)) + h + data


if name == "safetensors-header":
    put("valid", safetensors({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                              "b": {"dtype": "BF16", "shape": [1, 1], "data_offsets": [8, 10]}, "__metadata__": {"format": "pt"}}, bytes(10)))
    put("scalar", safetensors({"a": {"dtype": "I64", "shape": [], "data_offsets": [0, 8]}}, bytes(8)))
    put("size", safetensors({"a": {"dtype": "F16", "shape": [3], "data_offsets": [0, 4]}}, bytes(4)))
elif name == "config":
    for path in sorted(glob.glob(os.path.join(root, "hf", "*", "config.json"))):
        put(path.split(os.sep)[-2], open(path, "rb").read())
elif name == "tokenizer":
    for path in sorted(glob.glob(os.path.join(root, "tokenizers", "*", "tokenizer.json"))):
        put(path.split(os.sep)[-2], open(path, "rb").read())
elif name == "generation-config":
    for path in sorted(glob.glob(os.path.join(root, "hf", "*", "generation_config.json"))):
        put(path.split(os.sep)[-2], open(path, "rb").read())
    put("list", '{"eos_token_id": [1, 2, 106], "bos_token_id": 0}')
    put("null", '{"eos_token_id": null}')
elif name == "index":
    put("two", json.dumps({"metadata": {"total_size": 96}, "weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}))
    put("bad", json.dumps({"weight_map": {"a": "../x.safetensors"}}))
elif name == "blocks":
    # q8: 32 int8 codes + an f16 scale per block; q4: 32 bytes of codes + f16 scale and minimum per 64 columns.
    q8 = bytes(range(32)) + struct.pack("<e", 0.5)
    q4 = bytes(range(32)) + struct.pack("<ee", 0.25, -1.0)
    meta = {"swift_moe.quantization": json.dumps({"w8": {"format": "q8", "shape": [2, 32]}, "w4": {"format": "q4", "shape": [1, 64]}})}
    put("q8q4", safetensors({"w8": {"dtype": "U8", "shape": [2, len(q8)], "data_offsets": [0, 2 * len(q8)]},
                             "w4": {"dtype": "U8", "shape": [1, len(q4)], "data_offsets": [2 * len(q8), 2 * len(q8) + len(q4)]},
                             "__metadata__": meta}, q8 + q8 + q4))
    # q4x8: eight q4 rows interleaved per group of 64 columns (8 x 32 code bytes, then 8 x (scale, minimum)).
    q4x8 = bytes(range(256)) + struct.pack("<" + "ee" * 8, *([0.25, -1.0] * 8))
    meta = {"swift_moe.quantization": json.dumps({"w": {"format": "q4x8", "shape": [8, 64]}})}
    put("q4x8", safetensors({"w": {"dtype": "U8", "shape": [8, len(q4)], "data_offsets": [0, len(q4x8)]}, "__metadata__": meta}, q4x8))
    mx = os.path.join(root, "hf", "gpt_oss_mxfp4", "model.safetensors")
    put("mxfp4", open(mx, "rb").read())
