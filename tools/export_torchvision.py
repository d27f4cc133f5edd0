#!/usr/bin/env python3
"""Write torchvision's ImageNet-pretrained ResNet-18 weights to a safetensors file that
fewshot loads unchanged (fs.nn.resnet18{}:load_state_dict(fs.io.load(path))).

For a user with PyTorch, torchvision and internet access; never run by the tests.

    python3 tools/export_torchvision.py resnet18_imagenet.safetensors [--grayscale]

--grayscale also sums conv1.weight over its 3 input channels (the same as
load_state_dict(sd, {adapt_conv1="sum"})) and drops fc.*, for fs.nn.resnet18{in_channels=1}.
Only json and struct are used to write the file (the safetensors package is not needed);
tensors are written as F32 (num_batches_tracked as I64, as torchvision stores it).
"""
import argparse
import json
import struct

import torch
import torchvision


def save_safetensors(path, tensors, metadata):
    header = {"__metadata__": metadata}
    blobs, offset = [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        if t.dtype == torch.int64:
            dtype, raw = "I64", t.numpy().astype("<i8").tobytes()
        else:
            dtype, raw = "F32", t.float().numpy().astype("<f4").tobytes()
        header[name] = {"dtype": dtype, "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    h = json.dumps(header).encode("utf-8")
    h += b" " * (-len(h) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    import os
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out")
    ap.add_argument("--grayscale", action="store_true")
    args = ap.parse_args()
    try:
        weights = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
        model = torchvision.models.resnet18(weights=weights)
    except AttributeError:  # torchvision < 0.13
        model = torchvision.models.resnet18(pretrained=True)
    sd = model.state_dict()
    meta = {"format": "pt", "source": "torchvision resnet18 IMAGENET1K_V1"}
    if args.grayscale:
        sd = {k: v for k, v in sd.items() if not k.startswith("fc.")}
        sd["conv1.weight"] = sd["conv1.weight"].sum(dim=1, keepdim=True)
        meta["adapted"] = "conv1 summed over RGB, fc removed"
    save_safetensors(args.out, sd, meta)
    print("wrote %d tensors to %s" % (len(sd), args.out))


if __name__ == "__main__":
    main()
