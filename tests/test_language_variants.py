"""The training side of the study axes (issue 15 items 1-2): the ``frequent`` prompt
initialisation, instructions written in the language itself, the whole-corpus extent and
token caps. Tiny model, fixture text."""

from __future__ import annotations

import pytest
import torch
from test_corpora import _article, wiki  # noqa: F401  (the Wikipedia mirror fixture)

from langtransfer import languages
from langtransfer.composition.loaded_base import LoadedBase
from langtransfer.errors import LangTransferError, UnknownNameError
from langtransfer.languages import (
    NATIVE_INSTRUCTION,
    PAPER_LANGUAGES,
    get_language,
    load_language_file,
)
from langtransfer.representations import PromptConfig, read_manifest
from langtransfer.representations.kinds.prompt import frequent_token_ids, initial_prompt
from langtransfer.training.corpora import cap_tokens, load_corpus, read_documents
from langtransfer.training.language import train_language
from langtransfer.training.trainer import default_settings


@pytest.fixture(scope="module")
def tiny():
    return LoadedBase.load("tiny")


def test_frequent_tokens_are_the_texts_most_common_ordinary_ones(tiny):
    tok = tiny.tokenizer
    texts = ["aaa b", "a c", "zz"]
    ids = frequent_token_ids(texts, tok, 3)
    counts = {}
    for t in texts:
        for i in tok(t, add_special_tokens=False).input_ids:
            counts[i] = counts.get(i, 0) + 1
    ranked = sorted(counts, key=lambda i: (-counts[i], i))
    assert ids == ranked[:3] and not set(ids) & set(tok.all_special_ids)
    # Only the first max_documents texts count.
    assert frequent_token_ids(["zz zz zz", *texts], tok, 1, max_documents=1) == \
        frequent_token_ids(["zz"], tok, 1)
    config = PromptConfig(num_tokens=5, init="frequent", extra={"token_ids": ids})
    prompt = initial_prompt(config, tiny.model.get_input_embeddings(), tok)
    weight = tiny.model.get_input_embeddings().weight
    assert torch.equal(prompt.embedding, weight[torch.tensor((ids * 2)[:5])])
    with pytest.raises(LangTransferError, match="'frequent' needs the language's frequent"):
        initial_prompt(PromptConfig(num_tokens=5, init="frequent"),
                              tiny.model.get_input_embeddings(), tok)
    with pytest.raises(UnknownNameError, match="'nonsense'.*frequent"):
        PromptConfig(init="nonsense")


def test_every_paper_language_has_its_instruction_in_itself(tmp_path, monkeypatch):
    monkeypatch.setattr(languages, "_REGISTRY", dict(languages._REGISTRY))
    natives = {get_language(c).instruction_from(NATIVE_INSTRUCTION) for c in PAPER_LANGUAGES}
    assert len(natives) == 16
    assert get_language("en").instruction_from(NATIVE_INSTRUCTION) == \
        get_language("en").instruction
    assert get_language("sk").instruction_from("Write in {Language}:") == "Write in Slovak:"
    path = tmp_path / "langs.yaml"
    path.write_text("- {code: hsb, name: Upper Sorbian, script: Latin}\n"
                    "- {code: mt, name: Maltese, script: Latin, instruction_native: 'Ikteb:'}\n")
    hsb, mt = load_language_file(path)
    assert mt.instruction_from(NATIVE_INSTRUCTION) == "Ikteb:"
    with pytest.raises(LangTransferError, match="'hsb' .*has no instruction_native"):
        hsb.instruction_from(NATIVE_INSTRUCTION)


def test_full_extent_validates_alike_whatever_the_cap(tmp_path):
    path = tmp_path / "sk.txt"
    path.write_text("\n".join(f"doc {i}" for i in range(40)))
    full = load_corpus(path, "sk", validation_size=4, extent="full")
    capped = load_corpus(path, "sk", validation_size=4, extent="full", max_documents=5)
    assert full.validation == capped.validation and len(full.validation) == 4
    assert capped.train == full.train[:5] and len(full.train) == 36
    # The paper extent caps first, then samples validation from what is left.
    paper = load_corpus(path, "sk", validation_size=4, max_documents=10)
    assert set(paper.train + paper.validation) == set(read_documents(path)[:10])
    with pytest.raises(UnknownNameError, match="corpus extent 'half'"):
        load_corpus(path, "sk", extent="half")


def test_full_wikipedia_validates_on_the_first_articles_and_trains_after(wiki):  # noqa: F811
    wiki({"20231101.sk": 400})
    corpus = load_corpus("wikipedia", "sk", validation_size=3, extent="full")
    assert corpus.validation == [_article(i) for i in range(3)]
    assert corpus.max_documents == 397  # the whole dump after them, not its 5%
    assert list(corpus.train) == [_article(i) for i in range(3, 400) if i % 7 != 3]
    capped = load_corpus("wikipedia", "sk", validation_size=3, extent="full", max_documents=30)
    assert capped.validation == corpus.validation
    assert list(capped.train) == [_article(i) for i in range(3, 33) if i % 7 != 3]


def test_token_cap_cuts_the_text_at_the_token_count(tiny):
    tok = tiny.tokenizer
    docs = read_documents(load_corpus("fixture", "de").source)
    capped = cap_tokens(docs, tok, 300)
    texts = list(capped)
    n = [len(tok(t, add_special_tokens=False).input_ids) for t in texts]
    assert capped.tokens == 300 and abs(sum(n) - 300) <= 2  # decoding the cut may merge a piece
    assert texts[:-1] == docs[: len(texts) - 1] and docs[len(texts) - 1].startswith(texts[-1])
    assert list(capped) == texts  # re-iterable
    with pytest.raises(LangTransferError, match="max_tokens must be a positive integer, got 0"):
        cap_tokens(docs, tok, 0)


def test_language_training_with_a_token_cap_and_frequent_init(tiny, tmp_path):
    settings = default_settings("prompt", "language", max_steps=2, batch_size=2,
                                logging_steps=100, save_steps=100)
    out = train_language(
        model=tiny, language="de", kind="prompt", corpus="fixture", output=tmp_path / "de",
        settings=settings, spec=PromptConfig(num_tokens=4, init="frequent"),
        sequence_length=32, max_tokens=400, corpus_extent="full", validation_size=5,
        show_progress=False,
    )
    manifest = read_manifest(out)
    training = manifest["training"]
    assert training["max_tokens"] == 400 and training["corpus_extent"] == "full"
    assert 395 <= training["train_tokens"] <= 402
    corpus = load_corpus("fixture", "de", validation_size=5, seed=settings.seed, extent="full")
    trained_on = list(cap_tokens(corpus.train, tiny.tokenizer, 400))
    assert manifest["prompt"]["extra"]["token_ids"] == frequent_token_ids(
        trained_on, tiny.tokenizer, 4)
