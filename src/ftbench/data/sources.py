"""Sources: each ends in a directory plus a manifest (source, revision or seed, file hashes).

Built-in kinds (no network): `builtin:customer_support` rows, `builtin:bpe-<vocab>` tokenizers trained on
the dataset, and `config:llama` / `config:gpt2` models random-initialised from a few numbers. The hub and
local kinds are fetched by `ftbench.data.download`; whatever the kind, `load_rows` reads a dataset directory and
`render_documents` turns its rows into documents (`dataset.format`: columns, messages or text).
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import string
from dataclasses import dataclass, fields
from pathlib import Path

from ftbench.errors import ConfigError
from ftbench.files import atomic_write_text, read_json, write_manifest
from ftbench.plan.config import bpe_vocab_size

log = logging.getLogger(__name__)

DATA_FILE = "data.jsonl"
EOS = "<|endoftext|>"


def prepare_dataset(source: str, out_dir: str | Path, num_rows: int, seed: int) -> dict:
    """Materialise a dataset source as `data.jsonl` + manifest in `out_dir`."""
    from ftbench.data.builtin_data import customer_support_rows

    if source != "builtin:customer_support":
        raise ConfigError(f"dataset.source: unsupported source {source!r}")
    out_dir = Path(out_dir)
    rows = customer_support_rows(num_rows, seed)
    atomic_write_text(out_dir / DATA_FILE, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
    log.info("wrote %d rows to %s", len(rows), out_dir / DATA_FILE)
    return write_manifest(out_dir, kind="dataset", source=source, revision="builtin-v1", seed=seed, rows=len(rows))


DATA_EXTENSIONS = ("parquet", "jsonl", "json", "csv", "txt")
"""Dataset files the hub and local sources read, by extension."""
SAMPLE_BY = ("line", "paragraph", "document")
"""How a txt file is cut into rows of one `text` column (the names of the `datasets` text loader)."""

TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "chat_template.jinja",
    "chat_template.json",
    "tokenizer.model",
    "spiece.model",
    "vocab.json",
    "merges.txt",
    "vocab.txt",
)
"""The files of a Hugging Face tokenizer (glob patterns, top level of a model directory)."""

DEFAULT_TEMPLATE = "### Instruction:\n{instruction}\n\n### Response:\n{response}"
DEFAULT_MESSAGE_TEMPLATE = "<|{role}|>\n{content}\n"
FORMATS = ("columns", "messages", "text")


def _text_rows(text: str, sample_by: str) -> list[dict]:
    if sample_by == "line":
        pieces = text.splitlines()
    elif sample_by == "paragraph":
        pieces = re.split(r"\n\s*\n", text)
    elif sample_by == "document":
        pieces = [text]
    else:
        raise ConfigError(f"dataset.sample_by: {sample_by!r} is not one of {list(SAMPLE_BY)}")
    return [{"text": piece.strip("\n")} for piece in pieces if piece.strip()]


def _json_lines(text: str) -> list:
    """One JSON value per non-blank line; a line that does not parse is reported with its line in the file."""
    rows = []
    for i, line in enumerate(text.splitlines()):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:  # json.loads saw the line alone: its line 1 is line i + 1 here
                e.lineno = i + 1
                raise
    return rows


def _decode(path: Path, data: bytes) -> str:
    """UTF-8 text of a dataset file; other bytes are a config error naming the file, the offset and the line."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise ConfigError(
            f"dataset file {path}: not UTF-8 at byte offset {e.start} (line {line}): byte "
            f"0x{data[e.start]:02x}, {e.reason}; re-encode the file as UTF-8"
        ) from None


def _records(path: Path, rows) -> list[dict]:
    """json/jsonl rows must be objects (one record each); anything else is named with its line."""
    if not isinstance(rows, list):
        raise ConfigError(f"dataset file {path}: a JSON {type(rows).__name__}, not records (objects)")
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise ConfigError(
                f"dataset file {path}: record {i + 1} is a JSON {type(row).__name__}, not an object of columns"
            )
    return rows


