"""A reference of the official DiT sampling loop (facebookresearch/DiT diffusion/), for fixtures.

Written to the same semantics as gaussian_diffusion.py / respace.py: linear betas in float64,
space_timesteps respacing (Python round, half to even), coefficients extracted in float64 and
applied in float32, LEARNED_RANGE variance, clip_denoised=False, DDPM p_sample and DDIM with eta 0.
"""
import numpy as np
import torch


def space_timesteps(num_timesteps, spec):
    if spec.startswith("ddim"):
        desired = int(spec[4:])
        for i in range(1, num_timesteps):
            if len(range(0, num_timesteps, i)) == desired:
                return set(range(0, num_timesteps, i))
        raise ValueError(spec)
    counts = [int(x) for x in spec.split(",")]
    size_per, extra = num_timesteps // len(counts), num_timesteps % len(counts)
    start, steps = 0, []
    for i, count in enumerate(counts):
        size = size_per + (1 if i < extra else 0)
        stride = 1 if count <= 1 else (size - 1) / (count - 1)
        cur = 0.0
        for _ in range(count):
            steps.append(start + round(cur))
            cur += stride
        start += size
    return set(steps)


class Diffusion:
    def __init__(self, spec, T=1000):
        scale = 1000 / T
        base = np.linspace(scale * 0.0001, scale * 0.02, T, dtype=np.float64)
        base_ac = np.cumprod(1.0 - base)
        keep = space_timesteps(T, spec)
        last, betas, self.timestep_map = 1.0, [], []
        for i, a in enumerate(base_ac):
            if i in keep:
                betas.append(1 - a / last)
                last = a
                self.timestep_map.append(i)
        b = np.array(betas, dtype=np.float64)
        self.n = len(b)
        ac = np.cumprod(1.0 - b)
        acp = np.append(1.0, ac[:-1])
        self.ac, self.acp = ac, acp
        self.sr = np.sqrt(1.0 / ac)
        self.srm1 = np.sqrt(1.0 / ac - 1)
        pv = b * (1.0 - acp) / (1.0 - ac)
        self.plv = np.log(np.append(pv[1], pv[1:]))
        self.c1 = b * np.sqrt(acp) / (1.0 - ac)
        self.c2 = (1.0 - acp) * np.sqrt(1.0 - b) / (1.0 - ac)
        self.logb = np.log(b)

    @staticmethod
    def _f(arr, i):
        return torch.tensor(arr[i]).float()

    def sample(self, model_fn, noise, ddim, generator=None):
        """model_fn(x, t_original_long) -> output [N, 2C, H, W]."""
        x = noise
        c = x.shape[1]
        for i in reversed(range(self.n)):
            t = torch.full((x.shape[0],), self.timestep_map[i], dtype=torch.long)
            out = model_fn(x, t)
            eps, v = out[:, :c], out[:, c:]
            x0 = self._f(self.sr, i) * x - self._f(self.srm1, i) * eps
            if ddim:
                e2 = (self._f(self.sr, i) * x - x0) / self._f(self.srm1, i)
                abp = self._f(self.acp, i)
                x = x0 * torch.sqrt(abp) + torch.sqrt(1 - abp - 0.0) * e2
            else:
                mean = self._f(self.c1, i) * x0 + self._f(self.c2, i) * x
                frac = (v + 1) / 2
                logvar = frac * self._f(self.logb, i) + (1 - frac) * self._f(self.plv, i)
                z = torch.randn(x.shape, generator=generator)
                x = mean + (1.0 if i != 0 else 0.0) * torch.exp(0.5 * logvar) * z
        return x
