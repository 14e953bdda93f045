"""Tokenizes text files once into a prepared token dataset for `--config.data.prepared=DATA_DIR`.

  python -m experiments.prepare_data --input=stdlib --output=data/stdlib --tokenizer=bpe --vocab_size=4096
  python -m experiments.prepare_data --input=corpus_dir --output=data/corpus --tokenizer=bpe --vocab_size=32768
  python -m experiments.prepare_data --input=a.txt,b.jsonl --output=data/ab --tokenizer=byte

Directories are walked recursively; *.jsonl files contribute each record's --text_field. Empty,
binary and non-UTF-8 files are named and skipped. Killed at any point, the same command finishes the
job, keeping the shards already written (aigc_jax/data/prepare.py).
"""
import sys

from absl import app, flags
from tqdm import tqdm

from aigc_jax.data import prepare
from aigc_jax.data.text import DataError
from aigc_jax.data.tokenizers import UnknownCharactersError
from aigc_jax.files import DiskFull

flags.DEFINE_list("input", None, "Text or JSONL files, or directories of them (comma-separated); `stdlib` is the "
                  "embedded corpus (the Python standard library's top-level sources).")
flags.DEFINE_string("output", None, "The dataset directory to write (or to finish writing).")
flags.DEFINE_enum("tokenizer", "bpe", ["bpe", "byte"], "Byte-level BPE learnt on the inputs, or UTF-8 bytes.")
flags.DEFINE_integer("vocab_size", 4096, "BPE vocabulary size (more than 256).")
flags.DEFINE_string("tokenizer_from", "", "Use this run's workdir (or tokenizer.json) tokenizer instead of learning one.")
flags.DEFINE_float("val_fraction", 0.01, "The last fraction of each shard's tokens held out for validation.")
flags.DEFINE_integer("unit_mb", 16, "Megabytes of text per shard.")
flags.DEFINE_integer("sample_mb", 32, "Megabytes of text the BPE vocabulary is learnt from.")
flags.DEFINE_integer("workers", 0, "Tokenizing processes (0: one per usable core).")
flags.DEFINE_string("text_field", "text", "The field of each JSONL record that holds its text.")
flags.mark_flags_as_required(["input", "output"])


def main(argv):
    del argv
    try:
        prepare.prepare(flags.FLAGS.input, flags.FLAGS.output, tokenizer=flags.FLAGS.tokenizer,
                        vocab_size=flags.FLAGS.vocab_size, tokenizer_from=flags.FLAGS.tokenizer_from,
                        val_fraction=flags.FLAGS.val_fraction, unit_bytes=flags.FLAGS.unit_mb << 20,
                        sample_bytes=flags.FLAGS.sample_mb << 20, text_field=flags.FLAGS.text_field,
                        workers=flags.FLAGS.workers,
                        progress=lambda total: tqdm(total=total, unit="B", unit_scale=True, desc="tokenizing"))
    except (DataError, DiskFull, UnknownCharactersError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    app.run(main)
