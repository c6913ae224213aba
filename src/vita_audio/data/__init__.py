"""From files to packed batches: records (VITA jsonl), interleave, prompt (ChatML ids + labels), cache (audio
tokens), mixing, packing, dataset, datamodule (`VitaDataModule`), tokenize (cache command), corpus (builder)."""
