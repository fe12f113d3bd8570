"""Roofline time an accelerator should need for a program, from XLA's cost analysis.

predicted seconds = max(FLOPs / peak FLOP/s, bytes accessed / memory bandwidth), with
FLOPs and bytes from `compiled.cost_analysis()` of the program compiled HERE (for the
CPU), against published peaks. A lower bound on the device's time, labelled "predicted":
no accelerator has run it. What it leaves out:
- fusion: the bytes are what XLA:CPU's fusion reads and writes; GPU/TPU fusion differs;
- while loops: XLA counts a loop body once (Sinkhorn iterations; the blockwise InfoNCE's
  tiles unless traced under recgoat_jax.losses.unrolled_tiles(), as bench_cmcl.py does);
- kernel launches, host dispatch, gathers and scatters slower than streaming bandwidth;
- mixed precision: a bf16 step (train.mixed_precision) is priced at the bf16 peak
  throughout, though only its large matmuls run in bf16 (optimistic); an f32 step at the
  f32 figure below.

Peaks (published figures, dense, no sparsity):
- NVIDIA H100 SXM5 (NVIDIA H100 Tensor Core GPU datasheet): BF16 Tensor Core 989 TFLOP/s
  (1,979 with 2:4 sparsity), FP32 67 TFLOP/s (CUDA cores, non-tensor), HBM3 3.35 TB/s.
  JAX's default precision runs float32 dots on H100 as TF32 tensor-core products
  (495 TFLOP/s dense), so the FP32 figure over-states an f32 step's matmul time.
- Google Cloud TPU v5e (Cloud TPU v5e documentation, "System architecture"): 197 TFLOP/s
  bf16 (394 TOP/s int8), HBM2 819 GB/s. No separate f32 figure is published; JAX's
  default precision runs float32 dots on the TPU MXU as one bf16 pass, so f32 and bf16
  steps both use 197 TFLOP/s.
"""

from __future__ import annotations

DEVICES = {
    "H100": {"name": "NVIDIA H100 SXM5", "f32_flops": 67e12, "bf16_flops": 989e12,
             "bytes_per_s": 3.35e12},
    "TPU v5e": {"name": "Google Cloud TPU v5e", "f32_flops": 197e12, "bf16_flops": 197e12,
                "bytes_per_s": 819e9},
}


def predict(flops: float | None, bytes_accessed: float | None, bf16: bool = False) -> dict:
    """{device: {"seconds", "bound": "compute" | "memory", "compute_s", "memory_s"}} for
    DEVICES; empty when the cost analysis gave nothing."""
    if not flops and not bytes_accessed:
        return {}
    out = {}
    for key, dev in DEVICES.items():
        compute = (flops or 0.0) / dev["bf16_flops" if bf16 else "f32_flops"]
        memory = (bytes_accessed or 0.0) / dev["bytes_per_s"]
        out[key] = {"seconds": max(compute, memory), "compute_s": compute, "memory_s": memory,
                    "bound": "compute" if compute >= memory else "memory"}
    return out


def describe(pred: dict) -> str:
    """'predicted H100 1.2 ms (memory), TPU v5e 4.5 ms (memory)' or ''."""
    if not pred:
        return ""
    return "predicted " + ", ".join(
        f"{k} {_ms(v['seconds'])} ({v['bound']})" for k, v in pred.items())


def _ms(s: float) -> str:
    return f"{s * 1e3:.3g} ms" if s >= 1e-4 else f"{s * 1e6:.3g} us"


DEFINITION = ("predicted_<device>: roofline lower bound max(XLA FLOPs / peak, XLA bytes "
              "accessed / memory bandwidth) of the program compiled for THIS machine's CPU; "
              "peaks and caveats in experiments/roofline.py; no accelerator ran it")
