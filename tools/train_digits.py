#!/usr/bin/env python3
"""Trains the digits example: a class-conditional DiT, its VAE and a digit classifier, on CPU in minutes.

Data: scikit-learn's bundled 8x8 handwritten digits (sklearn.datasets.load_digits, 1797 images, the
UCI optical digits test set shipped inside the scikit-learn package), white digits on black as in the
data set, upscaled to 32x32 (bilinear), RGB with three equal channels, in [-1, 1]. Ten classes:
class c is digit c. A seeded, stratified 80/20 split: the models train on 1437 images, 360 are held
out to measure them.

Models (architectures DiTKit converts; see examples/digits/README.md for the figures):
  - VAE: diffusers AutoencoderKL, 4 levels of 32 channels, 1 ResNet per level, 4 latent channels:
    32x32 images <-> 4x4x4 latents. Trained with a reconstruction loss (summed squared error) plus a
    small KL term, as LDM's autoencoders are (without their perceptual and GAN terms). Afterwards the
    latent space is rescaled exactly (folded into quant_conv and post_quant_conv) so that latents times
    the standard scaling factor 0.18215 have unit variance, the convention DiT's training assumes.
  - DiT: tools/dit_reference.py (the official facebookresearch/DiT models.py semantics), input 4,
    patch 1 (16 tokens), hidden 64, depth 4, 1 head of 64, MLP ratio 4, 10 classes, learn_sigma, with
    the official initialize_weights and label dropout 0.1 (the null class 10 for guidance). Trained as
    train.py trains: latents = vae.encode(x).latent_dist.sample() * 0.18215, t uniform in [0, 1000),
    loss = create_diffusion("").training_losses (MSE on epsilon + the VLB term for the learned
    variance; tools/diffusion_reference.py), AdamW with weight decay 0, an EMA of the weights.
    Deviations, all for a small model trained for minutes: 3000 steps of batch 128, learning rate 3e-3
    (official 1e-4) with a cosine decay, EMA decay 0.999 (official 0.9999), no horizontal flips (a
    mirrored digit is another glyph).
  - Classifier: a scikit-learn MLP (64 inputs, 64 ReLU units, 10 outputs) on images brought back to
    8x8 the way tools/classify_digits.py reads DiTKit's PNGs (32x32 8-bit -> 4x4 block means -> 0..16).

Outputs (in --out, default examples/digits/), as the training code saves them:
  dit-digits.pt        torch.save(ema.state_dict()): official DiT names, like the released DiT files
  vae/                 AutoencoderKL.save_pretrained: config.json + diffusion_pytorch_model.safetensors
  classifier.json      the classifier's weights, for tools/classify_digits.py (numpy only)
  dit-digits-reference.h5  PyTorch activations of the DiT at every layer (tools/dump_reference.py layout),
                       for `ditkit verify --reference`

Run with torch, timm, diffusers, h5py and scikit-learn installed (not needed by DiTKit or its tests):
    python tools/train_digits.py [--out examples/digits] [--seed 0] [--threads 1]
About 9 CPU-minutes (3.3 for the VAE, 4.7 for the DiT). One thread by default: on a shared machine,
two OpenMP threads that wait for each other are slower than one. Everything is seeded; with the same
package versions and thread count, reruns give the same weights, bit for bit.
"""
import argparse
import copy
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dit_reference import DiT  # noqa: E402
from diffusion_reference import Diffusion  # noqa: E402

SCALING = 0.18215
IMAGE = 32
CLASSES = 10


# ---------------------------------------------------------------------------------------------------
# Data


