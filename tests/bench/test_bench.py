"""`ember bench` on the CPU with a tiny config: workloads, reports, CLI, JSON, and the bundled real-size configs."""

from __future__ import annotations

import argparse
import json

import pytest
import torch

from ember.bench import datasets
from ember.bench.model import bundled_configs, load_bench_config
from ember.bench.report import percentiles, table

TINY = {"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "hidden_size": 64, "intermediate_size": 128,
        "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 32,
        "vocab_size": 300, "max_position_embeddings": 256,
        "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0}, "tie_word_embeddings": True}


@pytest.fixture
def tiny_config(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(TINY))
    return str(path)


def _parse(argv: list[str]) -> argparse.Namespace:
    from ember.cli import bench

    parser = argparse.ArgumentParser()
    bench.add_parser(parser.add_subparsers())
    return parser.parse_args(argv)


def test_synthetic_lengths():
    fixed = datasets.synthetic(5, 7, 3, vocab_size=300)
    assert [(len(r.prompt_ids), r.output_len) for r in fixed] == [(7, 3)] * 5
    assert all(0 <= t < 300 for r in fixed for t in r.prompt_ids)
    normal = datasets.synthetic(200, 40, 20, vocab_size=300, dist="normal")
    ins = [len(r.prompt_ids) for r in normal]
    assert min(ins) >= 1 and max(ins) <= 80 and len(set(ins)) > 10 and 30 < sum(ins) / len(ins) < 50
    with pytest.raises(ValueError, match="--dist"):
        datasets.synthetic(1, 1, 1, 300, dist="zipf")


def test_sharegpt_lengths_file(tmp_path):
    path = tmp_path / "lengths.json"
    path.write_text(json.dumps([[10, 5], [2, 50], [100, 40], [3000, 3000]]))
    reqs = datasets.sharegpt(6, 300, str(path), max_len=1024)
    assert sorted({(len(r.prompt_ids), r.output_len) for r in reqs}) == [(10, 5), (100, 40)]   # filtered, cycled
    assert len(reqs) == 6


def test_percentiles_and_table():
    p = percentiles([float(i) for i in range(1, 101)])
    assert p["p50"] == pytest.approx(50.5) and p["p99"] == pytest.approx(99.01)
    text = table([{"a": 1, "b": 1234.5}], ["a", "b"])
    assert "1,234.5" in text and text.count("\n") == 2


def test_bundled_configs_are_real_size():
    assert {"qwen3-8b", "llama-3.1-8b", "qwen3-30b-a3b", "mixtral-8x7b"} <= set(bundled_configs())
    from ember.loader.build import model_class_for

    counts = {}
    for name in ("qwen3-8b", "llama-3.1-8b"):
        cfg = load_bench_config(name)
        with torch.device("meta"):
            model = model_class_for(cfg)(cfg)
        counts[name] = sum(p.numel() for p in model.parameters()) / 1e9
    assert counts["qwen3-8b"] == pytest.approx(8.19, abs=0.01)
    assert counts["llama-3.1-8b"] == pytest.approx(8.03, abs=0.01)
    with pytest.raises(ValueError, match="bundled config"):
        load_bench_config("no-such-model")


def test_cli_latency_json(tiny_config, tmp_path, capsys):
    out = tmp_path / "lat.json"
    args = _parse(["bench", "latency", "--model", tiny_config, "--random-weights", "--dtype", "float32",
                   "--batch-size", "2", "--input-len", "5", "--output-len", "4", "--output", str(out)])
    assert args.func(args) == 0
    data = json.loads(out.read_text())
    res = data["ember"]
    assert data["random_weights"] and res["batch_size"] == 2 and res["output_len"] == 4
    assert res["decode_tokens_per_s"] > 0 and res["ttft_ms"] > 0 and res["itl_p50_ms"] <= res["itl_p99_ms"]
    assert "decode_tokens_per_s" in capsys.readouterr().out


def test_cli_throughput_with_hf_ratio(tiny_config, tmp_path, capsys):
    out = tmp_path / "thr.json"
    args = _parse(["bench", "throughput", "--model", tiny_config, "--random-weights", "--dtype", "float32",
                   "--num-requests", "6", "--input-len", "6", "--output-len", "3", "--engine", "hf",
                   "--hf-num-requests", "2", "--output", str(out)])
    assert args.func(args) == 0
    data = json.loads(out.read_text())
    assert data["ember"]["output_tokens"] == 18 and data["ember"]["num_requests"] == 6
    assert data["hf"]["output_tokens"] == 6
    assert data["ratio_vs_hf"] == pytest.approx(data["ember"]["output_tokens_per_s"] /
                                                data["hf"]["output_tokens_per_s"])
    assert "ember / hf" in capsys.readouterr().out


def test_random_weights_deterministic_and_finite(tiny_config):
    from ember.bench.model import build_random_model

    cfg = load_bench_config(tiny_config)
    a = build_random_model(cfg, torch.float32, torch.device("cpu"), seed=3)
    b = build_random_model(cfg, torch.float32, torch.device("cpu"), seed=3)
    for (n, p), q in zip(a.named_parameters(), b.parameters()):
        assert torch.isfinite(p).all() and torch.equal(p, q), n


def test_cli_prefill_tflops_and_ttft(tiny_config, tmp_path, capsys):
    out = tmp_path / "pre.json"
    args = _parse(["bench", "prefill", "--model", tiny_config, "--random-weights", "--dtype", "float32",
                   "--batch-size", "3", "--input-len", "20", "--output", str(out)])
    assert args.func(args) == 0
    res = json.loads(out.read_text())["ember"]
    assert res["batch_size"] == 3 and res["input_len"] == 20 and res["steps"] == 1   # the whole batch in one step
    assert res["tflops"] > 0 and res["pct_of_peak"] == pytest.approx(100 * res["tflops"] / 787.0)
    assert res["ttft_1_ms"] > 0 and "tflops" in capsys.readouterr().out


def test_prefill_flop_count_matches_hand_count(tiny_config):
    from ember.bench.engine_bench import attention_flops, linear_flops_per_token
    from ember.bench.model import build_random_model

    cfg = load_bench_config(tiny_config)
    model = build_random_model(cfg, torch.float32, torch.device("cpu"))
    body, head = linear_flops_per_token(model)
    h, i, layers, v = cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers, cfg.vocab_size
    d = getattr(cfg, "head_dim", None) or h // cfg.num_attention_heads
    q, kv = cfg.num_attention_heads * d, cfg.num_key_value_heads * d
    assert body == 2 * layers * (h * (q + 2 * kv) + q * h + 3 * h * i)
    assert head == 2 * h * v
    assert attention_flops(cfg, 4) == 2 * 2 * layers * q * 4 * 5 / 2


def test_cli_throughput_concurrency_sweep_and_plots(tiny_config, tmp_path, capsys):
    out = tmp_path / "thr.json"
    args = _parse(["bench", "throughput", "--model", tiny_config, "--random-weights", "--dtype", "float32",
                   "--num-requests", "6", "--input-len", "6", "--output-len", "3", "--max-num-seqs", "4",
                   "--concurrency", "1", "4", "--plot", str(tmp_path / "p"), "--output", str(out)])
    assert args.func(args) == 0
    data = json.loads(out.read_text())
    sweep = data["concurrency_sweep"]
    assert [r["concurrency"] for r in sweep] == [1, 4] and all(r["output_tokens"] == 18 for r in sweep)
    assert sweep[0]["steps"] > sweep[1]["steps"]           # one sequence at a time takes more steps
    png = tmp_path / "p_throughput.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="concurrency 8 > max_num_seqs 4"):
        bad = _parse(["bench", "throughput", "--model", tiny_config, "--random-weights", "--dtype", "float32",
                      "--num-requests", "2", "--input-len", "4", "--output-len", "2", "--max-num-seqs", "4",
                      "--concurrency", "8"])
        bad.func(bad)


def test_cli_latency_plot(tiny_config, tmp_path):
    args = _parse(["bench", "latency", "--model", tiny_config, "--random-weights", "--dtype", "float32",
                   "--batch-size", "1", "--input-len", "4", "--output-len", "4", "--plot", str(tmp_path / "l")])
    assert args.func(args) == 0
    assert (tmp_path / "l_latency.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("method", ["int8-wo", "nvfp4"])
def test_cli_latency_quantized_random_weights(tiny_config, tmp_path, method):
    """--quantization swaps the random model's linears for QuantLinears of the recipe's format (CPU: fallback)."""
    out = tmp_path / "q.json"
    args = _parse(["bench", "latency", "--model", tiny_config, "--random-weights", "--dtype", "float32",
                   "--quantization", method, "--batch-size", "2", "--input-len", "5", "--output-len", "3",
                   "--output", str(out)])
    assert args.func(args) == 0
    data = json.loads(out.read_text())
    assert data["quantization"] == method and data["ember"]["decode_tokens_per_s"] > 0


def test_cli_quantization_needs_random_weights(tiny_config):
    from ember.bench.run import build_ember

    args = _parse(["bench", "latency", "--model", tiny_config, "--quantization", "fp8", "--device", "cpu"])
    with pytest.raises(ValueError, match="--random-weights"):
        build_ember(args, datasets.synthetic(1, 4, 2, 300))


def test_cli_kv_cache_dtype_and_async_scheduling_reach_the_engine(tiny_config):
    from ember.bench.run import build_ember

    args = _parse(["bench", "latency", "--model", tiny_config, "--random-weights", "--dtype", "float32",
                   "--device", "cpu", "--kv-cache-dtype", "fp8", "--async-scheduling", "on"])
    engine, _ = build_ember(args, datasets.synthetic(1, 4, 2, 300))
    assert engine.async_scheduling and engine.runner.kv_caches[0].dtype == torch.float8_e4m3fn
    args = _parse(["bench", "latency", "--model", tiny_config, "--random-weights", "--dtype", "float32",
                   "--device", "cpu"])
    engine, _ = build_ember(args, datasets.synthetic(1, 4, 2, 300))
    assert not engine.async_scheduling and engine.runner.kv_caches[0].dtype == torch.float32   # CPU defaults


def test_hf_baseline_pads_prompts_and_counts_requested_tokens(tiny_config):
    """Varied lengths: HF runs one left-padded static batch to the longest output; throughput counts the tokens
    each request asked for (capped by --hf-output-len), not the padding rows' extra steps."""
    from ember.bench.hf_baseline import build_hf_model, hf_generate
    from ember.bench.model import load_bench_config
    from ember.bench.run import run_hf

    reqs = [datasets.BenchRequest([5, 6, 7], 2), datasets.BenchRequest([8] * 9, 5), datasets.BenchRequest([9], 1)]
    model = build_hf_model(load_bench_config(tiny_config), torch.float32, torch.device("cpu"))
    assert hf_generate(model, reqs, 3, torch.device("cpu"))["output_tokens"] == 8
    args = _parse(["bench", "throughput", "--model", tiny_config, "--random-weights", "--dtype", "float32",
                   "--device", "cpu", "--engine", "hf", "--hf-output-len", "3", "--warmup", "0"])
    assert run_hf(args, reqs)["output_tokens"] == 2 + 3 + 1
