r"""The three built-in cells in plain numpy, forward and backward, to read and to test against.

In the spirit of Karpathy's ``min-char-rnn.py``: no autograd, every gradient written out by the
chain rule, one loop over time forward and one back. The parameters have torch's layout, so the
numbers here equal :mod:`charseq.builtins.cells` (and ``torch.nn.{RNN,LSTM,GRU}``) exactly:

- ``W_ih`` of shape ``(G*H, I)`` and ``W_hh`` of shape ``(G*H, H)``, the gates stacked by rows,
  with G = 1 (rnn), 4 (lstm: i, f, g, o) or 3 (gru: r, z, n);
- ``b_ih`` and ``b_hh`` of shape ``(G*H,)``.

Conventions:

- Inputs are **time-major**: ``x`` has shape ``(T, B, I)``, so ``x[t]`` is the batch at step t
  (``charseq`` models are batch-first; ``x.transpose(1, 0, 2)`` converts).
- ``*_forward`` returns every hidden state ``hs`` of shape ``(T, B, H)`` and a ``cache`` of what
  the backward pass needs. ``*_backward(dhs, cache)`` takes :math:`\partial L / \partial h_t`
  for every t (zeros where the loss does not look) and returns a dict of gradients:
  ``dW_ih``, ``dW_hh``, ``db_ih``, ``db_hh``, ``dx`` ``(T, B, I)`` and ``dh0`` ``(B, H)``
  (and ``dc0`` for the LSTM).
- Everything is float64: this module is for checking, not for speed.

A row vector convention throughout: a batch of inputs ``x_t (B, I)`` times ``W_ih.T`` gives the
gate pre-activations ``(B, G*H)``, i.e. :math:`W_{ih} x_t` for each row.

Training a tiny model on "hello" with these (the tutorial does it in full)::

    >>> rng = np.random.default_rng(0)
    >>> ids = np.array([0, 1, 2, 2])                     # "hell" -> targets "ello"
    >>> x = one_hot(ids, 4)[:, None, :]                  # (T, B=1, V)
    >>> params = init_params(rng, 4, 8, "rnn")
    >>> hs, cache = rnn_forward(x, np.zeros((1, 8)), params)
    >>> hs.shape
    (4, 1, 8)
"""

from __future__ import annotations

from typing import Any

import numpy as np

Params = dict[str, np.ndarray]
"""``{"W_ih": (G*H, I), "W_hh": (G*H, H), "b_ih": (G*H,), "b_hh": (G*H,)}``."""

GATES = {"rnn": 1, "lstm": 4, "gru": 3}
"""Number of gates G stacked in each cell's weights."""


def init_params(rng: np.random.Generator, input_size: int, hidden_size: int, kind: str) -> Params:
    """Parameters drawn from U(-1/sqrt(H), 1/sqrt(H)), like torch (not the same numbers)."""
    G, H, bound = GATES[kind], hidden_size, 1.0 / np.sqrt(hidden_size)
    shapes = {"W_ih": (G * H, input_size), "W_hh": (G * H, H), "b_ih": (G * H,), "b_hh": (G * H,)}
    return {name: rng.uniform(-bound, bound, shape) for name, shape in shapes.items()}


def sigmoid(a: np.ndarray) -> np.ndarray:
    r""":math:`\sigma(a) = 1 / (1 + e^{-a})`; its derivative is :math:`\sigma (1 - \sigma)`."""
    return 1.0 / (1.0 + np.exp(-a))


def _zero_grads(params: Params) -> dict[str, np.ndarray]:
    return {"d" + name: np.zeros_like(value) for name, value in params.items()}