def load_data(seed):
    """(train images, train labels, test images, test labels): images float32 [N, 3, 32, 32] in [-1, 1]."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    small = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    big = F.interpolate(small, size=(IMAGE, IMAGE), mode="bilinear", align_corners=False).clamp(0, 1)
    images = (big * 2 - 1).repeat(1, 3, 1, 1)
    labels = torch.tensor(d.target, dtype=torch.long)
    idx = np.arange(len(labels))
    tr, te = train_test_split(idx, test_size=0.2, random_state=seed, stratify=d.target)
    return images[tr], labels[tr], images[te], labels[te]


def to_uint8(images):
    """save_image's mapping of [-1, 1] images to 8 bits, [N, H, W, C] (what DiTKit's PNGs hold)."""
    return images.clamp(-1, 1).add(1).div(2).mul(255).add(0.5).clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)


def features(pixels):
    """8-bit [N, 32, 32, C] -> [N, 64] on the data set's 0..16 scale: 4x4 block means of the first channel.

    tools/classify_digits.py computes exactly this from PNG files."""
    x = pixels[..., 0].numpy().astype(np.float64)
    n = x.shape[0]
    x = x.reshape(n, 8, IMAGE // 8, 8, IMAGE // 8).mean(axis=(2, 4))
    return (x * (16.0 / 255.0)).reshape(n, 64)


# ---------------------------------------------------------------------------------------------------
# Classifier


def train_classifier(xtr, ytr, xte, yte, seed):
    from sklearn.neural_network import MLPClassifier

    clf = MLPClassifier(hidden_layer_sizes=(64,), activation="relu", alpha=1e-3, max_iter=600, random_state=seed)
    clf.fit(features(to_uint8(xtr)), ytr.numpy())
    acc = clf.score(features(to_uint8(xte)), yte.numpy())
    return clf, acc


def classifier_json(clf):
    layers = [{"weight": np.round(w, 7).tolist(), "bias": np.round(b, 7).tolist()} for w, b in zip(clf.coefs_, clf.intercepts_)]
    return {
        "about": "Digit classifier for DiTKit's digits example (tools/train_digits.py; applied by tools/classify_digits.py)",
        "input": "8x8 image, 0..16 (4x4 block means of a 32x32 8-bit image's first channel, times 16/255), row-major",
        "activation": "relu",
        "layers": layers,
    }


def classify(clf, images):
    return clf.predict(features(to_uint8(images)))


# ---------------------------------------------------------------------------------------------------
# VAE


def make_vae():
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(32, 32, 32, 32), layers_per_block=1, norm_num_groups=32,
        sample_size=IMAGE, scaling_factor=SCALING)


def train_vae(xtr, args):
    torch.manual_seed(args.seed)
    vae = make_vae()
    opt = torch.optim.AdamW(vae.parameters(), lr=args.vae_lr, weight_decay=0)
    g = torch.Generator().manual_seed(args.seed + 1)
    n, steps = len(xtr), 0
    total = args.vae_epochs * math.ceil(n / args.vae_batch)
    vae.train()
    for epoch in range(args.vae_epochs):
        perm = torch.randperm(n, generator=g)
        sums = [0.0, 0.0]
        for i in range(0, n, args.vae_batch):
            x = xtr[perm[i:i + args.vae_batch]]
            for group in opt.param_groups:
                group["lr"] = args.vae_lr * 0.5 * (1 + math.cos(math.pi * steps / total))
            post = vae.encode(x).latent_dist
            z = post.mean + post.std * torch.randn(post.mean.shape, generator=g)
            rec = vae.decode(z).sample
            rec_loss = ((rec - x) ** 2).sum(dim=(1, 2, 3)).mean()
            kl = post.kl().mean()
            loss = rec_loss + args.kl_weight * kl
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            steps += 1
            sums[0] += rec_loss.item() * len(x)
            sums[1] += kl.item() * len(x)
        print(f"  vae epoch {epoch + 1}/{args.vae_epochs}: squared error/image {sums[0] / n:.2f}, KL/image {sums[1] / n:.1f}", flush=True)
    return vae.eval()


@torch.no_grad()
def rescale_latents(vae, xtr):
    """Scales the latent space by k so that posterior means times 0.18215 have unit variance.

    Exact reparametrisation: quant_conv's mean rows and bias are multiplied by k and its log-variance
    bias grows by 2 ln k (std times k); post_quant_conv's weight is divided by k, so
    decode(k z) equals the old decode(z)."""
    mean = vae.encode(xtr).latent_dist.mean
    k = 1.0 / (SCALING * mean.std().item())
    c = vae.config.latent_channels
    q, pq = vae.quant_conv, vae.post_quant_conv
    q.weight[:c] *= k
    q.bias[:c] *= k
    q.bias[c:] += 2 * math.log(k)
    pq.weight /= k
    return k


@torch.no_grad()
def vae_quality(vae, x, clf, y):
    rec = vae.decode(vae.encode(x).latent_dist.mean).sample.clamp(-1, 1)
    mse = ((rec - x) ** 2).mean(dim=(1, 2, 3))
    psnr = (10 * torch.log10(4.0 / mse)).mean().item()   # peak-to-peak 2 in [-1, 1]
    acc = float((classify(clf, rec) == y.numpy()).mean())
    return psnr, acc


# ---------------------------------------------------------------------------------------------------
# DiT


def initialize_weights(model):
    """The official DiT.initialize_weights (models.py)."""
    def basic(m):
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.constant_(m.bias, 0)
    model.apply(basic)
    w = model.x_embedder.proj.weight.data
    nn.init.xavier_uniform_(w.view([w.shape[0], -1]))
    nn.init.constant_(model.x_embedder.proj.bias, 0)
    nn.init.normal_(model.y_embedder.embedding_table.weight, std=0.02)
    nn.init.normal_(model.t_embedder.mlp[0].weight, std=0.02)
    nn.init.normal_(model.t_embedder.mlp[2].weight, std=0.02)
    for block in model.blocks:
        nn.init.constant_(block.adaLN_modulation[-1].weight, 0)
        nn.init.constant_(block.adaLN_modulation[-1].bias, 0)
    nn.init.constant_(model.final_layer.adaLN_modulation[-1].weight, 0)
    nn.init.constant_(model.final_layer.adaLN_modulation[-1].bias, 0)
    nn.init.constant_(model.final_layer.linear.weight, 0)
    nn.init.constant_(model.final_layer.linear.bias, 0)


def make_dit(args):
    return DiT(input_size=IMAGE // 8, patch_size=1, in_channels=4, hidden_size=args.hidden, depth=args.depth,
               num_heads=args.hidden // 64, mlp_ratio=4.0, class_dropout_prob=0.1, num_classes=CLASSES, learn_sigma=True)


@torch.no_grad()
def update_ema(ema, model, decay):
    """train.py's update_ema: every parameter, in place."""
    ema_params = dict(ema.named_parameters())
    for name, p in model.named_parameters():
        ema_params[name].mul_(decay).add_(p.data, alpha=1 - decay)


