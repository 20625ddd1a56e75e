"""The peer of `make bench`: rejax 0.1.3's PPO, and the hyperparameters both trainers use.

rejax is a bench-only dependency (`make bench` installs it); it unpacks gymnax's old 5-value
`step`, so its env is wrapped here (`FiveValueStep`), rejax itself unedited.
"""

from __future__ import annotations

import jax.numpy as jnp

# The measured setting (CartPole-v1, PPO): 4 epochs x 4 minibatches, a constant
# learning rate of 2.5e-4, 2x64 tanh actor and critic.
PEER_HP = dict(learning_rate=2.5e-4, max_grad_norm=0.5, gamma=0.99, gae_lambda=0.95,
               clip_eps=0.2, vf_coef=0.5, ent_coef=0.01)
EVAL_EPISODES = 128  # rejax's own evaluation size; distillax is evaluated on as many


class FiveValueStep:
    """gymnax >= 1.0 env seen through gymnax's old API, as rejax 0.1.3 unpacks it:
    `step -> (obs, state, reward, done, info)` with done = terminated or truncated."""

    def __init__(self, env):
        self._env = env

    def __getattr__(self, name):
        if name.startswith("__") or name == "_env":  # copy/pickle probe before __init__
            raise AttributeError(name)
        return getattr(self._env, name)

    def step(self, key, state, action, params=None):
        obs, state, reward, terminated, truncated, info = self._env.step(key, state, action,
                                                                         params)
        return obs, state, reward, jnp.logical_or(terminated, truncated), info
