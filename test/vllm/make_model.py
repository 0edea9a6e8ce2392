"""Makes the real-vLLM tier's model, with nothing downloaded: a tiny Llama (config, a byte-level BPE
tokenizer trained here, random weights) in OUT/tiny, and two random rank-8 LoRA adapters for it in
OUT/lora-a and OUT/lora-b. Its output is noise; the server, scheduler, prefix cache, metrics, shutdown
and LoRA machinery that serve it are vLLM's own.

    python make_model.py OUT

Sizes: hidden 128 with 4 heads of 32 (the CPU attention backend takes head sizes 32, 64, 80, ...),
2 layers, a vocabulary of about 460 tokens, 2048 positions.
"""
import json
import os
import random
import sys

import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

HIDDEN, INTERMEDIATE, LAYERS, HEADS, KV_HEADS, HEAD_DIM, RANK = 128, 256, 2, 4, 2, 32, 8
SPECIALS = ["<unk>", "<s>", "</s>", "<pad>", "<|im_start|>", "<|im_end|>"]
WORDS = ("the a an cat dog bird fish runs jumps sleeps eats quickly slowly red blue green big small hello world "
         "model token server request reply user assistant system yes no one two three four five what is how why "
         "when where tell me about story day night sun moon tree river city").split()
CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")


def write_json(path, value):
    with open(path, "w") as f:
        json.dump(value, f, indent=2)


def tokenizer(out):
    rng = random.Random(0)
    text = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 30))) + rng.choice(".?!") for _ in range(5000)]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.train_from_iterator(text, trainers.BpeTrainer(vocab_size=512, special_tokens=SPECIALS, min_frequency=1,
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    tok.save(os.path.join(out, "tokenizer.json"))
    write_json(os.path.join(out, "tokenizer_config.json"), {
        "tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
        "pad_token": "<pad>", "add_bos_token": False, "add_eos_token": False, "model_max_length": 2048,
        "clean_up_tokenization_spaces": False, "chat_template": CHAT_TEMPLATE,
        "added_tokens_decoder": {str(tok.token_to_id(s)): {"content": s, "special": True, "lstrip": False, "rstrip": False,
                                                           "normalized": False, "single_word": False} for s in SPECIALS},
    })
    write_json(os.path.join(out, "special_tokens_map.json"), {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"})
    return tok


def model(out):
    os.makedirs(out, exist_ok=True)
    tok = tokenizer(out)
    vocab = tok.get_vocab_size()
    bos, eos, pad, im_end = (tok.token_to_id(s) for s in ("<s>", "</s>", "<pad>", "<|im_end|>"))
    write_json(os.path.join(out, "config.json"), {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": HIDDEN, "intermediate_size": INTERMEDIATE,
        "num_hidden_layers": LAYERS, "num_attention_heads": HEADS, "num_key_value_heads": KV_HEADS, "head_dim": HEAD_DIM,
        "vocab_size": vocab, "max_position_embeddings": 2048, "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "hidden_act": "silu",
        "tie_word_embeddings": False, "bos_token_id": bos, "eos_token_id": eos, "pad_token_id": pad, "torch_dtype": "float32",
        "initializer_range": 0.02, "attention_bias": False, "mlp_bias": False,
    })
    write_json(os.path.join(out, "generation_config.json"), {"bos_token_id": bos, "eos_token_id": [eos, im_end], "pad_token_id": pad, "do_sample": False})
    torch.manual_seed(0)
    weights = {"model.embed_tokens.weight": torch.randn(vocab, HIDDEN) * 0.02, "model.norm.weight": torch.ones(HIDDEN),
               "lm_head.weight": torch.randn(vocab, HIDDEN) * 0.02}
    for i in range(LAYERS):
        p = f"model.layers.{i}."
        weights[p + "input_layernorm.weight"] = torch.ones(HIDDEN)
        weights[p + "post_attention_layernorm.weight"] = torch.ones(HIDDEN)
        weights[p + "self_attn.q_proj.weight"] = torch.randn(HEADS * HEAD_DIM, HIDDEN) * 0.02
        weights[p + "self_attn.k_proj.weight"] = torch.randn(KV_HEADS * HEAD_DIM, HIDDEN) * 0.02
        weights[p + "self_attn.v_proj.weight"] = torch.randn(KV_HEADS * HEAD_DIM, HIDDEN) * 0.02
        weights[p + "self_attn.o_proj.weight"] = torch.randn(HIDDEN, HEADS * HEAD_DIM) * 0.02
        weights[p + "mlp.gate_proj.weight"] = torch.randn(INTERMEDIATE, HIDDEN) * 0.02
        weights[p + "mlp.up_proj.weight"] = torch.randn(INTERMEDIATE, HIDDEN) * 0.02
        weights[p + "mlp.down_proj.weight"] = torch.randn(HIDDEN, INTERMEDIATE) * 0.02
    save_file(weights, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})


def adapter(out, base, seed):
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(seed)
    write_json(os.path.join(out, "adapter_config.json"), {
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "r": RANK, "lora_alpha": 16, "lora_dropout": 0.0,
        "target_modules": ["q_proj", "v_proj"], "bias": "none", "fan_in_fan_out": False, "modules_to_save": None,
        "use_rslora": False, "use_dora": False, "base_model_name_or_path": base, "inference_mode": True,
    })
    weights = {}
    for i in range(LAYERS):
        for module, rows in (("q_proj", HEADS * HEAD_DIM), ("v_proj", KV_HEADS * HEAD_DIM)):
            p = f"base_model.model.model.layers.{i}.self_attn.{module}."
            weights[p + "lora_A.weight"] = torch.randn(RANK, HIDDEN) * 0.1
            weights[p + "lora_B.weight"] = torch.randn(rows, RANK) * 0.1
    save_file(weights, os.path.join(out, "adapter_model.safetensors"), metadata={"format": "pt"})


if __name__ == "__main__":
    root = sys.argv[1]
    model(os.path.join(root, "tiny"))
    adapter(os.path.join(root, "lora-a"), os.path.join(root, "tiny"), 1)
    adapter(os.path.join(root, "lora-b"), os.path.join(root, "tiny"), 2)
    print("made", root, sorted(os.listdir(root)))
