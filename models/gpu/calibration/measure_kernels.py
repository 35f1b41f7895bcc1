#!/usr/bin/env python3
# Measures, on the GPU it runs on, the kernel times the GPU compute model (models/gpu) predicts:
# dense and grouped expert GEMMs by rows (tokens) per expert, FP8 GEMMs, attention, HBM copies
# and back-to-back launch cost. Writes one CSV row per measurement; calibrate.md says how the
# model's parameters were fitted to them. Needs PyTorch and Triton (for do_bench, which clears
# the L2 between repetitions so that weights come from HBM, as in a real MoE layer).
import csv
import math
import os
import subprocess
import sys

import torch
import torch.nn.functional as F
from triton.testing import do_bench

dev = torch.device("cuda")
torch.manual_seed(0)
out_dir = os.environ.get("OUT", ".")
rows = []


def bench(fn):
    fn()  # first call outside the timing: handles, autotuning
    return do_bench(fn, warmup=10, rep=40, return_mode="median") * 1e3  # us


def record(kind, dtype, m, n, k, groups, dist, t_us, note=""):
    rows.append(dict(kind=kind, dtype=dtype, m=m, n=n, k=k, groups=groups, dist=dist,
                     time_us=f"{t_us:.3f}", note=note))


def header():
    p = torch.cuda.get_device_properties(0)
    smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,clocks.max.sm,"
                          "clocks.max.mem,power.limit", "--format=csv,noheader"],
                         capture_output=True, text=True).stdout.strip()
    print(f"# {p.name}, {p.multi_processor_count} SMs, torch {torch.__version__}, "
          f"cuda {torch.version.cuda}; nvidia-smi: {smi}", flush=True)


# DeepSeek-V3 (hidden 7168, expert ffn 2048), Qwen3-235B-A22B (4096, 1536), Mixtral-8x7B (4096,
# 14336), Qwen3-30B-A3B (2048, 768): gate/up is m x hidden by hidden x 2ffn, down m x ffn by
# ffn x hidden.
SHAPES = {"deepseek-v3": (7168, 2048), "qwen3-235b": (4096, 1536), "mixtral-8x7b": (4096, 14336),
          "qwen3-30b": (2048, 768)}
M_LIST = [1, 2, 4, 8, 16, 32, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 3072,
          4096, 6144, 8192, 16384]


def dense_gemms():
    for name, (h, f) in SHAPES.items():
        for tag, n, k in (("gateup", 2 * f, h), ("down", h, f)):
            # Several weight copies (> L2) are not needed: do_bench flushes L2 each repetition.
            w = torch.randn(n, k, device=dev, dtype=torch.bfloat16)
            for m in M_LIST:
                a = torch.randn(m, k, device=dev, dtype=torch.bfloat16)
                t = bench(lambda: torch.mm(a, w.t()))
                record("gemm", "bf16", m, n, k, 1, f"{name}-{tag}", t)
        print(f"dense bf16 {name} done", flush=True)
    for sq in (4096, 8192):
        a = torch.randn(sq, sq, device=dev, dtype=torch.bfloat16)
        b = torch.randn(sq, sq, device=dev, dtype=torch.bfloat16)
        record("gemm", "bf16", sq, sq, sq, 1, "square", bench(lambda: torch.mm(a, b)))


def fp8_gemms():
    one = torch.ones((), device=dev, dtype=torch.float32)
    for name, (h, f) in SHAPES.items():
        for tag, n, k in (("gateup", 2 * f, h), ("down", h, f)):
            w = torch.randn(n, k, device=dev).to(torch.float8_e4m3fn)
            for m in [x for x in M_LIST if x % 16 == 0]:
                a = torch.randn(m, k, device=dev).to(torch.float8_e4m3fn)
                try:
                    t = bench(lambda: torch._scaled_mm(a, w.t(), one, one,
                                                       out_dtype=torch.bfloat16))
                except Exception as e:  # noqa: BLE001
                    print(f"fp8 {name} {tag} m={m}: {e}", flush=True)
                    return
                record("gemm", "fp8", m, n, k, 1, f"{name}-{tag}", t, "per-tensor scales")
        print(f"dense fp8 {name} done", flush=True)
    a = torch.randn(8192, 8192, device=dev).to(torch.float8_e4m3fn)
    b = torch.randn(8192, 8192, device=dev).to(torch.float8_e4m3fn)
    record("gemm", "fp8", 8192, 8192, 8192, 1, "square",
           bench(lambda: torch._scaled_mm(a, b.t(), one, one, out_dtype=torch.bfloat16)))


def grouped(counts, h, f, dist, groups):
    # One grouped GEMM per FFN matrix product, as MoE kernels do: gate/up then down.
    g = len(counts)
    total = int(sum(counts))
    offs = torch.tensor(list(itertools_accumulate(counts)), device=dev, dtype=torch.int32)
    for tag, n, k in (("gateup", 2 * f, h), ("down", h, f)):
        w = torch.randn(g, n, k, device=dev, dtype=torch.bfloat16)
        a = torch.randn(max(total, 1), k, device=dev, dtype=torch.bfloat16)
        t = bench(lambda: torch._grouped_mm(a[:total], w.transpose(-2, -1), offs=offs,
                                            out_dtype=torch.bfloat16))
        record("grouped", "bf16", total, n, k, groups, f"{dist}-{tag}", t,
               " ".join(str(c) for c in counts))


