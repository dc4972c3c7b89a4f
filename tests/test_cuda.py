"""CUDA paths: run on a GPU machine (skipped where torch sees no CUDA device).

pytest -q tests/test_cuda.py
"""

import copy
import warnings

import pytest
import torch

from charseq import Pipeline
from charseq.builtins.cells import GRUCell, LSTMCell, RNNCell
from charseq.loop import unroll
from charseq.model import CellStack, CharModel

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.parametrize("cell_class", [RNNCell, LSTMCell, GRUCell])
def test_the_fused_cudnn_stack_equals_the_step_loop(cell_class):
    torch.manual_seed(0)
    cells = [cell_class(8, 16), cell_class(16, 16)]
    fused = CellStack(cells).cuda().eval()
    x = torch.randn(4, 12, 8, device="cuda")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. cuDNN's "weights are not ... contiguous" warning
        out, state = fused(x)
    h, layer_states = x, []
    for cell in fused.cells:
        h, s = unroll(cell, h)
        layer_states.append(s)
    torch.testing.assert_close(out, h, rtol=1e-4, atol=1e-5)
    for a, b in zip(state, layer_states, strict=True):
        for x_, y_ in zip(a, b, strict=True):
            torch.testing.assert_close(x_, y_, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("cell_class", [RNNCell, LSTMCell, GRUCell])
def test_weight_drop_on_cudnn_uses_one_mask_per_sequence(cell_class):
    """In training, cuDNN's fused stack with weight drop equals the step loop run with the
    masked W_hh that the same seed draws (one mask for every step)."""
    torch.manual_seed(0)
    cells = [cell_class(8, 16), cell_class(16, 16)]
    stack = CellStack(cells, weight_drop=0.5).cuda().train()
    x = torch.randn(4, 12, 8, device="cuda")
    torch.manual_seed(3)
    out, _ = stack(x)
    torch.manual_seed(3)
    masked = stack.dropped_weights()
    h = x
    for i, cell in enumerate(stack.cells):
        fixed = copy.deepcopy(cell)
        with torch.no_grad():
            fixed.weight_hh.copy_(masked[f"cells.{i}.weight_hh"])
        h, _ = unroll(fixed, h)
    torch.testing.assert_close(out, h, rtol=1e-4, atol=1e-5)


def test_train_on_cuda_save_and_load_on_cpu(tmp_path):
    spec = {"cell": {"hidden_size": 32}, "train": {"steps": 20, "batch_size": 8, "seq_len": 16}}
    pipe = Pipeline.from_spec(spec, device="cuda").fit("abcd efgh " * 100)
    assert next(pipe.model.parameters()).is_cuda
    pipe.save(tmp_path / "ckpt")
    cpu = Pipeline.load(tmp_path / "ckpt", device="cpu")
    assert not next(cpu.model.parameters()).is_cuda
    ids = torch.tensor([cpu.tokenizer.encode("abcd efgh abcd")])
    with torch.no_grad():
        on_gpu, _ = pipe.model.eval()(ids.cuda())
        on_cpu, _ = cpu.model.eval()(ids)
    torch.testing.assert_close(on_gpu.cpu(), on_cpu, rtol=1e-4, atol=1e-4)


def test_bf16_training_on_cuda_resumes_and_loads_on_cpu(tmp_path):
    spec = {
        "cell": {"hidden_size": 64},
        "train": {
            "steps": 30,
            "batch_size": 8,
            "seq_len": 32,
            "eval_every": 10,
            "precision": "bf16",
        },
    }
    text = "the quick brown fox jumps over the lazy dog. " * 200
    pipe = Pipeline.from_spec(spec, device="cuda").fit(text, out=tmp_path / "run", steps=20)
    assert pipe.last_run.step == 20 and pipe.last_run.best_val_bpc < 4.5
    resumed = Pipeline.resume(tmp_path / "run", text=text, steps=30, device="cuda")
    assert resumed.last_run.step == 30
    cpu = Pipeline.load(tmp_path / "run", device="cpu")
    assert cpu.steps_trained == 30 and len(cpu.generate("the", 10, seed=0)) == 10


@pytest.mark.parametrize("cell_class", [RNNCell, LSTMCell, GRUCell])
def test_on_cuda_generation_runs_the_torch_step(cell_class):
    """The numpy inference step is for CPU weights: on CUDA a cell's inference step is its
    step, and the model's inference step there agrees with the CPU's (numpy) one."""
    torch.manual_seed(0)
    cpu = CharModel(7, 5, [cell_class(5, 16), cell_class(16, 16)]).eval()
    gpu = CharModel(7, 5, [cell_class(5, 16), cell_class(16, 16)]).eval()
    gpu.load_state_dict(cpu.state_dict())
    gpu.cuda()
    assert all(c.inference_step() == c.step for c in gpu.stack.cells)
    ids = torch.tensor([3])
    with torch.no_grad():
        cpu_step, gpu_step = cpu.inference_step(), gpu.inference_step()
        cpu_state, gpu_state = cpu.initial_state(1), gpu.initial_state(1)
        for _ in range(5):
            cpu_logits, cpu_state = cpu_step(ids, cpu_state)
            gpu_logits, gpu_state = gpu_step(ids.cuda(), gpu_state)
            torch.testing.assert_close(gpu_logits.cpu(), cpu_logits, rtol=1e-3, atol=1e-4)
