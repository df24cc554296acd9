"""Fast (crop at reduced DCT scale) vs full (PIL) decode path of awsio.decode.RandomResizedCrop(224)
on the image benchmark's JPEGs (400x350, quality 90): ms per image of each, in the same run and
interleaved, their ratio, and the PSNR of the fast path's output against the full path's. Also the
shared ImageTransform("imagenet") the other loaders run, for scale. Not a test; a short measure.

    python -m awsio.bench.crop_decode [--images 50] [--rounds 4]
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--images", type=int, default=50)
    p.add_argument("--rounds", type=int, default=4)
    args = p.parse_args()
    from awsio.bench.data import jpegs
    from awsio.bench.peers.common import MEAN, STD, ImageTransform
    from awsio.decode import RandomResizedCrop, crop

    print("native JPEG decoder:", crop.native_jpeg() is not None)
    photos = list(jpegs(args.images, 400, 350))
    print(f"{len(photos)} JPEGs, mean {np.mean([len(d) for d in photos]) / 1024:.1f} KiB")
    times: dict[str, float] = {"fast": 0.0, "full": 0.0, "peers' ImageTransform": 0.0}
    psnr = []
    peer = ImageTransform(224, "imagenet")
    peer(photos[0])
    for r in range(args.rounds):
        fast = RandomResizedCrop(224, mean=MEAN, std=STD, seed=r)
        full = RandomResizedCrop(224, mean=MEAN, std=STD, seed=r, fast_decode=False)
        for data in photos:
            t0 = time.perf_counter()
            a = fast(data)
            t1 = time.perf_counter()
            b = full(data)
            t2 = time.perf_counter()
            peer(data)
            t3 = time.perf_counter()
            times["fast"] += t1 - t0
            times["full"] += t2 - t1
            times["peers' ImageTransform"] += t3 - t2
            # PSNR on the [0, 1] scale: undo the normalisation's 1/std
            mse = float((((a - b) * torch_std(STD)) ** 2).mean())
            psnr.append(math.inf if mse == 0 else 10 * math.log10(1 / mse))
    n = len(psnr)
    for name, t in times.items():
        print(f"{name:24s} {1000 * t / n:6.3f} ms/image")
    peers = times["peers' ImageTransform"]
    print(f"full / fast {times['full'] / times['fast']:.2f}x; ImageTransform / fast {peers / times['fast']:.2f}x")
    ps = np.array(psnr)
    print(f"PSNR fast vs full over {n} outputs: min {ps.min():.2f} dB, median {np.median(ps):.2f} dB")


def torch_std(std: tuple[float, ...]):
    import torch

    return torch.tensor(std, dtype=torch.float32)[:, None, None]


if __name__ == "__main__":
    main()