def read_rows(path: str | Path, sample_by: str = "paragraph") -> list[dict]:
    """The rows of one dataset file: parquet and csv through polars, json/jsonl as records, txt as `text` rows.
    An empty file, bytes that are not UTF-8 and JSON that is not records are config errors naming the file."""
    import polars as pl

    path = Path(path)
    suffix = path.suffix.lower().lstrip(".")
    if suffix not in DATA_EXTENSIONS:
        raise ConfigError(f"dataset: cannot read {path} (supported: {', '.join(DATA_EXTENSIONS)})")
    if path.stat().st_size == 0:
        raise ConfigError(f"dataset file {path} is empty (0 bytes); remove it or narrow dataset.files")
    if suffix == "parquet":
        return pl.read_parquet(path).to_dicts()
    if suffix == "csv":  # every column as text, as a template renders it
        try:
            return pl.read_csv(path, infer_schema=False).to_dicts()
        except Exception as e:
            _decode(path, path.read_bytes())  # names the offending byte when that is the cause
            raise ConfigError(f"dataset file {path}: not readable as csv ({_first_line(e)})") from e
    text = _decode(path, path.read_bytes())
    if not text.strip():
        raise ConfigError(f"dataset file {path} holds only whitespace; remove it or narrow dataset.files")
    if suffix == "txt":
        return _text_rows(text, sample_by)
    try:
        if text.lstrip().startswith("["):  # a JSON array of records; otherwise one record per line
            return _records(path, json.loads(text))
        return _records(path, _json_lines(text))
    except json.JSONDecodeError as e:
        raise ConfigError(f"dataset file {path}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from None


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def load_rows(dataset_dir: str | Path) -> list[dict]:
    """Every row of a prepared dataset directory, files in manifest order (`data.jsonl` for builtin sources)."""
    dataset_dir = Path(dataset_dir)
    manifest_path = dataset_dir / "manifest.json"
    manifest = read_json(manifest_path) if manifest_path.exists() else {}
    rows = []
    names = manifest.get("data_files", [DATA_FILE])
    for name in names:
        rows.extend(read_rows(dataset_dir / name, manifest.get("sample_by", "paragraph")))
    if not rows:
        raise ConfigError(f"dataset {dataset_dir}: no rows in {names}")
    return rows


def tokenizer_files(directory: str | Path) -> list[Path]:
    """The tokenizer files at the top of `directory`."""
    directory = Path(directory)
    return sorted({p for pattern in TOKENIZER_FILES for p in directory.glob(pattern) if p.is_file()})


def template_fields(template: str) -> list[str]:
    return [name for _, name, _, _ in string.Formatter().parse(template) if name]


@dataclass(frozen=True)
class Render:
    """How rows become documents: the `dataset.*` keys the tokenizer and the token cache depend on."""

    format: str = "columns"
    """`columns`: `template` over the row's columns; `messages`: `message_template` over each message of
    `messages_column`, concatenated; `text`: the `text` column as it is."""
    template: str = DEFAULT_TEMPLATE
    messages_column: str = "messages"
    message_template: str = DEFAULT_MESSAGE_TEMPLATE

    @classmethod
    def from_dataset(cls, dataset: dict) -> Render:
        """From the validated `dataset` config section."""
        return cls(**{f.name: dataset[f.name] for f in fields(cls) if f.name in dataset})


def _missing(key: str, what: str, missing: list[str], available) -> ConfigError:
    return ConfigError(f"{key}: {what} {missing} not in the dataset (columns: {sorted(available)})")


def _blank_none(values: dict) -> dict:
    return {k: "" if v is None else v for k, v in values.items()}


def _format(template: str, values: dict, key: str, where: str) -> str:
    try:
        return template.format_map(_blank_none(values))
    except KeyError as e:
        raise ConfigError(f"{key}: {where} has no column {e.args[0]!r} (columns: {sorted(values)})") from None


def _format_rows(template: str, rows: list[dict]) -> list[str]:
    """`_format` over every row, without its per-row Python layers; on any error the per-row path runs again
    and reports it as before (a missing column, a bad format spec)."""
    fmt = template.format_map
    try:
        return [fmt(row if None not in row.values() else _blank_none(row)) for row in rows]
    except Exception:
        return [_format(template, row, "dataset.template", f"row {i}") for i, row in enumerate(rows)]


def _render_messages(row: dict, i: int, render: Render) -> str:
    messages = row[render.messages_column]
    if not isinstance(messages, list):
        raise ConfigError(
            f"dataset.messages_column: row {i} column {render.messages_column!r} is "
            f"{type(messages).__name__}, not a list of {{role, content}}"
        )
    return "".join(
        _format(render.message_template, message, "dataset.message_template", f"row {i} message {j}")
        for j, message in enumerate(messages)
    )


def render_documents(rows: list[dict], template: str | Render) -> list[str]:
    """One document per row (empty ones dropped); a column the format needs but the rows lack is a config
    error naming it. A plain string is a `columns` template."""
    render = template if isinstance(template, Render) else Render(template=template)
    if render.format not in FORMATS:
        raise ConfigError(f"dataset.format: {render.format!r} is not one of {list(FORMATS)}")
    if not rows:
        return []
    columns = rows[0].keys()
    if render.format == "columns":
        missing = [f for f in template_fields(render.template) if f not in columns]
        if missing:
            raise _missing("dataset.template", "column(s)", missing, columns)
        docs = _format_rows(render.template, rows)
    elif render.format == "messages":
        if render.messages_column not in columns:
            raise _missing("dataset.messages_column", "column", [render.messages_column], columns)
        docs = (_render_messages(row, i, render) for i, row in enumerate(rows))
    else:
        if "text" not in columns:
            raise ConfigError(f"dataset.format: text needs a 'text' column (columns: {sorted(columns)})")
        docs = (row["text"] or "" for row in rows)
    documents = [doc for doc in docs if doc.strip()]
    if len(documents) < len(rows):
        log.info("dropped %d empty documents of %d rows", len(rows) - len(documents), len(rows))
    return documents


def train_tokenizer(source: str, dataset_dir: str | Path, template: str, out_dir: str | Path) -> dict:
    """Train a byte-level BPE on the rendered dataset and save it in Hugging Face format."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    vocab = bpe_vocab_size(source)
    docs = render_documents(load_rows(dataset_dir), template)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(docs, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, bos_token=EOS, unk_token=EOS)
    out_dir = Path(out_dir)
    fast.save_pretrained(out_dir)
    dataset_manifest = read_json(Path(dataset_dir) / "manifest.json")
    log.info("trained %s: %d tokens in vocabulary", source, len(fast))
    return write_manifest(
        out_dir, kind="tokenizer", source=source, dataset=dataset_manifest["files"], vocab_size=len(fast)
    )


def _architecture_config(family: str, arch: dict, tokenizer):
    from transformers import GPT2Config, LlamaConfig

    common = dict(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.eos_token_id,
    )
    max_positions = arch.get("max_positions", 1024)
    if family == "llama":
        return LlamaConfig(
            hidden_size=arch["hidden_size"],
            num_hidden_layers=arch["num_layers"],
            num_attention_heads=arch["num_heads"],
            num_key_value_heads=arch["num_heads"],
            intermediate_size=arch["intermediate_size"],
            max_position_embeddings=max_positions,
            tie_word_embeddings=False,
            **common,
        )
    if family == "gpt2":
        return GPT2Config(
            n_embd=arch["hidden_size"],
            n_layer=arch["num_layers"],
            n_head=arch["num_heads"],
            n_inner=arch["intermediate_size"],
            n_positions=max_positions,
            **common,
        )
    raise ConfigError(f"models[].source: unknown architecture family config:{family}")


def prepare_model(model: dict, tokenizer_dir: str | Path, out_dir: str | Path, seed: int) -> dict:
    """Random-initialise a `config:<family>` model (seeded) and save it with its tokenizer, HF format."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kind, _, family = model["source"].partition(":")
    if kind != "config":
        raise ConfigError(f"models[{model['name']}].source: unsupported source {model['source']!r}")
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    cfg = _architecture_config(family, model["architecture"], tokenizer)
    torch.manual_seed(seed)
    net = AutoModelForCausalLM.from_config(cfg)
    out_dir = Path(out_dir)
    net.save_pretrained(out_dir, safe_serialization=True)
    for path in tokenizer_files(tokenizer_dir):  # the very bytes the token cache was fingerprinted with
        shutil.copy2(path, out_dir / path.name)
    n_params = sum(p.numel() for p in net.parameters())
    log.info("initialised %s (%s): %.2fM parameters", model["name"], model["source"], n_params / 1e6)
    return write_manifest(
        out_dir,
        kind="model",
        source=model["source"],
        seed=seed,
        architecture=model["architecture"],
        parameters=n_params,
    )
