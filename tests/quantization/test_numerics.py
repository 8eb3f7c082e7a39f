"""Reference numerics: bit-exact against ModelOpt's own export functions, E2M1 table, packing order, error bounds."""

import pytest
import torch

from ember.quantization.numerics import fp8, int4, int8, nvfp4

mo_nvfp4 = pytest.importorskip("modelopt.torch.quantization.qtensor.nvfp4_tensor")
from modelopt.torch.export import quant_utils  # noqa: E402
from modelopt.torch.quantization.qtensor.fp8_tensor import FP8QTensor  # noqa: E402
from modelopt.torch.quantization.qtensor.int8_tensor import INT8QTensor  # noqa: E402

DTYPES = [torch.float32, torch.bfloat16, torch.float16]


def weight(n=64, k=256, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(n, k, generator=g) * torch.rand(n, 1, generator=g) * 4  # rows of different magnitude
    w[5, :32] = 0  # an all-zero block / group
    return w.to(dtype)


def same_bits(a, b):
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(a.view(torch.uint8), b.view(torch.uint8))


@pytest.mark.parametrize("dtype", DTYPES)
def test_nvfp4_matches_modelopt(dtype):
    w = weight(dtype=dtype)
    q, s, s2 = nvfp4.quantize(w)
    mq, ms, ms2 = mo_nvfp4.NVFP4QTensor.quantize(w.clone(), 16)
    assert same_bits(q, mq._quantized_data) and same_bits(s, ms) and torch.equal(s2, ms2)
    # the export path: weight_scale from get_weights_scaling_factor, packing from to_quantized_weight
    es, _ = mo_nvfp4.NVFP4QTensor.get_weights_scaling_factor(w, 16, ms2)
    eq = quant_utils.to_quantized_weight(w, es, quant_utils.QUANTIZATION_NVFP4, ms2, 16)
    assert same_bits(s, es) and same_bits(q, eq)
    md = mq.dequantize(dtype=torch.float32, scale=ms, double_scale=ms2, block_sizes={-1: 16})
    assert torch.equal(nvfp4.dequantize(q, s, s2), md)


def test_e2m1_table_and_rounding():
    assert nvfp4.E2M1_VALUES == tuple(mo_nvfp4.e2m1_values.tolist())
    x = torch.tensor([0, 0.24, 0.25, 0.26, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0, 5.1, 7.0, -0.1, -0.75, -6.5, 6.0])
    want = [0, 0, 0, 1, 2, 2, 4, 4, 6, 6, 7, 7, 8, 10, 15, 7]
    assert nvfp4.e2m1_codes(x).tolist() == want
    assert mo_nvfp4.NVFP4QTensor._cast_fp4(x.clone()).tolist() == want
    for code, value in enumerate(nvfp4.E2M1_VALUES):  # every value is its own code (zeros aside)
        if value != 0:
            assert nvfp4.e2m1_codes(torch.tensor([value])).item() == code


def test_nvfp4_nibble_order_hand_checked():
    codes = torch.tensor([[1, 2, 3, 15] * 4], dtype=torch.uint8)  # [1, 16]
    packed = nvfp4.pack(codes)
    assert packed[0, :2].tolist() == [0x21, 0xF3]  # element 2j low nibble, 2j+1 high
    assert torch.equal(nvfp4.unpack(packed), codes)
    # a block whose amax is 6 * 448 * scale_2: block scale 448, values land exactly on the E2M1 grid
    w = torch.tensor([[6.0, -3.0, 0.5, 1.0] + [0.0] * 12]) * 100
    q, s, s2 = nvfp4.quantize(w)
    assert s2.item() == pytest.approx(600 / 2688) and s.float().item() == 448.0
    assert q[0, :2].tolist() == [0x7 | (0xD << 4), 0x1 | (0x2 << 4)]
    assert torch.allclose(nvfp4.dequantize(q, s, s2), w, rtol=0, atol=1e-4)


def test_nvfp4_round_trip_bound():
    w = weight()
    q, s, s2 = nvfp4.quantize(w)
    err = (nvfp4.dequantize(q, s, s2) - w).abs().reshape(64, -1, 16)
    # half the widest E2M1 gap (2 at the top) times the block scale, plus the e4m3 rounding of the scale (6.25%)
    bound = (s.float() * s2).unsqueeze(-1) * 1.0 + w.abs().reshape(64, -1, 16).amax(-1, keepdim=True) * 0.0625
    assert (err <= bound + 1e-6).all()
    assert (nvfp4.dequantize(q, s, s2) - w).pow(2).mean() / w.pow(2).mean() < 0.02


@pytest.mark.parametrize("dtype", DTYPES)
def test_fp8_per_tensor_matches_modelopt(dtype):
    w = weight(dtype=dtype)
    q, s = fp8.quantize_per_tensor(w)
    assert s.dtype == torch.float32 and s == w.abs().max().float() / 448
    eq = quant_utils.to_quantized_weight(w, s.reshape(1), quant_utils.QUANTIZATION_FP8)  # export: [1] fp32 scale
    assert same_bits(q, eq)
    if dtype == torch.float32:  # FP8QTensor keeps the scale in the weight's dtype, so only fp32 matches it
        mq, ms = FP8QTensor.quantize(w, axis=None)
        assert same_bits(q, mq._quantized_data) and torch.equal(s, ms.float())
    assert torch.allclose(fp8.dequantize(q, s), w.float(), rtol=2**-4, atol=float(s) * 2**-9)


@pytest.mark.parametrize("dtype", DTYPES)
def test_fp8_per_channel_matches_modelopt(dtype):
    w = weight(dtype=dtype)
    q, s = fp8.quantize_per_channel(w)
    assert s.shape == (64,) and s[5] > 0
    eq = quant_utils.to_quantized_weight(w, s, quant_utils.QUANTIZATION_FP8_PC_PT)
    assert same_bits(q, eq)
    w_hat = fp8.dequantize(q, s)
    assert ((w_hat - w.float()).abs() <= w.float().abs() * 2**-4 + s[:, None] * 2**-9).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_int8_matches_modelopt(dtype):
    w = weight(dtype=dtype)
    q, s = int8.quantize(w)
    eq = quant_utils.to_quantized_weight(w, s, quant_utils.QUANTIZATION_INT8_SQ)
    mq, _ = INT8QTensor.quantize(w, scales=s[:, None])
    assert torch.equal(q, eq) and torch.equal(q, mq._quantized_data)
    assert ((int8.dequantize(q, s) - w.float()).abs() <= s[:, None] / 2 + 1e-6).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_int4_awq_packing_matches_modelopt(dtype):
    w = weight(dtype=dtype)
    packed, s = int4.quantize(w, 128)
    assert packed.dtype == torch.uint8 and packed.shape == (32, 256) and s.shape == (64, 2) and s.dtype == torch.float32
    assert torch.equal(packed, quant_utils.pack_int4_in_uint8(w, s, 128))
    assert torch.equal(packed, quant_utils.to_quantized_weight(w, s, quant_utils.QUANTIZATION_INT4_AWQ, None, 128))
    err = int4.dequantize(packed, s) - w.float()
    assert (err.abs() <= s.repeat_interleave(128, 1) / 2 + 1e-6).all()


def test_int4_nibble_order_hand_checked():
    q = torch.tensor([[1, -8], [-1, 7]], dtype=torch.int8)  # rows 0 and 1 share bytes
    packed = int4.pack(q)
    assert packed.tolist() == [[0x01 | (0x0F << 4), 0x08 | (0x07 << 4)]]
    assert torch.equal(int4.unpack(packed), q)


def test_bad_shapes_say_why():
    with pytest.raises(ValueError, match="divisible by 128"):
        int4.quantize(torch.randn(4, 100))
    with pytest.raises(ValueError, match="divisible by 16"):
        nvfp4.quantize(torch.randn(4, 24))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run on the GPU machine)")
