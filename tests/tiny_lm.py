"""A tiny chat causal LM built in code (no hub): a 2-layer Llama with a WordPiece chat tokenizer.

Saved as an ordinary Hugging Face folder, so the code under test loads it exactly as it loads
SmolLM2: ``AutoTokenizer``/``AutoModelForCausalLM.from_pretrained(folder)``, ChatML template.
The weights are random (seeded): answers are word salad from ``tests/fixtures/tiny_vocab.txt``,
which is all a test of the serving path needs. Building one takes well under a second.
"""

from __future__ import annotations

from pathlib import Path

VOCAB = Path(__file__).resolve().parent / "fixtures" / "tiny_vocab.txt"
IM_START, IM_END = "<|im_start|>", "<|im_end|>"
CHATML = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def build_tiny_chat_lm(folder: Path, *, seed: int = 0, min_new_tokens: int = 3) -> Path:
    """Write a tiny random chat LM into `folder` (created) and return it.

    Args:
        folder: Target folder; its name becomes part of the gateway's ``local-<name>`` version.
        seed: Seeds the weights, so two builds are identical.
        min_new_tokens: Saved in the generation config, so an answer is never empty.
    """
    import torch
    from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers
    from tokenizers.models import WordPiece
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(VOCAB.read_text().splitlines())}
    core = Tokenizer(WordPiece(vocab, unk_token="[UNK]"))
    core.normalizer = normalizers.BertNormalizer(lowercase=True)
    core.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    core.decoder = decoders.WordPiece()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="[UNK]", pad_token="[PAD]",
                                        eos_token=IM_END, bos_token=IM_START,
                                        additional_special_tokens=[IM_START, IM_END])
    tokenizer.chat_template = CHATML
    tokenizer.model_max_length = 512
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(eos_token_id=tokenizer.eos_token_id,
                                               pad_token_id=tokenizer.pad_token_id, min_new_tokens=min_new_tokens)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
