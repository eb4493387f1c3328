"""torch's backends: the whole network in torch (``nn.RNN`` blocks in a
:class:`~rnn_ref.backends.torch.network.TorchNetwork`) on the CPU and on CUDA, at torch's
default precision and in strict float32 (:mod:`rnn_ref.backends.devices`)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from rnn_ref.backends import devices
from rnn_ref.backends._common import raise_if
from rnn_ref.backends.torch.convert import NAME, from_native, to_native
from rnn_ref.backends.torch.graph import (
    TORCH_DTYPES,
    build_network,
    network_params,
    quiet_onednn,
)
from rnn_ref.backends.torch.network import TorchNetwork
from rnn_ref.backends.torch.record import unsupported
from rnn_ref.config import RNNConfig
from rnn_ref.errors import UnsupportedError
from rnn_ref.inputs import check_inputs
from rnn_ref.params import RNNParams
from rnn_ref.reference import ForwardResult

__all__ = ["TorchBackend", "TorchCudaBackend", "TorchCudaFp32Backend"]


class TorchBackend:
    """The whole network in torch (``nn.RNN``, ``nn.GRU``, ``nn.LSTM`` blocks and
    :class:`~rnn_ref.backends.torch.network.GatedCell` s in a :class:`TorchNetwork`) on
    :attr:`device`, in the parameters' dtype, at :attr:`precision_mode` (see
    :mod:`rnn_ref.backends.devices`); padding and masks of any pattern run as packed
    sequences. ``torch`` computes on the CPU at torch's defaults."""

    name = "torch"
    device = "cpu"  # "cpu" or "cuda" (the first CUDA device)
    precision_mode = "default"  # "default": torch's settings as they are; "fp32": TF32 off

    def __init__(self) -> None:
        self._device = devices.torch_device(torch, self.name, self.device)

    def environment(self) -> dict[str, Any]:
        """The device, its name, the precision mode and torch's precision settings in force
        while this backend runs (read inside its precision context)."""
        with devices.torch_precision(torch, self.precision_mode):
            settings = devices.torch_settings(torch)
        return {"device": self.device, "device_name": devices.device_name("torch", self._device),
                "precision_mode": self.precision_mode, "precision_settings": settings,
                "framework": f"torch {torch.__version__}"
                             + (f", CUDA {torch.version.cuda}, cuDNN "
                                f"{torch.backends.cudnn.version()}" if self.device == "cuda"
                                else "")}

    def supports(self, config: RNNConfig, *, dtype: Any, lengths: bool, mask: bool
                 ) -> str | None:
        reason = unsupported(config, padded=lengths or mask)
        if reason is not None:
            return f"{reason[0]}: {reason[1]}"
        if np.dtype(dtype) not in TORCH_DTYPES:
            return f"dtype {np.dtype(dtype)}: use float32 or float64"
        return None

    def _run(self, params: RNNParams, x: Any, h0: Any, lengths: Any, mask: Any, grad: bool,
             c0: Any = None
             ) -> tuple[TorchNetwork, Any, list[torch.Tensor], list[torch.Tensor],
                        tuple[Any, ...]]:
        """(the module, the layers' input tensor (embedded ids with an embedding), the S
        initial state tensors ``(N, M_l)``, the C initial cell state tensors, ``module.run``'s
        outputs, states, selection, result and cell states); with ``grad`` autograd records
        the call. The inputs are checked by :func:`rnn_ref.inputs.check_inputs` first. Call
        it inside :func:`rnn_ref.backends.devices.torch_precision`."""
        cfg = params.config
        inputs = check_inputs(cfg, x, h0=h0, lengths=lengths, mask=mask, where=NAME, c0=c0)
        raise_if(unsupported(cfg, padded=inputs.padded), NAME)
        if params.dtype not in TORCH_DTYPES:
            raise UnsupportedError(NAME, f"dtype {params.dtype}", "use float32 or float64")
        dtype = TORCH_DTYPES[params.dtype]
        dev = self._device
        net = build_network(params).to(dev)
        xt = torch.from_numpy(np.ascontiguousarray(inputs.x)).to(dev)
        xt = xt if cfg.vocab_size is not None else xt.to(dtype).requires_grad_(grad)
        states = inputs.h0 if inputs.h0 is not None else [
            np.zeros((inputs.n, m), params.dtype) for m in cfg.state_sizes]
        ht = [torch.from_numpy(np.ascontiguousarray(h)).to(device=dev, dtype=dtype)
              .requires_grad_(grad) for h in states]
        ct = [torch.from_numpy(np.ascontiguousarray(c)).to(device=dev, dtype=dtype)
              .requires_grad_(grad) for c in inputs.c0_or_zeros(params.dtype)]
        seen: list[torch.Tensor] = []

        def keep(module: nn.Module, args: Any, out: torch.Tensor) -> None:
            if grad:
                out.retain_grad()
            seen.append(out)

        if cfg.vocab_size is not None:  # the gradient of the embedded ids is the layers' dx
            net.steps[0].register_forward_hook(keep)
        valid = torch.from_numpy(inputs.valid).to(dev) if inputs.padded else None
        with torch.set_grad_enabled(grad), quiet_onednn():
            result = net.run(xt, None, valid, ht, ct)
        return net, (seen[0] if seen else xt), ht, ct, result

    def backward(self, params: RNNParams, x: np.ndarray[Any, Any], *, h0: Any = None,
                 lengths: Any = None, mask: Any = None, grad_outputs: Any = None,
                 grad_h_n: Any = None, grad_y: Any = None, grad_selected: Any = None,
                 c0: Any = None, grad_c_n: Any = None) -> Any:
        """Gradients by torch autograd, in the parameters' dtype (a ``BackwardResult``, with
        ``c0``'s gradient for a network with an LSTM layer)."""
        from rnn_ref.gradient import BackwardResult

        if grad_c_n is not None and not params.config.num_cell_states:
            raise ValueError(f"grad_c_n is given, but the network has no LSTM layer (its "
                             f"layers are {[c.kind for c in params.config.cells]})")
        dtype, dev = TORCH_DTYPES[params.dtype], self._device

        def dot(a: torch.Tensor, cot: Any) -> torch.Tensor:
            return (a * torch.from_numpy(np.ascontiguousarray(cot)).to(device=dev, dtype=dtype)
                    ).sum()

        with devices.torch_precision(torch, self.precision_mode):
            net, xt, ht, ct, (out, states, selected, result, cells) = self._run(
                params, x, h0, lengths, mask, grad=True, c0=c0)
            loss = out.sum() * 0
            if grad_outputs is not None:
                loss = loss + dot(out, grad_outputs)
            for h, cot in zip(states, [] if grad_h_n is None else list(grad_h_n),
                              strict=False):
                loss = loss + dot(h, cot)
            if grad_y is not None and params.head:
                loss = loss + dot(result, grad_y)
            if grad_selected is not None and params.config.select != "sequence":
                loss = loss + dot(selected, grad_selected)
            for c, cot in zip(cells, [] if grad_c_n is None else list(grad_c_n), strict=False):
                loss = loss + dot(c, cot)
            with quiet_onednn():
                loss.backward()
        with torch.no_grad():
            for p in net.parameters():
                p.copy_(p.grad if p.grad is not None else torch.zeros_like(p))
        g = network_params(net.cpu())
        hg = [(h.grad if h.grad is not None else torch.zeros_like(h)).cpu().numpy() for h in ht]
        h0g: Any = np.stack(hg) if params.config.uniform_hidden else tuple(hg)
        cg = [(c.grad if c.grad is not None else torch.zeros_like(c)).cpu().numpy() for c in ct]
        c0g: Any = None if not cg else np.stack(cg) if params.config.uniform_cell else tuple(cg)
        dx = xt.grad if xt.grad is not None else torch.zeros_like(xt)
        return BackwardResult(g, dx.cpu().numpy(), h0g, c0g)

    def round_trip(self, params: RNNParams) -> RNNParams:
        """Through torch and back (raises where torch cannot express the config)."""
        return from_native(to_native(params.replace(padded_output="zeros")))

    def forward(self, params: RNNParams, x: np.ndarray[Any, Any], *, h0: Any = None,
                lengths: Any = None, mask: Any = None, c0: Any = None) -> ForwardResult:
        """The network on ``x`` (``(N, T, D)``, or token ids ``(N, T)``), ``h0`` (S states),
        ``lengths (N,)`` or a ``mask (N, T)`` of any pattern, an LSTM's ``c0`` (C cell
        states): ``outputs (N, T, F)`` (zeros at padded steps), ``h_n (S, N, M)`` (a tuple
        when the widths differ), ``y`` or ``None``, the selection and ``c_n`` (``None``
        without an LSTM layer), in the parameters' dtype. Bad inputs raise as
        :func:`rnn_ref.inputs.check_inputs` says."""
        cfg = params.config
        with devices.torch_precision(torch, self.precision_mode):
            _, _, _, _, (out, states, selected, result, cells) = self._run(
                params, x, h0, lengths, mask, grad=False, c0=c0)
        hs = [h.cpu().numpy() for h in states]
        h_n: Any = np.stack(hs) if cfg.uniform_hidden else tuple(hs)
        cs = [c.cpu().numpy() for c in cells]
        c_n: Any = None if not cs else np.stack(cs) if cfg.uniform_cell else tuple(cs)
        y = result.cpu().numpy() if params.head else None
        return ForwardResult(out.cpu().numpy(), h_n, y, selected.cpu().numpy(), c_n)


class TorchCudaBackend(TorchBackend):
    """:class:`TorchBackend` on the first CUDA device (cuDNN's RNN), at torch's own
    precision settings: TF32 for cuDNN's RNN by default (``torch.backends.cudnn.allow_tf32``
    is ``True``; newer torch: ``torch.backends.cudnn.rnn.fp32_precision == "tf32"``)."""

    name = "torch[cuda]"
    device = "cuda"


class TorchCudaFp32Backend(TorchCudaBackend):
    """:class:`TorchCudaBackend` in strict float32: TF32 off for cuDNN's RNN and CUDA matrix
    products while it runs (:func:`rnn_ref.backends.devices.torch_precision`)."""

    name = "torch[cuda,fp32]"
    precision_mode = "fp32"