@pytest.mark.parametrize("dtype", DTYPES)
def test_nvfp4_matches_modelopt_fake_quant_on_cuda(dtype):
    """ModelOpt's NVFP4_DEFAULT fake quantization (dynamic block quantization, CUDA only) of a calibrated Linear
    against ember's CPU reference, plus ModelOpt's export packing run on CUDA."""
    import modelopt.torch.quantization as mtq

    w = weight(256, 512, dtype=dtype)
    lin = torch.nn.Linear(512, 256, bias=False).to("cuda", dtype)
    with torch.no_grad():
        lin.weight.copy_(w.cuda())
    x = torch.randn(4, 512, device="cuda", dtype=dtype)
    mtq.quantize(lin, mtq.NVFP4_DEFAULT_CFG, forward_loop=lambda m: m(x))
    with torch.no_grad():
        fake = lin.weight_quantizer(lin.weight).float().cpu()
    q, s, s2 = nvfp4.quantize(w)
    # the export path, run on CUDA: bit-exact
    mq, ms, ms2 = mo_nvfp4.NVFP4QTensor.quantize(w.cuda(), 16)
    assert same_bits(q, mq._quantized_data.cpu()) and same_bits(s, ms.cpu()) and torch.equal(s2, ms2.cpu())
    # the fake-quant Triton kernel divides with Triton's approximate fp32 division, so a value that lands exactly
    # on a rounding boundary (0.25, 0.75, ... after scaling; common in bf16) may round the other way there:
    # every difference must be such a tie, and there must be few
    ours = nvfp4.dequantize(q, s, s2, dtype=dtype).float()
    differ = ours != fake
    scaled = (w.float().reshape(256, -1, 16).abs() / (s.float() * s2).unsqueeze(-1)).reshape(256, 512)
    bounds = torch.tensor([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0])
    tie = ((scaled.unsqueeze(-1) - bounds).abs() <= bounds * 1e-6).any(-1)
    print(f"{dtype}: {int(differ.sum())} of {w.numel()} differ from ModelOpt fake quant, {int(tie.sum())} ties")
    assert not (differ & ~tie).any(), f"{dtype}: {int((differ & ~tie).sum())} non-tie elements differ"
    assert differ.sum() <= w.numel() * 1e-3
