"""A reference of the official DiT diffusion (facebookresearch/DiT diffusion/), for fixtures and training.

Written to the same semantics as gaussian_diffusion.py / respace.py: linear betas in float64,
space_timesteps respacing (Python round, half to even), coefficients extracted in float64 and
applied in float32, LEARNED_RANGE variance, clip_denoised=False, DDPM p_sample and DDIM with eta 0.

Training (`Diffusion("1000").training_losses`) is create_diffusion("")'s objective: LossType.MSE with
EPSILON prediction and LEARNED_RANGE variance, i.e. loss = MSE(eps) + VB, where VB is the
variational bound term in bits (KL of the posterior, the discretized Gaussian decoder NLL at t = 0)
computed on the model output with the mean detached (frozen_out), not rescaled.
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
        self.sqrt_ac, self.sqrt_1mac = np.sqrt(ac), np.sqrt(1.0 - ac)

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

    # Training: gaussian_diffusion.training_losses for LossType.MSE, ModelMeanType.EPSILON,
    # ModelVarType.LEARNED_RANGE (DiT's create_diffusion defaults). Use with Diffusion("1000").

    @staticmethod
    def _x(arr, t, shape):
        """_extract_into_tensor: float64 table values at t, as float32, broadcast to shape."""
        res = torch.from_numpy(arr)[t].float()
        while res.dim() < len(shape):
            res = res[..., None]
        return res + torch.zeros(shape)

    def q_sample(self, x0, t, noise):
        return self._x(self.sqrt_ac, t, x0.shape) * x0 + self._x(self.sqrt_1mac, t, x0.shape) * noise

    def training_losses(self, model_fn, x0, t, noise):
        """Per-sample loss [N] (and its mse and vb terms) of model_fn(x_t, t) -> [N, 2C, H, W]."""
        x_t = self.q_sample(x0, t, noise)
        out = model_fn(x_t, t)
        c = x0.shape[1]
        eps, v = out[:, :c], out[:, c:]
        # The VB term trains the variance only: the mean prediction is detached (frozen_out).
        vb = self._vb_bits(eps.detach(), v, x0, x_t, t)
        mse = ((noise - eps) ** 2).mean(dim=list(range(1, x0.dim())))
        return mse + vb, mse, vb

    def _vb_bits(self, eps, v, x0, x_t, t):
        shape = x0.shape
        true_mean = self._x(self.c1, t, shape) * x0 + self._x(self.c2, t, shape) * x_t
        true_logvar = self._x(self.plv, t, shape)
        pred_x0 = self._x(self.sr, t, shape) * x_t - self._x(self.srm1, t, shape) * eps
        mean = self._x(self.c1, t, shape) * pred_x0 + self._x(self.c2, t, shape) * x_t
        frac = (v + 1) / 2
        logvar = frac * self._x(self.logb, t, shape) + (1 - frac) * true_logvar
        dims = list(range(1, x0.dim()))
        kl = normal_kl(true_mean, true_logvar, mean, logvar).mean(dim=dims) / np.log(2.0)
        nll = -discretized_gaussian_log_likelihood(x0, mean, 0.5 * logvar).mean(dim=dims) / np.log(2.0)
        return torch.where(t == 0, nll, kl)


def normal_kl(mean1, logvar1, mean2, logvar2):
    """KL(N(mean1, e^logvar1) || N(mean2, e^logvar2)), elementwise (diffusion_utils.normal_kl)."""
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * torch.exp(-logvar2))


def approx_standard_normal_cdf(x):
    return 0.5 * (1.0 + torch.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * torch.pow(x, 3))))


def discretized_gaussian_log_likelihood(x, means, log_scales):
    """log-likelihood of x in [-1, 1] discretized to 255 bins (diffusion_utils)."""
    centered = x - means
    inv_std = torch.exp(-log_scales)
    cdf_plus = approx_standard_normal_cdf(inv_std * (centered + 1.0 / 255.0))
    cdf_min = approx_standard_normal_cdf(inv_std * (centered - 1.0 / 255.0))
    log_cdf_plus = torch.log(cdf_plus.clamp(min=1e-12))
    log_one_minus_cdf_min = torch.log((1.0 - cdf_min).clamp(min=1e-12))
    log_delta = torch.log((cdf_plus - cdf_min).clamp(min=1e-12))
    return torch.where(x < -0.999, log_cdf_plus, torch.where(x > 0.999, log_one_minus_cdf_min, log_delta))