def train_dit(vae, xtr, ytr, args):
    with torch.no_grad():
        post = vae.encode(xtr).latent_dist
        means, stds = post.mean, post.std
    torch.manual_seed(args.seed + 2)
    model = make_dit(args)
    initialize_weights(model)
    ema = copy.deepcopy(model)
    for p in ema.parameters():
        p.requires_grad_(False)
    diffusion = Diffusion("1000")
    opt = torch.optim.AdamW(model.parameters(), lr=args.dit_lr, weight_decay=0)
    g = torch.Generator().manual_seed(args.seed + 3)
    n = len(ytr)
    model.train()
    running = [0.0, 0.0, 0]
    for step in range(args.dit_steps):
        for group in opt.param_groups:
            group["lr"] = args.dit_lr * 0.5 * (1 + math.cos(math.pi * step / args.dit_steps))
        idx = torch.randint(0, n, (args.dit_batch,), generator=g)
        # vae.encode(x).latent_dist.sample().mul_(0.18215), from the precomputed posteriors.
        x = (means[idx] + stds[idx] * torch.randn(means[idx].shape, generator=g)) * SCALING
        y = ytr[idx]
        # LabelEmbedder.token_drop: labels become the null class with probability 0.1.
        y = torch.where(torch.rand(y.shape, generator=g) < 0.1, torch.full_like(y, CLASSES), y)
        t = torch.randint(0, 1000, (args.dit_batch,), generator=g)
        noise = torch.randn(x.shape, generator=g)
        loss, mse, vb = diffusion.training_losses(lambda xt, tt: model(xt, tt, y), x, t, noise)
        loss = loss.mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        update_ema(ema, model, args.ema_decay)
        running[0] += mse.mean().item()
        running[1] += vb.mean().item()
        running[2] += 1
        if (step + 1) % 1000 == 0:
            print(f"  dit step {step + 1}/{args.dit_steps}: mse {running[0] / running[2]:.4f}, vb {running[1] / running[2]:.4f}", flush=True)
            running = [0.0, 0.0, 0]
    return ema.eval()


