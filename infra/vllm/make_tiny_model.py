"""Create `aob-tiny`: a randomly initialised Llama model and a byte-level BPE tokenizer, offline.

Usage (with the vLLM venv's python, which has torch, transformers and tokenizers):
    python infra/vllm/make_tiny_model.py OUT_DIR

The result (~0.6 MB) is deterministic: fixed seeds, and tokenizer training text generated here.
Its output is random text; it exists so the real vLLM server and client code can be exercised
without downloading weights. The chat template is ChatML with Hermes-style tools, so the server
can run with `--tool-call-parser hermes`. OUT_DIR is replaced atomically (written beside it,
then renamed), so a half-written model is never left in place.
"""

from __future__ import annotations

import random
import shutil
import sys
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

SEED = 0
VOCAB_SIZE = 512
MAX_POSITIONS = 2048  # an agent's prompt: ~600 tokens of tool definitions, then each round's call and results
EOS = "<|endoftext|>"
SPECIAL_TOKENS = [EOS, "<|im_start|>", "<|im_end|>"]
# Not special: they must survive decoding so the hermes parser can find tool calls in the text.
# "</tool_call>" is left out on purpose: as one token, a forced call's JSON string argument
# could hold it (the grammar allows any token without a quote), and the parser would cut the
# call there. Spelled out in pieces, it practically never turns up inside an argument.
TOOL_TOKENS = ["<tool_call>", "<tool_response>", "</tool_response>"]
# Raw control characters (tab, carriage return, ...) are not valid inside a JSON string, but the
# grammar vLLM builds for a string with a maxLength lets them through; without them in the
# vocabulary, forced tool calls always parse. Newline stays: the chat template needs it. (Input
# holding them loses them: the tokenizer drops characters it has no token for.)
NOT_IN_VOCABULARY = [chr(byte) for byte in range(32) if chr(byte) != "\n"]

CHAT_TEMPLATE = """\
{%- if tools -%}
<|im_start|>system
{% if messages and messages[0].role == 'system' %}{{ messages[0].content }}

{% endif %}# Tools

You may call one or more functions. Their signatures are within <tools></tools>:
<tools>
{% for tool in tools %}{{ tool | tojson }}
{% endfor %}</tools>

For each call, reply with a JSON object {"name": <name>, "arguments": <arguments>} \
within <tool_call></tool_call> tags.<|im_end|>
{% elif messages and messages[0].role == 'system' -%}
<|im_start|>system
{{ messages[0].content }}<|im_end|>
{% endif -%}
{%- for message in messages -%}
{%- if message.role == 'user' or (message.role == 'assistant' and not message.tool_calls) -%}
<|im_start|>{{ message.role }}
{{ message.content }}<|im_end|>
{% elif message.role == 'assistant' -%}
<|im_start|>assistant
{% if message.content %}{{ message.content }}
{% endif %}{% for call in message.tool_calls %}{% set call = call.function or call -%}
<tool_call>
{"name": "{{ call.name }}", "arguments": {{ call.arguments | tojson \
if call.arguments is mapping else call.arguments }}}
</tool_call>
{% endfor %}<|im_end|>
{% elif message.role == 'tool' -%}
<|im_start|>user
<tool_response>
{{ message.content }}
</tool_response><|im_end|>
{% endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
<|im_start|>assistant
{% endif -%}
"""

WORDS = (
    "the a an agent workflow step state tenant run policy quota lease token tool call function "
    "model request response event decision allow deny retry timeout error budget user assistant "
    "system message weather city name arguments result value list json string number true false "
    "lambda queue table record cache key lock time second minute limit reserve release check "
    "web search query results title url snippet calculator expression question answer facts"
)


def training_text(lines: int = 2000) -> list[str]:
    """Sentences, JSON fragments and chat markup from a fixed vocabulary, generated with a fixed seed."""
    rng = random.Random(SEED)
    vocabulary = WORDS.split()
    text = []
    for i in range(lines):
        words = " ".join(rng.choices(vocabulary, k=rng.randint(4, 14)))
        if i % 3 == 0:
            name, argument = rng.choice(vocabulary), rng.choice(vocabulary)
            text.append(f'{{"name": "{name}", "arguments": {{"{argument}": {i}}}}}')
        text.append(words.capitalize() + rng.choice(".?!"))
    return text


def _alphabet() -> list[str]:
    """ByteLevel's 256 characters (one per byte) less those of NOT_IN_VOCABULARY's bytes."""
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    left_out = {byte_level.pre_tokenize_str(char)[0][0] for char in NOT_IN_VOCABULARY}
    return sorted(set(pre_tokenizers.ByteLevel.alphabet()) - left_out)


def build_tokenizer() -> PreTrainedTokenizerFast:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE - len(TOOL_TOKENS),
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=_alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(training_text(), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=EOS,
        eos_token=EOS,
        pad_token=EOS,
        model_max_length=MAX_POSITIONS,
    )
    fast.add_tokens(TOOL_TOKENS)
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_model(tokenizer: PreTrainedTokenizerFast) -> LlamaForCausalLM:
    torch.manual_seed(SEED)
    eos_id = tokenizer.convert_tokens_to_ids(EOS)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        head_dim=32,  # the CPU attention backend refuses head sizes below 32
        max_position_embeddings=MAX_POSITIONS,
        bos_token_id=eos_id,
        eos_token_id=eos_id,
        pad_token_id=eos_id,
        tie_word_embeddings=False,
    )
    return LlamaForCausalLM(config).eval()


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    out = Path(argv[1])
    tmp = out.with_name(f"{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tokenizer = build_tokenizer()
    build_model(tokenizer).save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
