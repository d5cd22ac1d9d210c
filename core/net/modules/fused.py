"""LoRA's bypass branch as one autograd node that adds into the base layer's output in place.

Autograd of the plain branch (``up(down(x)) * scale`` then ``base_out.add_``) runs, per adapted layer and step:
a cast of each factor, the two products, a scale multiply, the output-sized add, and in backward the output-sized
grad of that add, the rank-wide multiply's grad, a reshape's grad per product and four products. Here the up
product is accumulated straight into the base output by the GEMM itself (``addmm_``/``baddbmm_`` with
alpha = scale, beta = 1: no output-sized delta is ever written) and the backward is the four products alone, the
scale applied to the rank-wide and factor-sized results only. Same maths: the gradients agree with the plain
branch's to float rounding (tests/test_fused_lora.py).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype the plain branch's products run in: autocast's for the device when it is on, else x's."""
    device = x.device.type
    if torch.is_autocast_enabled(device) and x.is_floating_point():
        return torch.get_autocast_dtype(device)
    return x.dtype


def fusable(x: torch.Tensor, base_out: torch.Tensor) -> bool:
    """Whether the fused branch can take this call: an output it may view without copying, in the dtype the
    products run in (else the plain branch casts the delta, which the fused one does not)."""
    return base_out.dim() >= 2 and base_out.is_contiguous() and base_out.dtype == compute_dtype(x)


def unviewed(base_out: torch.Tensor) -> torch.Tensor:
    """The tensor an in-place add into ``base_out`` should write: the tensor ``base_out`` reshapes when it is a
    whole-tensor view (``F.linear`` on a 3-D input returns its 2-D product viewed back to 3-D), else itself.

    An in-place op on a view of a tensor that needs a gradient makes autograd wrap it in CopySlices, whose
    backward clones the output-sized gradient and copies it through a strided view: measured at 4-5 % of a
    256 px SD1.5 step (bench_train.py --profile). Adding into the viewed tensor and viewing the sum back costs
    a view node instead. The caller reshapes the result back to ``base_out.shape``."""
    root = base_out._base
    if (root is None or root.numel() != base_out.numel() or not base_out.is_contiguous() or not root.is_contiguous()
            or base_out.storage_offset() != root.storage_offset() or root.dtype != base_out.dtype):
        return base_out
    return root


class LinearLoRAAdd(torch.autograd.Function):
    """base_out += scale * (x @ down.T) @ up.T, in place; returns base_out.

    The rank-wide products are formed transposed (rank x tokens: ``down @ x.T`` rather than ``x @ down.T``):
    the same numbers, but a BLAS GEMM with a rank-sized output row count runs 2-4x faster on the CPU than
    one with a rank-sized column count (MKL, 1024 tokens x 320 wide x rank 8: 0.09 ms against 0.37 ms),
    and a GPU's GEMM takes either layout alike."""

    @staticmethod
    def forward(ctx, base_out, x, down, up, scale):
        dtype = base_out.dtype
        xd, dd, ud = x.to(dtype), down.to(dtype), up.to(dtype)
        with torch.autocast(x.device.type, enabled=False):
            h_t = torch.mm(dd, xd.reshape(-1, xd.shape[-1]).t())                  # rank x tokens
            base_out.view(-1, base_out.shape[-1]).addmm_(h_t.t(), ud.t(), alpha=scale)
        ctx.mark_dirty(base_out)
        ctx.save_for_backward(xd, h_t, dd, ud)
        ctx.scale, ctx.dtypes = scale, (x.dtype, down.dtype, up.dtype)
        return base_out

    @staticmethod
    def backward(ctx, grad):
        xd, h_t, dd, ud = ctx.saved_tensors
        g = grad.reshape(-1, grad.shape[-1]).to(h_t.dtype)
        grad_h_t = torch.mm(ud.t(), g.t()).mul_(ctx.scale)                         # rank x tokens
        grad_up = torch.mm(h_t, g).mul_(ctx.scale).t()
        grad_down = torch.mm(grad_h_t, xd.reshape(-1, xd.shape[-1]))
        grad_x = None
        if ctx.needs_input_grad[1]:
            grad_x = torch.mm(grad_h_t.t(), dd).reshape(xd.shape).to(ctx.dtypes[0])
        return grad, grad_x, grad_down.to(ctx.dtypes[1]), grad_up.to(ctx.dtypes[2]), None


class ConvLoRAAdd(torch.autograd.Function):
    """base_out += scale * conv1x1(conv(x, down), up), in place; returns base_out. ``conv``: (stride, padding,
    dilation, groups) of the base layer, which the down factor shares."""

    @staticmethod
    def forward(ctx, base_out, x, down, up, scale, conv):
        dtype = base_out.dtype
        xd, dd, ud = x.to(dtype), down.to(dtype), up.to(dtype)
        stride, padding, dilation, groups = conv
        with torch.autocast(x.device.type, enabled=False):
            h = F.conv2d(xd, dd, None, stride, padding, dilation, groups)
            b, rank = h.shape[0], h.shape[1]
            out = base_out.view(b, base_out.shape[1], -1)
            out.baddbmm_(ud.reshape(ud.shape[0], rank).expand(b, -1, -1), h.reshape(b, rank, -1), alpha=scale)
        ctx.mark_dirty(base_out)
        ctx.save_for_backward(xd, h, dd, ud)
        ctx.scale, ctx.conv, ctx.dtypes = scale, conv, (x.dtype, down.dtype, up.dtype)
        return base_out

    @staticmethod
    def backward(ctx, grad):
        xd, h, dd, ud = ctx.saved_tensors
        stride, padding, dilation, groups = ctx.conv
        b, rank = h.shape[0], h.shape[1]
        g = grad.to(h.dtype).reshape(b, grad.shape[1], -1)
        up2 = ud.reshape(ud.shape[0], rank)
        grad_h = torch.matmul(up2.t(), g).mul_(ctx.scale).reshape(h.shape)
        # rank x out per sample, transposed after (the faster GEMM layout on the CPU, as in LinearLoRAAdd)
        grad_up = torch.bmm(h.reshape(b, rank, -1), g.transpose(1, 2)).sum(0).mul_(ctx.scale).t().reshape(ud.shape)
        grad_x, grad_down, _ = torch.ops.aten.convolution_backward(
            grad_h, xd, dd, None, list(stride), list(padding), list(dilation), False, [0, 0], groups,
            [ctx.needs_input_grad[1], True, False])
        if grad_x is not None:
            grad_x = grad_x.to(ctx.dtypes[0])
        return grad, grad_x, grad_down.to(ctx.dtypes[1]), grad_up.to(ctx.dtypes[2]), None, None