@torch.no_grad()
def sample_accuracy(dit, vae, clf, per_class, spec, cfg, seed):
    """Samples per_class images of every digit (DiT sample.py: guided batch, decode(z / 0.18215))."""
    diffusion = Diffusion(spec)
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(CLASSES).repeat(per_class)
    noise = torch.randn(len(labels), 4, IMAGE // 8, IMAGE // 8, generator=g)
    z = torch.cat([noise, noise], 0)
    y = torch.cat([labels, torch.full_like(labels, CLASSES)], 0)
    if spec.startswith("ddim"):
        latents = diffusion.sample(lambda x, t: dit.forward_with_cfg(x, t, y, cfg), z, ddim=True)
    else:
        latents = diffusion.sample(lambda x, t: dit.forward_with_cfg(x, t, y, cfg), z, ddim=False, generator=g)
    images = vae.decode(latents[: len(labels)] / SCALING).sample
    return float((classify(clf, images) == labels.numpy()).mean())


@torch.no_grad()
def write_reference(dit, vae, images, path, seed):
    """PyTorch activations for `ditkit verify --reference`: four held-out digits' latents noised to
    t = 999, 666, 333, 0, classes 3, 5, 8 and the null class."""
    from dump_reference import dump_dit

    g = torch.Generator().manual_seed(seed + 5)
    x0 = vae.encode(images[:4]).latent_dist.mean * SCALING
    t = torch.tensor([999, 666, 333, 0])
    x = Diffusion("1000").q_sample(x0, t, torch.randn(x0.shape, generator=g))
    y = torch.tensor([3, 5, 8, CLASSES])
    dump_dit(dit, x, t.float(), y, path, model_name="DiT-custom")


# ---------------------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples", "digits"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--vae-epochs", type=int, default=10)
    ap.add_argument("--vae-batch", type=int, default=32)
    ap.add_argument("--vae-lr", type=float, default=2e-3)
    ap.add_argument("--kl-weight", type=float, default=1e-3)
    ap.add_argument("--hidden", type=int, default=64, help="a multiple of 64 (one head per 64)")
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--dit-steps", type=int, default=3000)
    ap.add_argument("--dit-batch", type=int, default=128)
    ap.add_argument("--dit-lr", type=float, default=3e-3)
    ap.add_argument("--ema-decay", type=float, default=0.999)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)
    started = time.time()

    xtr, ytr, xte, yte = load_data(args.seed)
    clf, acc = train_classifier(xtr, ytr, xte, yte, args.seed)
    print(f"classifier: held-out accuracy {acc:.3f} ({len(yte)} images)", flush=True)

    t0, c0 = time.time(), time.process_time()
    vae = train_vae(xtr, args)
    k = rescale_latents(vae, xtr)
    psnr, rec_acc = vae_quality(vae, xte, clf, yte)
    print(f"vae: {time.time() - t0:.0f} s ({time.process_time() - c0:.0f} s CPU); latent scale {k:.4f}; held-out reconstruction PSNR {psnr:.1f} dB, "
          f"classifier reads {rec_acc:.3f} of reconstructions", flush=True)

    t0, c0 = time.time(), time.process_time()
    dit = train_dit(vae, xtr, ytr, args)
    print(f"dit: {time.time() - t0:.0f} s ({time.process_time() - c0:.0f} s CPU)", flush=True)
    for spec in ["ddim25", "250"]:
        a = sample_accuracy(dit, vae, clf, per_class=20, spec=spec, cfg=4.0, seed=args.seed + 4)
        print(f"samples ({spec}, cfg 4, 20 per digit): classifier reads the requested digit in {a:.3f}", flush=True)

    write_reference(dit, vae, xte, os.path.join(args.out, "dit-digits-reference.h5"), args.seed)
    torch.save(dit.state_dict(), os.path.join(args.out, "dit-digits.pt"))
    vae.save_pretrained(os.path.join(args.out, "vae"))
    with open(os.path.join(args.out, "classifier.json"), "w") as f:
        json.dump(classifier_json(clf), f, separators=(",", ":"))
        f.write("\n")
    params = sum(p.numel() for p in dit.parameters()), sum(p.numel() for p in vae.parameters())
    print(f"wrote {args.out}: DiT {params[0]:,} parameters, VAE {params[1]:,}; total {time.time() - started:.0f} s "
          f"({time.process_time():.0f} s CPU)")


if __name__ == "__main__":
    main()