def _accumulate(grads: dict, da_x: np.ndarray, da_h: np.ndarray, x_t: np.ndarray, h_prev) -> None:
    """Add one step's weight and bias gradients.

    ``da_x`` and ``da_h`` (B, G*H) are the gradients of the pre-activations that came from
    ``x_t W_ih.T + b_ih`` and ``h_prev W_hh.T + b_hh`` (equal except in the GRU's n gate).
    """
    grads["dW_ih"] += da_x.T @ x_t  # (G*H, B) @ (B, I)
    grads["dW_hh"] += da_h.T @ h_prev  # (G*H, B) @ (B, H)
    grads["db_ih"] += da_x.sum(axis=0)
    grads["db_hh"] += da_h.sum(axis=0)


# -- rnn (tanh) ------------------------------------------------------------------------------------


def rnn_forward(x: np.ndarray, h0: np.ndarray, params: Params) -> tuple[np.ndarray, Any]:
    r"""Elman RNN over a sequence.

    .. math::

        h_t = \tanh(W_{ih} x_t + b_{ih} + W_{hh} h_{t-1} + b_{hh})

    Args:
        x: inputs ``(T, B, I)``; h0: the initial state ``(B, H)``; params: see :data:`Params`.

    Returns:
        ``hs (T, B, H)`` and the cache for :func:`rnn_backward`.
    """
    p = params
    hs = np.zeros((x.shape[0], *h0.shape))
    h = h0
    for t in range(x.shape[0]):
        h = np.tanh(x[t] @ p["W_ih"].T + p["b_ih"] + h @ p["W_hh"].T + p["b_hh"])
        hs[t] = h
    return hs, (x, h0, hs, params)


def rnn_backward(dhs: np.ndarray, cache: Any) -> dict[str, np.ndarray]:
    r"""Backpropagation through time for :func:`rnn_forward`.

    With :math:`a_t` the pre-activation, :math:`\partial h_t / \partial a_t = 1 - h_t^2`; the
    gradient reaching :math:`h_t` is the loss's own ``dhs[t]`` plus what flows back from
    :math:`h_{t+1}` through :math:`W_{hh}`.
    """
    x, h0, hs, p = cache
    grads = _zero_grads(p)
    dx = np.zeros_like(x)
    dh_next = np.zeros_like(h0)  # dL/dh_t arriving from step t + 1
    for t in reversed(range(x.shape[0])):
        h_prev = hs[t - 1] if t > 0 else h0
        dh = dhs[t] + dh_next
        da = dh * (1.0 - hs[t] ** 2)  # through tanh: (B, H)
        _accumulate(grads, da, da, x[t], h_prev)
        dx[t] = da @ p["W_ih"]  # (B, H) @ (H, I)
        dh_next = da @ p["W_hh"]  # (B, H) @ (H, H)
    return {**grads, "dx": dx, "dh0": dh_next}


# -- lstm ------------------------------------------------------------------------------------------


def lstm_forward(
    x: np.ndarray, h0: np.ndarray, c0: np.ndarray, params: Params
) -> tuple[np.ndarray, np.ndarray, Any]:
    r"""LSTM over a sequence, gates in torch's order i, f, g, o.

    .. math::

        \begin{array}{ll}
        (a_i | a_f | a_g | a_o) = W_{ih} x_t + b_{ih} + W_{hh} h_{t-1} + b_{hh} \\
        i = \sigma(a_i), \; f = \sigma(a_f), \; g = \tanh(a_g), \; o = \sigma(a_o) \\
        c_t = f \odot c_{t-1} + i \odot g \\
        h_t = o \odot \tanh(c_t)
        \end{array}

    Returns:
        ``hs (T, B, H)``, ``cs (T, B, H)`` (every cell state) and the cache for
        :func:`lstm_backward`.
    """
    p, T, H = params, x.shape[0], h0.shape[1]
    hs, cs = np.zeros((T, *h0.shape)), np.zeros((T, *c0.shape))
    gates = np.zeros((T, h0.shape[0], 4 * H))  # the activated i | f | g | o, per step
    h, c = h0, c0
    for t in range(T):
        a = x[t] @ p["W_ih"].T + p["b_ih"] + h @ p["W_hh"].T + p["b_hh"]  # (B, 4H)
        a_i, a_f, a_g, a_o = np.split(a, 4, axis=1)  # 4 x (B, H)
        i, f, g, o = sigmoid(a_i), sigmoid(a_f), np.tanh(a_g), sigmoid(a_o)
        c = f * c + i * g
        h = o * np.tanh(c)
        hs[t], cs[t], gates[t] = h, c, np.concatenate([i, f, g, o], axis=1)
    return hs, cs, (x, h0, c0, hs, cs, gates, params)


