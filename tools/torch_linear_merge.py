#!/usr/bin/env python3
"""The obvious alternative to `kintsugi merge` for a linear merge: mergekit's
linear math written in PyTorch, as a user without kintsugi would run it
(bench/RESULTS.md, "Against PyTorch"; issue #17).

For every tensor name: stack the N checkpoints' tensors in float32, multiply
by the weights, sum over the stack and divide by the sum of the weights
(mergekit's `linear` with `normalize: true` and `dtype: float32`), then store
in the inputs' dtype. Reads and writes single-file safetensors checkpoints
with the standard library and torch alone (Debian has no `safetensors`
package for Python).

  torch_linear_merge.py --out OUT_DIR [--weights 1,1,...] [--check DIR] CKPT_DIR...

--check DIR compares the result with another merge of the same inputs
(kintsugi's): the same tensor names, shapes and dtypes, and every element
within one unit in the last place of the output dtype (the sum's order
differs: mergekit sums the stack, kintsugi adds input by input). Exit 1 when
they differ.
"""
import argparse
import json
import mmap
import os
import struct
import sys
import time

import torch

DTYPES = {"BF16": torch.bfloat16, "F16": torch.float16, "F32": torch.float32}
NAMES = {v: k for k, v in DTYPES.items()}
INT_VIEW = {torch.bfloat16: torch.int16, torch.float16: torch.int16, torch.float32: torch.int32}


def fail(msg):
    print(f"torch_linear_merge: {msg}", file=sys.stderr)
    sys.exit(1)


def model_file(folder):
    path = os.path.join(folder, "model.safetensors")
    if not os.path.isfile(path):
        fail(f"{folder}: no model.safetensors (only single-file checkpoints are read)")
    return path


def open_safetensors(path):
    """(header without __metadata__, mmap, offset of the data) of one file."""
    f = open(path, "rb")
    # Copy-on-write, never written: torch.frombuffer warns on read-only buffers.
    m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
    f.close()
    (n,) = struct.unpack("<Q", m[:8])
    header = json.loads(m[8 : 8 + n])
    header.pop("__metadata__", None)
    return header, m, 8 + n


def tensor(header, m, base, name):
    info = header[name]
    dtype = DTYPES.get(info["dtype"])
    if dtype is None:
        fail(f"{name}: dtype {info['dtype']} is not one of {sorted(DTYPES)}")
    begin, end = info["data_offsets"]
    count = (end - begin) // torch.tensor([], dtype=dtype).element_size()
    flat = torch.frombuffer(m, dtype=dtype, count=count, offset=base + begin)
    return flat.reshape(info["shape"])


def write_safetensors(path, tensors):
    header, offset = {}, 0
    for name, t in tensors.items():
        size = t.numel() * t.element_size()
        header[name] = {"dtype": NAMES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + size]}
        offset += size
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for t in tensors.values():
            f.write(t.contiguous().view(torch.uint8).numpy().tobytes())
        f.flush()
        os.fsync(f.fileno())


def merge(folders, weights, out):
    inputs = [open_safetensors(model_file(d)) for d in folders]
    names = list(inputs[0][0])
    for d, (h, _, _) in zip(folders, inputs):
        if sorted(h) != sorted(names):
            fail(f"{d}: other tensor names than {folders[0]}")
    w = torch.tensor(weights, dtype=torch.float32)
    merged = {}
    for name in names:
        ts = [tensor(h, m, b, name) for h, m, b in inputs]
        stack = torch.stack([t.to(torch.float32) for t in ts], dim=0)
        ww = w.reshape([-1] + [1] * (stack.dim() - 1))
        res = (ww * stack).sum(dim=0) / w.sum()
        merged[name] = res.to(ts[0].dtype)
    os.makedirs(out, exist_ok=True)
    write_safetensors(os.path.join(out, "model.safetensors"), merged)
    return merged


def ordered(t):
    """Integers in the order of the float values, one apart for adjacent
    values (both zeros are 0): sign and magnitude bits to two's complement."""
    bits = t.reshape(-1).view(INT_VIEW[t.dtype]).to(torch.int64)
    mag = bits & (0x7FFF if t.element_size() == 2 else 0x7FFFFFFF)
    return torch.where(bits < 0, -mag, mag)


def check(merged, other):
    h, m, b = open_safetensors(model_file(other))
    if sorted(h) != sorted(merged):
        fail(f"{other}: other tensor names than this merge")
    equal = total = 0
    for name, t in merged.items():
        o = tensor(h, m, b, name)
        if o.dtype != t.dtype or list(o.shape) != list(t.shape):
            fail(f"{name}: {NAMES[o.dtype]} {list(o.shape)} in {other}, "
                 f"{NAMES[t.dtype]} {list(t.shape)} here")
        a, c = ordered(t), ordered(o)
        ulps = (a - c).abs()
        if int(ulps.max()) > 1:
            j = int(ulps.argmax())
            fail(f"{name}[{j}]: {float(t.reshape(-1)[j])} here, {float(o.reshape(-1)[j])} in {other}")
        equal += int((ulps == 0).sum())
        total += a.numel()
    return equal, total


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--weights", help="comma-separated, one per checkpoint (default: all 1)")
    ap.add_argument("--check", help="another merge of the same inputs to compare with")
    ap.add_argument("checkpoints", nargs="+")
    a = ap.parse_args()
    weights = [1.0] * len(a.checkpoints)
    if a.weights:
        weights = [float(x) for x in a.weights.split(",")]
        if len(weights) != len(a.checkpoints):
            fail(f"--weights has {len(weights)} values for {len(a.checkpoints)} checkpoints")
    torch.set_num_threads(os.cpu_count() or 1)
    t0 = time.perf_counter()
    merged = merge(a.checkpoints, weights, a.out)
    secs = time.perf_counter() - t0
    print(f"torch_linear_merge: {len(merged)} tensors of {len(a.checkpoints)} checkpoints "
          f"in {secs:.3f} s after start-up (torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads)")
    if a.check:
        equal, total = check(merged, a.check)
        print(f"torch_linear_merge: agrees with {a.check} within one ulp; "
              f"{equal} of {total} elements identical")


if __name__ == "__main__":
    main()