def itertools_accumulate(xs):
    s = 0
    for x in xs:
        s += x
        yield s


def grouped_gemms():
    gen = torch.Generator().manual_seed(1)
    for name in ("deepseek-v3", "qwen3-235b", "mixtral-8x7b"):
        h, f = SHAPES[name]
        for g in (1, 8, 32):
            if name == "mixtral-8x7b" and g > 8:
                continue
            for m in (16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192):
                try:
                    grouped([m] * g, h, f, f"{name}-uniform{m}", g)
                except Exception as e:  # noqa: BLE001
                    print(f"grouped {name} g={g} m={m}: {e}", flush=True)
                    return
            if g > 1:
                # Skewed counts: multinomial over a Zipf(1.2) popularity, mean 256 or 1024 rows,
                # rounded to 16 (the grouped kernel's alignment).
                for mean in (256, 1024):
                    p = torch.tensor([1.0 / (i + 1) ** 1.2 for i in range(g)])
                    c = torch.multinomial(p / p.sum(), g * mean, replacement=True, generator=gen)
                    counts = [int(x) // 16 * 16 for x in torch.bincount(c, minlength=g)]
                    grouped(counts, h, f, f"{name}-zipf{mean}", g)
        print(f"grouped {name} done", flush=True)


def grouped_fp8():
    # FP8 grouped GEMMs with row-wise scales (the DeepSeek-V3 preset's FP8 experts); counts are
    # multiples of 16 as the kernel requires.
    gen = torch.Generator().manual_seed(2)
    for name in ("deepseek-v3", "qwen3-235b"):
        h, f = SHAPES[name]
        for g in (1, 8, 32):
            cases = [(f"uniform{m}", [m] * g) for m in (16, 32, 64, 128, 256, 512, 1024, 2048,
                                                        4096, 8192)]
            if g > 1:
                for mean in (256, 1024):
                    p = torch.tensor([1.0 / (i + 1) ** 1.2 for i in range(g)])
                    c = torch.multinomial(p / p.sum(), g * mean, replacement=True, generator=gen)
                    cases.append((f"zipf{mean}",
                                  [int(x) // 16 * 16 for x in torch.bincount(c, minlength=g)]))
            for dist, counts in cases:
                total = int(sum(counts))
                offs = torch.tensor(list(itertools_accumulate(counts)), device=dev,
                                    dtype=torch.int32)
                for tag, n, k in (("gateup", 2 * f, h), ("down", h, f)):
                    w = torch.randn(g, n, k, device=dev).to(torch.float8_e4m3fn)
                    a = torch.randn(max(total, 16), k, device=dev).to(torch.float8_e4m3fn)
                    sa = torch.ones(max(total, 16), device=dev, dtype=torch.float32)
                    sb = torch.ones(g, n, device=dev, dtype=torch.float32)
                    t = bench(lambda: torch._scaled_grouped_mm(
                        a[:total], w.transpose(-2, -1), sa[:total], sb, offs=offs,
                        out_dtype=torch.bfloat16))
                    record("grouped", "fp8", total, n, k, g, f"{name}-{dist}-{tag}", t,
                           " ".join(str(c) for c in counts) if "zipf" in dist else "")
        print(f"grouped fp8 {name} done", flush=True)


def steady():
    # The fixed cost per kernel in a stream of kernels, as a step runs them: 20 back-to-back
    # expert FFNs (gate/up then down grouped GEMMs) replayed from a CUDA graph, against the same
    # kernels timed one by one. Each time is per FFN (two kernels).
    h, f = SHAPES["deepseek-v3"]
    start = torch.cuda.Event(enable_timing=True)
    end = torch.cuda.Event(enable_timing=True)
    for g, m in ((8, 16), (8, 128), (8, 1024), (32, 16), (32, 256)):
        counts = [m] * g
        offs = torch.tensor(list(itertools_accumulate(counts)), device=dev, dtype=torch.int32)
        # 4 weight sets rotated so that no kernel finds its weights in L2.
        w1 = [torch.randn(g, 2 * f, h, device=dev, dtype=torch.bfloat16) for _ in range(4)]
        w2 = [torch.randn(g, h, f, device=dev, dtype=torch.bfloat16) for _ in range(4)]
        a = torch.randn(g * m, h, device=dev, dtype=torch.bfloat16)
        b = torch.randn(g * m, f, device=dev, dtype=torch.bfloat16)

        def ffn(i):
            torch._grouped_mm(a, w1[i % 4].transpose(-2, -1), offs=offs, out_dtype=torch.bfloat16)
            torch._grouped_mm(b, w2[i % 4].transpose(-2, -1), offs=offs, out_dtype=torch.bfloat16)

        for i in range(8):
            ffn(i)
        torch.cuda.synchronize()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            for i in range(20):
                ffn(i)
        graph.replay()
        torch.cuda.synchronize()
        per = []
        for _ in range(7):
            start.record()
            graph.replay()
            end.record()
            end.synchronize()
            per.append(start.elapsed_time(end) * 1e3 / 20)
        record("grouped_stream", "bf16", g * m, 2 * f, h, g, f"deepseek-v3-uniform{m}-ffn-graph",
               sorted(per)[3], "per FFN (gate/up + down), 20 back to back from a CUDA graph")


def activation():
    # SiLU(gate) * up on m x 2f, written m x f: the kernel between the two grouped GEMMs when it
    # is not fused into an epilogue.
    for name in ("deepseek-v3", "mixtral-8x7b"):
        h, f = SHAPES[name]
        for m in (128, 1024, 8192, 32768):
            x = torch.randn(m, 2 * f, device=dev, dtype=torch.bfloat16)
            t = bench(lambda: F.silu(x[:, :f]) * x[:, f:])
            record("swiglu", "bf16", m, f, 0, 1, name, t, "unfused, 2 kernels")


def memory():
    for mib in (64, 512, 2048):
        n = mib * 2**20 // 2
        src = torch.randn(n, device=dev, dtype=torch.bfloat16)
        dst = torch.empty_like(src)
        t = bench(lambda: dst.copy_(src))
        record("copy", "bf16", n * 2, 0, 0, 1, f"{mib}MiB", t, "bytes read = written = m")


def launches():
    # Back-to-back tiny kernels without graphs: the per-kernel cost an eager framework pays.
    x = torch.zeros(1, device=dev)
    for _ in range(100):
        x.add_(1)
    torch.cuda.synchronize()
    start = torch.cuda.Event(enable_timing=True)
    end = torch.cuda.Event(enable_timing=True)
    per = []
    for _ in range(5):
        start.record()
        for _ in range(2000):
            x.add_(1)
        end.record()
        end.synchronize()
        per.append(start.elapsed_time(end) * 1e3 / 2000)
    record("launch", "fp32", 1, 0, 0, 1, "eager-back-to-back", sorted(per)[2])
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        for _ in range(2000):
            x.add_(1)
    g.replay()
    torch.cuda.synchronize()
    per = []
    for _ in range(5):
        start.record()
        g.replay()
        end.record()
        end.synchronize()
        per.append(start.elapsed_time(end) * 1e3 / 2000)
    record("launch", "fp32", 1, 0, 0, 1, "graph-back-to-back", sorted(per)[2])


def attention():
    # Causal prefill, head_dim 128 (flash backend), 32 heads, 16k tokens per call.
    from torch.nn.attention import SDPBackend, sdpa_kernel
    for L in (512, 1024, 2048, 4096, 8192):
        b = max(1, 16384 // L)
        q = torch.randn(b, 32, L, 128, device=dev, dtype=torch.bfloat16)
        k = torch.randn_like(q)
        v = torch.randn_like(q)
        with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
            t = bench(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True))
        record("attn_prefill", "bf16", L, 32, 128, b, "causal-flash", t, "m=L n=heads k=head_dim groups=batch")
        with sdpa_kernel([SDPBackend.CUDNN_ATTENTION]):
            try:
                t = bench(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True))
                record("attn_prefill", "bf16", L, 32, 128, b, "causal-cudnn", t,
                       "m=L n=heads k=head_dim groups=batch")
            except Exception as e:  # noqa: BLE001
                print(f"cudnn attention L={L}: {e}", flush=True)
    # Decode: one query per sequence, 32 query heads over 8 KV heads (GQA), context L.
    for L in (1024, 4096, 16384):
        for b in (8, 64):
            q = torch.randn(b, 32, 1, 128, device=dev, dtype=torch.bfloat16)
            k = torch.randn(b, 8, L, 128, device=dev, dtype=torch.bfloat16)
            v = torch.randn_like(k)
            t = bench(lambda: F.scaled_dot_product_attention(q, k, v, enable_gqa=True))
            record("attn_decode", "bf16", L, 32, 128, b, "gqa8", t,
                   "m=context n=q heads k=head_dim groups=batch; kv bytes=2*b*8*L*128*2")


header()
PARTS = (memory, launches, dense_gemms, fp8_gemms, grouped_gemms, grouped_fp8, steady,
         activation, attention)
chosen = [p for p in PARTS if len(sys.argv) < 2 or p.__name__ in sys.argv[1:]]
for part in chosen:
    try:
        part()
    except Exception as e:  # noqa: BLE001
        print(f"{part.__name__} failed: {e}", flush=True)
    path = os.path.join(out_dir, "kernels.csv")
    with open(path, "w", newline="") as fh:
        wr = csv.DictWriter(fh, fieldnames=list(rows[0].keys()), lineterminator="\n")
        wr.writeheader()
        wr.writerows(rows)
    print(f"{part.__name__}: {len(rows)} rows so far", flush=True)
# Usage: measure_kernels.py [part ...] (default: every part); parts are the functions above.
for r in rows:
    if r["kind"] in ("copy", "launch") or r["dist"] == "square":
        print(r["kind"], r["dtype"], r["m"], r["dist"], r["time_us"])
