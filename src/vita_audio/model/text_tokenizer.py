"""Text tokenizers: an HF tokenizer from a local directory, or the offline `tiny` one.

`tiny` is a byte-level BPE trained on the fly (well under a second) on a fixed English text, with the ChatML
special tokens of Qwen2.5. Byte-level means it encodes any text; the small merge table keeps the tiny model's
embedding small. It is deterministic, and it is saved beside every checkpoint like a real tokenizer.

`train_bpe` is the same recipe on any text: `vita_audio.cli.text_tokenizer` trains it on a corpus's training text
(plus the tiny text) and saves it as a local tokenizer directory, so the corpus's words are mostly one piece each.
"""

from __future__ import annotations

from pathlib import Path

from transformers import AutoTokenizer, PreTrainedTokenizerFast

CHATML_SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")

# The training text of the tiny BPE: the prompts of the three tasks plus common English.
_TINY_TEXT = """
Convert the speech to text. Convert the text to speech. You are a helpful voice assistant.
system user assistant. What is two plus three? The answer is five. Yes. No. It is true. It is false.
the of and to a in is it you that he was for on are with as I his they be at one have this from or had by
hot word but what some we can out other were all there when up use your how said an each she which do their
time if will way about many then them write would like so these her long make thing see him two has look more
day could go come did number sound no most people my over know water than call first who may down side been now
find any new work part take get place made live where after back little only round man year came show every good
me give our under name very through just form sentence great think say help low line differ turn cause much mean
before move right boy old too same tell does set three want air well also play small end put home read hand port
large spell add even land here must big high such follow act why ask men change went light kind off need house
picture try us again animal point mother world near build self earth father head stand own page should country
found answer school grow study still learn plant cover food sun four between state keep eye never last let
thought city tree cross farm hard start might story saw far sea draw left late run don't while press close night
real life few north open seem together next white children begin got walk example ease paper group always music
those both mark often letter until mile river car feet care second book carry took science eat room friend began
idea fish mountain stop once base hear horse cut sure watch color face wood main enough plain girl usual young
ready above ever red list though feel talk bird soon body dog family direct pose leave song measure door product
black short numeral class wind question happen complete ship area half rock order fire south problem piece told
knew pass since top whole king space heard best hour better during hundred five remember step early hold west
ground interest reach fast verb sing listen six table travel less morning ten simple several vowel toward war lay
against pattern slow center love person money serve appear road map rain rule govern pull cold notice voice unit
power town fine certain fly fall lead cry dark machine note wait plan figure star box noun field rest correct able
pound done beauty drive stood contain front teach week final gave green oh quick develop ocean warm free minute
strong special mind behind clear tail produce fact street inch multiply nothing course stay wheel full force blue
object decide surface deep moon island foot system busy test record boat common gold possible plane stead dry
wonder laugh thousand ago ran check game shape equate miss brought heat snow tire bring yes distant fill east
paint language among zero seven eight nine eleven twelve twenty thirty forty fifty sixty seventy eighty ninety
Monday Tuesday Wednesday Thursday Friday Saturday Sunday January February March April May June July August
September October November December 0 1 2 3 4 5 6 7 8 9 10 100 1000 , . ? ! ' " : ; - ( ) \n
"""


def tiny_text_lines() -> list[str]:
    """The tiny BPE's training lines (the task prompts and common English)."""
    return _TINY_TEXT.strip().splitlines()


def build_tiny_tokenizer(vocab_size: int = 1024) -> PreTrainedTokenizerFast:
    """A deterministic byte-level BPE with ChatML specials, trained on a fixed text."""
    return train_bpe(tiny_text_lines() * 4, vocab_size)


def train_bpe(lines: list[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """A byte-level BPE with the ChatML specials, trained on `lines` (deterministic for the same lines)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(CHATML_SPECIALS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(lines, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        bos_token=None,
        unk_token=None,
        clean_up_tokenization_spaces=False,
    )


def load_text_tokenizer(source: str) -> PreTrainedTokenizerFast:
    """`source` is "tiny" or a local directory holding an HF tokenizer (nothing is downloaded)."""
    if source == "tiny":
        return build_tiny_tokenizer()
    path = Path(source).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(
            f"text tokenizer directory {str(path)!r} does not exist. Point model.backbone.tokenizer at a local "
            "directory holding tokenizer.json / tokenizer_config.json (nothing is downloaded), or use 'tiny'."
        )
    return AutoTokenizer.from_pretrained(str(path), local_files_only=True, trust_remote_code=False)
