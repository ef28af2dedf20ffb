"""Forward-pass speed: minibert.BertModel against transformers.BertModel, same config, same weights.

    .venv/bin/python benchmarks/forward.py            # or: make bench
    .venv/bin/python benchmarks/forward.py --repeats 20 --threads 2

For each case it builds both models from one config (BERT-base: 12 layers, 768 wide, 12 heads, sdpa),
copies transformers' random weights into minibert (load_state_dict, strict=True), checks that the outputs
agree on every real token, then times forward passes in eval mode, interleaved (transformers, minibert,
minibert packed, transformers, ...; warm-up rounds discarded), and prints medians, the ratio
minibert / transformers, tokens per second, achieved matmul FLOP/s and the fraction of peak where the peak
is known. `minibert packed` is `minibert.packed.packed_forward(model, ids, mask)` (chapter 10): the attention
output projection and the feed-forward network run on the real tokens only, q/k/v and attention on the padded
grid (the same numbers on real tokens; padded positions come back as zeros).

Cases: CPU, float32, batch 8 x 128 tokens, with and without padding; on a CUDA GPU (only when one is
present), bfloat16 at 64 x 512 and 256 x 128, with and without padding.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

import torch

import transformers

import minibert
from minibert.flops import forward_flops
from minibert.packed import packed_forward

# Dense (no sparsity) bfloat16 tensor-core peaks from NVIDIA's data sheets, in FLOP/s.
GPU_BF16_PEAK = [("H100 PCIe", 756e12), ("H100 NVL", 835e12), ("H100", 989e12), ("H200 NVL", 835e12), ("H200", 989e12),
                 ("A100", 312e12), ("L40S", 362e12), ("L4", 121e12)]


def gpu_peak(name: str) -> float | None:
    return next((peak for key, peak in GPU_BF16_PEAK if key in name), None)


def build_models(device: str, dtype: torch.dtype, seed: int = 0):
    """transformers.BertModel with random weights, and minibert.BertModel holding the same weights."""
    config = minibert.BertConfig()  # BERT-base, attn_implementation="sdpa"
    hf_config = transformers.BertConfig(**{k: v for k, v in config.to_dict().items() if k != "attn_implementation"},
                                        attn_implementation=config.attn_implementation)
    torch.manual_seed(seed)
    hf = transformers.BertModel(hf_config).eval()
    mb = minibert.BertModel(config).eval()
    mb.load_state_dict(hf.state_dict(), strict=True)
    return config, hf.to(device, dtype), mb.to(device, dtype)


def make_batch(batch: int, seq: int, padded: bool, vocab: int, device: str, seed: int = 0):
    """Random token ids and a 0/1 attention mask. Padded: lengths uniform in [seq/4, seq], right padding,
    the first sequence full (as a tokenizer pads a batch to its longest member)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1000, vocab, (batch, seq), generator=g)
    lengths = torch.full((batch,), seq)
    if padded:
        lengths = torch.randint(seq // 4, seq + 1, (batch,), generator=g)
        lengths[0] = seq
    mask = (torch.arange(seq)[None, :] < lengths[:, None]).long()  # (B, T), 1 = real token
    ids = ids * mask  # [PAD] = 0
    return ids.to(device), mask.to(device), lengths.tolist()


def run_models(models, ids, mask):
    """name -> callable running one forward pass and returning (last_hidden_state, pooler_output)."""
    hf, mb = models

    def hf_fn():
        out = hf(input_ids=ids, attention_mask=mask)
        return out.last_hidden_state, out.pooler_output

    def mb_fn():
        out = mb(ids, attention_mask=mask)
        return out.last_hidden_state, out.pooler_output

    def packed_fn():
        out = packed_forward(mb, ids, mask)
        return out.last_hidden_state, out.pooler_output

    return {"transformers": hf_fn, "minibert": mb_fn, "minibert packed": packed_fn}


def agreement(fns, mask, tol: float) -> dict[str, float]:
    """max |difference| from transformers over real tokens (last hidden state) and the pooler output."""
    real = mask.to(torch.bool)
    ref_h, ref_p = fns["transformers"]()
    diffs = {}
    for name, fn in fns.items():
        if name == "transformers":
            continue
        h, p = fn()
        d = max((h[real] - ref_h[real]).abs().max().item(), (p - ref_p).abs().max().item())
        if not d <= tol:
            raise SystemExit(f"{name} disagrees with transformers: max |diff| = {d:.3g} > {tol}")
        diffs[name] = d
    return diffs


def time_interleaved(fns, warmup: int, repeats: int, sync, calls: int = 1) -> dict[str, list[float]]:
    """Seconds per forward for each function, measured in turn, warm-up rounds dropped. The order rotates
    every round (A B C, B C A, C A B, ...) so that no model always runs first or right after another."""
    times = {name: [] for name in fns}
    names = list(fns)
    for r in range(warmup + repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:
            fn = fns[name]
            sync()
            start = time.perf_counter()
            for _ in range(calls):
                fn()
            sync()
            if r >= warmup:
                times[name].append((time.perf_counter() - start) / calls)
    return times


def sgemm_rate(device: str, dtype: torch.dtype, n: int = 2048, repeats: int = 5) -> float:
    """FLOP/s of one large square matmul: what this machine's matmul library reaches, a practical ceiling."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        a @ b
        sync()
        best = min(best, time.perf_counter() - start)
    return 2 * n ** 3 / best


def bench_case(models, config, device, dtype, batch, seq, padded, warmup, repeats, calls, peak, peak_name):
    ids, mask, lengths = make_batch(batch, seq, padded, config.vocab_size, device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    tol = 1e-4 if dtype == torch.float32 else 3e-2
    with torch.inference_mode():
        fns = run_models(models, ids, mask)
        diffs = agreement(fns, mask, tol)
        times = time_interleaved(fns, warmup, repeats, sync, calls)
    n_real = sum(lengths)
    flops_all = forward_flops(config, batch, seq)  # what a padded forward computes
    flops_real = sum(forward_flops(config, 1, n) for n in lengths)  # the useful part: real tokens only
    name = f"{device} {str(dtype).removeprefix('torch.')} {batch}x{seq} " + (
        f"padded ({n_real}/{batch * seq} tokens real)" if padded else "no padding")
    print(f"\n## {name}")
    print("agreement with transformers (max |diff|, real tokens + pooler): "
          + ", ".join(f"{k} {v:.2e}" for k, v in diffs.items()))
    unit, scale = ("TFLOP/s", 1e12) if device == "cuda" else ("GFLOP/s", 1e9)
    print(f"{'model':<19}{'median ms':>11}{'ratio':>7}{'paired':>8}{'real tok/s':>12}{unit:>9}{'of ' + peak_name:>10}")
    ref = statistics.median(times["transformers"])
    rows = []
    for model, ts in times.items():
        med = statistics.median(ts)
        # paired: the median over rounds of this round's time / transformers' time in the same round,
        # robust when the machine's load drifts during the run
        paired = statistics.median(t / h for t, h in zip(ts, times["transformers"]))
        rate = flops_real / med  # useful FLOP/s: padding counted as waste, so padded and full rows compare
        frac = f"{rate / peak:.1%}" if peak else "unknown"
        print(f"{model:<19}{med * 1e3:>11.2f}{med / ref:>7.3f}{paired:>8.3f}{n_real / med:>12.0f}"
              f"{rate / scale:>9.3f}{frac:>10}")
        rows.append((model, med, med / ref, paired))
    print(f"(matmul FLOPs per forward: {flops_all / 1e9:.1f} G over all positions, {flops_real / 1e9:.1f} G on real "
          f"tokens; FLOP/s counts real tokens only; {repeats} timed rounds after {warmup} warm-up; "
          f"ratio = median / transformers' median)")
    return name, rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=10, help="timed rounds per case (CPU; GPU: at least 20)")
    parser.add_argument("--warmup", type=int, default=2, help="discarded rounds per CPU case (GPU: 5)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--device", choices=["cpu", "cuda", "all"], default="all",
                        help="which cases to run (cuda cases run only when CUDA is present)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"# minibert forward benchmark: {platform.node() or 'machine'}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, torch {torch.__version__} ({torch.get_num_threads()} threads), "
          f"transformers {transformers.__version__}, Python {platform.python_version()}")
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    results = []
    if args.device in ("cpu", "all"):
        config, hf, mb = build_models("cpu", torch.float32)
        rate = sgemm_rate("cpu", torch.float32)
        print(f"CPU float32 peak: not known (clock and core sharing vary); a 2048^3 matmul reaches "
              f"{rate / 1e9:.0f} GFLOP/s here, used below as the practical ceiling ('of sgemm')")
        for padded in (False, True):
            results.append(bench_case((hf, mb), config, "cpu", torch.float32, 8, 128, padded,
                                      args.warmup, args.repeats, 1, rate, "sgemm"))
        del hf, mb
    if args.device in ("cuda", "all"):
        if not torch.cuda.is_available():
            print("\nCUDA: not available on this machine; GPU cases skipped")
        else:
            name = torch.cuda.get_device_name()
            peak = gpu_peak(name)
            print(f"\nGPU: {name}, dense bf16 peak "
                  + (f"{peak / 1e12:.0f} TFLOP/s (data sheet)" if peak else "not known for this model"))
            torch.backends.cuda.matmul.allow_tf32 = True
            config, hf, mb = build_models("cuda", torch.bfloat16)
            for batch, seq in ((64, 512), (256, 128)):
                for padded in (False, True):
                    results.append(bench_case((hf, mb), config, "cuda", torch.bfloat16, batch, seq, padded,
                                              5, max(args.repeats, 20), 5, peak, "peak"))
    print(f"\nload average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("\n# ratios to transformers (median time; paired in brackets; <= 1.00: at least as fast)")
    for name, rows in results:
        print(f"{name}: " + ", ".join(f"{m} {r:.3f} ({p:.3f})" for m, _, r, p in rows if m != "transformers"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
