#!/usr/bin/env python3
"""Writes Tests/Fixtures/sample/flowmatch.json: the sigmas and timesteps of diffusers'
FlowMatchEulerDiscreteScheduler as SD3 (static shift) and FLUX.1 (dynamic shift, mu from the
image sequence length; schnell: no shift) set them, for DiTKit's FlowMatchSchedule to match."""
import json
import os

import numpy as np
from diffusers import FlowMatchEulerDiscreteScheduler
from diffusers.pipelines.flux.pipeline_flux import calculate_shift

out = {"shifted": [], "dynamic": []}
for shift in (1.0, 3.0):
    for steps in (1, 4, 28, 50):
        s = FlowMatchEulerDiscreteScheduler(shift=shift)
        s.set_timesteps(steps)
        out["shifted"].append({"shift": shift, "steps": steps, "sigmas": s.sigmas.tolist(), "timesteps": s.timesteps.tolist()})
for seq in (256, 1024, 4096):
    for steps in (4, 28):
        mu = calculate_shift(seq, 256, 4096, 0.5, 1.15)
        s = FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15, base_image_seq_len=256, max_image_seq_len=4096)
        s.set_timesteps(sigmas=np.linspace(1.0, 1 / steps, steps), mu=mu)
        out["dynamic"].append({"sequence_length": seq, "mu": mu, "steps": steps, "sigmas": s.sigmas.tolist(), "timesteps": s.timesteps.tolist()})
s = FlowMatchEulerDiscreteScheduler(shift=1.0)   # FLUX.1-schnell's scheduler config: no dynamic shifting
s.set_timesteps(sigmas=np.linspace(1.0, 1 / 4, 4))
out["schnell"] = {"steps": 4, "sigmas": s.sigmas.tolist(), "timesteps": s.timesteps.tolist()}
path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "Fixtures", "sample", "flowmatch.json")
with open(path, "w") as f:
    json.dump(out, f, indent=1)
print("wrote", path)
