#!/usr/bin/env python3
"""Reads the digit in each of DiTKit's digit samples and says how often it is the digit asked for.

    python tools/classify_digits.py DIR [--model examples/digits/classifier.json] [--json]

DIR holds the PNGs `ditkit sample --each DIR` writes, named `<k>-class<c>.png`; c is the digit that was
requested. Each image is brought to the classifier's input the way tools/train_digits.py prepared its
training data: the first channel of the 8-bit image, 4x4 block means (32x32 -> 8x8), times 16/255 (the
data set's 0..16 scale). The classifier (examples/digits/classifier.json) is an MLP with ReLU.

Needs numpy only: PNGs are decoded here with zlib (8-bit gray, gray+alpha, RGB or RGBA, not interlaced).
Prints one line per image and the accuracy; with --json, {"accuracy", "count", "correct", "images": [...]}.
"""
import argparse
import json
import os
import re
import struct
import sys
import zlib

import numpy as np

CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}   # PNG colour type -> samples per pixel (8-bit only)


def read_png(path):
    """An 8-bit, non-interlaced PNG as a uint8 array [H, W, C]. Raises ValueError on anything else."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"{path}: not a PNG file")
    pos, idat, header = 8, [], None
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if len(body) != length:
            raise ValueError(f"{path}: truncated {kind!r} chunk at byte {pos}")
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
        pos += 12 + length
    if header is None:
        raise ValueError(f"{path}: no IHDR chunk")
    width, height, depth, colour, _, _, interlace = header
    if depth != 8 or colour not in CHANNELS or interlace != 0:
        raise ValueError(f"{path}: only 8-bit non-interlaced gray/RGB(A) PNGs are supported "
                         f"(bit depth {depth}, colour type {colour}, interlace {interlace})")
    c = CHANNELS[colour]
    stride = width * c
    raw = zlib.decompress(b"".join(idat))
    if len(raw) != height * (stride + 1):
        raise ValueError(f"{path}: image data has {len(raw)} bytes, expected {height * (stride + 1)}")
    out = np.zeros((height, stride), dtype=np.uint8)
    prev = np.zeros(stride, dtype=np.int32)
    for y in range(height):
        ftype = raw[y * (stride + 1)]
        line = np.frombuffer(raw, dtype=np.uint8, count=stride, offset=y * (stride + 1) + 1).astype(np.int32)
        if ftype == 0:
            cur = line
        elif ftype == 2:
            cur = (line + prev) & 0xFF
        elif ftype in (1, 3, 4):
            # Sub, Average and Paeth depend on the pixel to the left: decode byte by byte.
            cur = np.zeros(stride, dtype=np.int32)
            for i in range(stride):
                a = cur[i - c] if i >= c else 0
                b = prev[i]
                if ftype == 1:
                    pred = a
                elif ftype == 3:
                    pred = (a + b) // 2
                else:
                    cc = prev[i - c] if i >= c else 0
                    p = a + b - cc
                    pa, pb, pc = abs(p - a), abs(p - b), abs(p - cc)
                    pred = a if pa <= pb and pa <= pc else (b if pb <= pc else cc)
                cur[i] = (line[i] + pred) & 0xFF
        else:
            raise ValueError(f"{path}: unknown filter type {ftype} in row {y}")
        out[y] = cur
        prev = cur
    return out.reshape(height, width, c)


def features(pixels):
    """[H, W, C] uint8 (H, W multiples of 8) -> 64 values on the 0..16 scale."""
    h, w = pixels.shape[:2]
    if h % 8 or w % 8:
        raise ValueError(f"image is {w}x{h}; expected a multiple of 8 on each side")
    x = pixels[..., 0].astype(np.float64).reshape(8, h // 8, 8, w // 8).mean(axis=(1, 3))
    return (x * (16.0 / 255.0)).reshape(64)


def load_model(path):
    with open(path) as f:
        m = json.load(f)
    return [(np.array(layer["weight"], dtype=np.float64), np.array(layer["bias"], dtype=np.float64)) for layer in m["layers"]]


def predict(layers, x):
    """The MLP: ReLU between layers, argmax of the last layer's outputs."""
    for i, (w, b) in enumerate(layers):
        x = x @ w + b
        if i < len(layers) - 1:
            x = np.maximum(x, 0)
    return int(np.argmax(x))


def main():
    default_model = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples", "digits", "classifier.json")
    ap = argparse.ArgumentParser(description="Classify DiTKit's digit samples.")
    ap.add_argument("dir", help="folder of <k>-class<c>.png files (ditkit sample --each)")
    ap.add_argument("--model", default=default_model)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    layers = load_model(args.model)
    results = []
    for name in sorted(os.listdir(args.dir)):
        m = re.fullmatch(r"(\d+)-class(\d+)\.png", name)
        if not m:
            continue
        wanted = int(m.group(2))
        try:
            got = predict(layers, features(read_png(os.path.join(args.dir, name))))
        except ValueError as e:
            sys.exit(f"classify_digits: {e}")
        results.append({"file": name, "requested": wanted, "read": got})
    if not results:
        sys.exit(f"classify_digits: no <k>-class<c>.png files in {args.dir}")
    correct = sum(r["requested"] == r["read"] for r in results)
    accuracy = correct / len(results)
    if args.json:
        print(json.dumps({"accuracy": accuracy, "count": len(results), "correct": correct, "images": results}))
    else:
        for r in results:
            print(f"{r['file']}: requested {r['requested']}, read {r['read']}" + ("" if r["requested"] == r["read"] else "  <- miss"))
        print(f"read the requested digit in {correct} of {len(results)} ({accuracy:.3f})")


if __name__ == "__main__":
    main()
