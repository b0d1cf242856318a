"""Reading a rank's part of a safetensors checkpoint: byte ranges, dtypes, several files, what is missing."""

import pytest
import torch
from safetensors.torch import save_file

from ftbench.data import sources
from ftbench.train import methods, weights


def test_a_range_of_elements_is_read_in_any_dtype_from_several_files(tmp_path):
    a = torch.arange(24, dtype=torch.float32).reshape(6, 4)
    b = torch.linspace(-1, 1, 10).to(torch.bfloat16)
    save_file({"a": a}, tmp_path / "model-00001-of-00002.safetensors")
    save_file({"b": b}, tmp_path / "model-00002-of-00002.safetensors")
    ckpt = weights.Checkpoint(tmp_path)
    rows = torch.empty(2, 4)
    ckpt.read("a", 8, rows)  # rows 2..3: a contiguous run of the flattened tensor, read in place
    assert torch.equal(rows, a[2:4])
    wide = torch.empty(3, dtype=torch.float32)  # bf16 on disk, fp32 in memory
    ckpt.read("b", 5, wide)
    assert torch.equal(wide, b[5:8].float())
    with pytest.raises(ValueError, match=r"b: elements \[8, 11\) outside its 10"):
        ckpt.read("b", 8, wide)
    ckpt.close()


def test_a_truncated_file_is_refused_naming_it(tmp_path):
    save_file({"a": torch.ones(1000)}, tmp_path / "model.safetensors")
    data = (tmp_path / "model.safetensors").read_bytes()
    (tmp_path / "model.safetensors").write_bytes(data[:-100])
    with pytest.raises(OSError, match=r"model.safetensors: file ends before byte"):
        weights.Checkpoint(tmp_path).read("a", 0, torch.empty(1000))


def test_no_safetensors_no_load(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no \*\.safetensors file"):
        weights.Checkpoint(tmp_path)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("weights")
    sources.prepare_dataset("builtin:customer_support", root / "data", num_rows=200, seed=0)
    sources.train_tokenizer("builtin:bpe-400", root / "data", "{instruction}\n{response}", root / "tok")
    arch = {"hidden_size": 32, "num_layers": 2, "num_heads": 2, "intermediate_size": 64, "max_positions": 64}
    for family in ("llama", "gpt2"):
        model = {"name": family, "source": f"config:{family}", "architecture": arch}
        sources.prepare_model(model, root / "tok", root / family, 0)
    return root


@pytest.fixture
def model_dir(models):
    return models / "llama"


@pytest.mark.parametrize("family", ["llama", "gpt2"])
@pytest.mark.parametrize("method", ["full", "lora"])
def test_a_meta_model_filled_from_the_files_is_from_pretrained(models, family, method):
    """Weights, LoRA adapters, tied embeddings (GPT-2) and the buffers no checkpoint holds (rotary
    frequencies, GPT-2's causal mask) as plain loading gives them."""
    from transformers import AutoModelForCausalLM

    w = weights.Weights(models / family, method, {}, seed=3)
    built = w.empty()
    assert all(p.is_meta for p in built.parameters())
    w.materialize(built, torch.device("cpu"))
    plain = methods.apply(AutoModelForCausalLM.from_pretrained(models / family, dtype=torch.float32), method, {})
    weights.init_adapters(plain, seed=3)
    tied = [m.get_output_embeddings().weight is m.get_input_embeddings().weight for m in (built, plain)]
    assert tied[0] == tied[1] == (family == "gpt2")
    tokens = torch.randint(0, 300, (2, 16))
    built.eval(), plain.eval()  # GPT-2 has dropout
    assert torch.equal(built(input_ids=tokens).logits, plain(input_ids=tokens).logits)
    assert dict(built.named_buffers()).keys() == dict(plain.named_buffers()).keys()
    for (name, a), b in zip(built.named_buffers(), plain.buffers(), strict=True):
        assert torch.equal(a, b), name


def test_a_parameter_the_files_lack_is_an_error_naming_it(model_dir, tmp_path):
    from safetensors.torch import load_file

    tensors = load_file(model_dir / "model.safetensors")
    del tensors["model.norm.weight"]
    for f in model_dir.iterdir():
        if f.suffix != ".safetensors":
            (tmp_path / f.name).write_bytes(f.read_bytes())
    save_file(tensors, tmp_path / "model.safetensors")
    w = weights.Weights(tmp_path, "full", {}, seed=0)
    with pytest.raises(ValueError, match=r"holds no tensor for parameter model\.norm\.weight"):
        w.materialize(w.empty(), torch.device("cpu"))
