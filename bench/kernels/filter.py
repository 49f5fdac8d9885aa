"""The exponential filter that turns a momentum state into a filtered input, and its carry-in.

For a momentum state v_t = mu v_{t-1} + s (W x_t + b) with v_{-1} = 0, linearity gives
v_t = W x~_t + b c_t with x~_t = mu x~_{t-1} + s x_t and c_t the same filter applied to a constant 1.
So any cell whose momentum depends on x only is an ordinary cell over [x~_t, c_t].
"""
from __future__ import annotations

import torch
from torch import Tensor


def exp_filter(x: Tensor, mu: float | Tensor, s: float | Tensor = 1.0, chunk: int = 256) -> Tensor:
    """y_t = mu y_{t-1} + s x_t along dim 1 of a (B, T, C) tensor, with y_{-1} = 0.

    Computed in chunks of ``chunk`` steps, each as one matmul with a lower-triangular Toeplitz
    matrix of powers of mu, so the cost is O(T * chunk) and autograd sees T / chunk nodes.
    """
    B, T, C = x.shape
    n = min(T, chunk)
    mu_t = torch.as_tensor(mu, dtype=x.dtype, device=x.device)
    t = torch.arange(n, device=x.device)
    lag = (t[:, None] - t[None, :]).to(x.dtype)
    # 0 ** 0 = 1 in torch, so mu = 0 gives the identity, as it should.
    toeplitz = torch.where(lag >= 0, mu_t ** lag.clamp(min=0), torch.zeros((), dtype=x.dtype,
                                                                          device=x.device))
    decay = mu_t ** torch.arange(1, n + 1, device=x.device, dtype=x.dtype)   # mu^(j+1)
    out, carry = [], None
    for xc in x.split(n, dim=1):
        c = xc.shape[1]
        yc = torch.matmul(toeplitz[:c, :c], xc)
        if carry is not None:
            yc = yc + decay[:c, None] * carry[:, None, :]
        out.append(yc)
        carry = yc[:, -1]
    return s * torch.cat(out, dim=1) if len(out) > 1 else s * out[0]


def decayed(x0: Tensor, rate: float, T: int) -> Tensor:
    """rate^(t+1) x0 for t < T, shape (B, T, C): what a carried-in filter state adds at step t."""
    powers = rate ** torch.arange(1, T + 1, device=x0.device, dtype=x0.dtype)
    return powers[:, None] * x0[:, None, :]


def channel_filter(x: Tensor, log_mu: Tensor, s: Tensor | float = 1.0, chunk: int = 64) -> Tensor:
    """y_t = mu_c y_{t-1} + s_c x_t along dim 1 of a (B, T, C) tensor, per channel c, y_{-1} = 0.

    ``log_mu`` (C,) is log mu (finite: mu in (0, 1)), so powers are exp(k log mu) and gradients
    reach mu. Chunks of ``chunk`` steps, each one batched matmul with per-channel Toeplitz
    matrices, as ``exp_filter`` does for one scalar mu (whose Toeplitz matrix is mu ** lag, (T, T)).
    """
    B, T, C = x.shape
    n = min(T, chunk)
    t = torch.arange(n, device=x.device, dtype=x.dtype)
    lag = t[:, None] - t[None, :]
    powers = torch.exp(lag.clamp(min=0)[..., None] * log_mu)                    # (n, n, C)
    toeplitz = torch.where((lag >= 0)[..., None], powers, torch.zeros((), dtype=x.dtype,
                                                                      device=x.device))
    decay = torch.exp((t + 1)[:, None] * log_mu)                                # mu^(j+1), (n, C)
    out, carry = [], None
    for xc in x.split(n, dim=1):
        c = xc.shape[1]
        yc = torch.einsum("tkc,bkc->btc", toeplitz[:c, :c], xc)
        if carry is not None:
            yc = yc + decay[:c] * carry[:, None, :]
        out.append(yc)
        carry = yc[:, -1]
    return s * torch.cat(out, dim=1)