def lstm_backward(
    dhs: np.ndarray, cache: Any, dc_last: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    r"""Backpropagation through time for :func:`lstm_forward`.

    ``dc_last`` is :math:`\partial L / \partial c_T` where the loss looks at the final cell state
    (e.g. it is carried to the next batch); zero by default. At each step, from
    :math:`dh` and the :math:`dc` arriving from :math:`t + 1`:

    .. math::

        \begin{array}{ll}
        dc \mathrel{+}= dh \odot o \odot (1 - \tanh^2 c_t) \\
        do = dh \odot \tanh c_t, \; di = dc \odot g, \; dg = dc \odot i,
            \; df = dc \odot c_{t-1} \\
        da = (di \odot i(1-i) \,|\, df \odot f(1-f) \,|\, dg \odot (1-g^2) \,|\, do \odot o(1-o)) \\
        dc_{t-1} = dc \odot f
        \end{array}
    """
    x, h0, c0, hs, cs, gates, p = cache
    grads = _zero_grads(p)
    dx = np.zeros_like(x)
    dh_next = np.zeros_like(h0)
    dc_next = np.zeros_like(c0) if dc_last is None else dc_last
    for t in reversed(range(x.shape[0])):
        h_prev, c_prev = (hs[t - 1], cs[t - 1]) if t > 0 else (h0, c0)
        i, f, g, o = np.split(gates[t], 4, axis=1)
        tanh_c = np.tanh(cs[t])
        dh = dhs[t] + dh_next
        dc = dc_next + dh * o * (1.0 - tanh_c**2)  # c_t reaches the loss directly and via h_t
        da = np.concatenate(
            [
                dc * g * i * (1.0 - i),  # input gate
                dc * c_prev * f * (1.0 - f),  # forget gate
                dc * i * (1.0 - g**2),  # candidate
                dh * tanh_c * o * (1.0 - o),  # output gate
            ],
            axis=1,
        )  # (B, 4H)
        _accumulate(grads, da, da, x[t], h_prev)
        dx[t] = da @ p["W_ih"]
        dh_next = da @ p["W_hh"]
        dc_next = dc * f
    return {**grads, "dx": dx, "dh0": dh_next, "dc0": dc_next}


# -- gru -------------------------------------------------------------------------------------------


def gru_forward(x: np.ndarray, h0: np.ndarray, params: Params) -> tuple[np.ndarray, Any]:
    r"""GRU over a sequence, gates in torch's order r, z, n (r applied after :math:`W_{hn} h`).

    .. math::

        \begin{array}{ll}
        (u_r | u_z | u_n) = W_{ih} x_t + b_{ih} \\
        (v_r | v_z | v_n) = W_{hh} h_{t-1} + b_{hh} \\
        r = \sigma(u_r + v_r), \; z = \sigma(u_z + v_z), \; n = \tanh(u_n + r \odot v_n) \\
        h_t = (1 - z) \odot n + z \odot h_{t-1}
        \end{array}

    Returns:
        ``hs (T, B, H)`` and the cache for :func:`gru_backward`.
    """
    p, T = params, x.shape[0]
    hs = np.zeros((T, *h0.shape))
    saved = []  # per step: r, z, n and v_n (what the backward pass needs)
    h = h0
    for t in range(T):
        u_r, u_z, u_n = np.split(x[t] @ p["W_ih"].T + p["b_ih"], 3, axis=1)  # 3 x (B, H)
        v_r, v_z, v_n = np.split(h @ p["W_hh"].T + p["b_hh"], 3, axis=1)  # 3 x (B, H)
        r = sigmoid(u_r + v_r)
        z = sigmoid(u_z + v_z)
        n = np.tanh(u_n + r * v_n)
        h = (1.0 - z) * n + z * h
        hs[t] = h
        saved.append((r, z, n, v_n))
    return hs, (x, h0, hs, saved, params)


def gru_backward(dhs: np.ndarray, cache: Any) -> dict[str, np.ndarray]:
    r"""Backpropagation through time for :func:`gru_forward`.

    .. math::

        \begin{array}{ll}
        dn = dh \odot (1 - z), \; dz = dh \odot (h_{t-1} - n) \\
        da_n = dn \odot (1 - n^2), \; dr = da_n \odot v_n \\
        du = (dr \odot r(1-r) \,|\, dz \odot z(1-z) \,|\, da_n), \quad
        dv = (du_r \,|\, du_z \,|\, da_n \odot r) \\
        dh_{t-1} = dh \odot z + dv \, W_{hh}
        \end{array}

    The only difference from the other cells: the n gate's input and hidden pre-activations
    get different gradients (``du`` and ``dv``), because r multiplies only the hidden one.
    """
    x, h0, hs, saved, p = cache
    grads = _zero_grads(p)
    dx = np.zeros_like(x)
    dh_next = np.zeros_like(h0)
    for t in reversed(range(x.shape[0])):
        h_prev = hs[t - 1] if t > 0 else h0
        r, z, n, v_n = saved[t]
        dh = dhs[t] + dh_next
        da_n = dh * (1.0 - z) * (1.0 - n**2)  # through h = (1 - z) n + ..., then tanh
        da_r = da_n * v_n * r * (1.0 - r)  # through r * v_n, then sigmoid
        da_z = dh * (h_prev - n) * z * (1.0 - z)  # through z (h_prev - n), then sigmoid
        du = np.concatenate([da_r, da_z, da_n], axis=1)  # (B, 3H)
        dv = np.concatenate([da_r, da_z, da_n * r], axis=1)  # (B, 3H)
        _accumulate(grads, du, dv, x[t], h_prev)
        dx[t] = du @ p["W_ih"]
        dh_next = dh * z + dv @ p["W_hh"]
    return {**grads, "dx": dx, "dh0": dh_next}


# -- the output layer: one-hot inputs, softmax, cross-entropy -------------------------------------


def one_hot(ids: np.ndarray, vocab_size: int) -> np.ndarray:
    """Ids of any shape ``S`` to float64 one-hot vectors of shape ``(*S, vocab_size)``."""
    return np.eye(vocab_size)[np.asarray(ids)]


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    r""":math:`p_k = e^{y_k} / \sum_j e^{y_j}`, computed after subtracting the max (no overflow)."""
    e = np.exp(logits - logits.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def cross_entropy(logits: np.ndarray, targets: np.ndarray) -> tuple[float, np.ndarray]:
    r"""Mean negative log-likelihood of ``targets`` and its gradient with respect to ``logits``.

    Args:
        logits: unnormalised scores ``(..., V)``.
        targets: the correct ids, of the leading shape ``(...)``.

    Returns:
        ``(loss, dlogits)``: :math:`L = -\frac{1}{N} \sum_n \log p_{n, y_n}` over the N positions,
        as ``torch.nn.functional.cross_entropy`` (mean reduction); and
        :math:`\partial L / \partial \mathrm{logits} = (p - \mathrm{onehot}(y)) / N`.
    """
    p = softmax(logits)
    flat_p = p.reshape(-1, p.shape[-1])  # (N, V)
    flat_y = np.asarray(targets).reshape(-1)  # (N,)
    N = flat_y.shape[0]
    loss = -np.log(flat_p[np.arange(N), flat_y]).mean()
    dlogits = (p - one_hot(targets, p.shape[-1])) / N
    return float(loss), dlogits
