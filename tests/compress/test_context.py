"""Context compression on a small real RAG prompt, with the shipped embedder."""

import pytest

from thrifty.compress.context import ContextSettings, compress_parts, split_question
from thrifty.compress.extract import OMITTED, Embedder
from thrifty.compress.sentences import split_sentences
from thrifty.embed import shared_embedder
from thrifty.ledger.tokens import count_text

PASSAGES = [
    "The Amazon rainforest covers much of the Amazon basin of South America. The basin spans nine nations. "
    "Brazil holds sixty percent of the rainforest, followed by Peru and Colombia.",
    "The Eiffel Tower is a wrought-iron lattice tower in Paris. It was designed by the company of Gustave Eiffel. "
    "Construction of the tower finished in 1889, in time for the World's Fair. It is 330 metres tall.",
    "Photosynthesis converts light energy into chemical energy. Plants, algae and cyanobacteria perform it. "
    "Oxygen is released as a by-product of splitting water.",
    "The Great Wall of China is a series of fortifications built across northern China. Its best-known sections "
    "were built by the Ming dynasty. The wall is more than 20,000 kilometres long in total.",
    "Mount Everest is Earth's highest mountain above sea level. It lies in the Mahalangur Himal range. "
    "Its elevation of 8,849 metres was established in 2020 by Chinese and Nepali authorities.",
] * 4
QUESTION = "Question: In what year was construction of the Eiffel Tower finished?"
PROMPT = "Use the context to answer.\n\n" + "\n\n".join(PASSAGES) + "\n\n" + QUESTION


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return shared_embedder()


def test_question_is_found_and_kept_verbatim(embedder: Embedder) -> None:
    outcome = compress_parts([PROMPT], ContextSettings(enabled=True, ratio=0.2, min_tokens=0), embedder)
    assert outcome.texts is not None
    text = outcome.texts[0]
    assert text.endswith("\n\n" + QUESTION)
    assert "finished in 1889" in text
    assert outcome.tokens_after < 0.35 * outcome.tokens_before
    # Kept sentences are verbatim and in their original order.
    pos = 0
    for sentence in split_sentences(text[: -len(QUESTION)]):
        found = PROMPT.find(sentence.text, pos)
        assert found >= 0, sentence.text
        pos = found + len(sentence.text)


def test_split_question_markers() -> None:
    split = split_question("ctx ctx\n\nQuestion: who?", ContextSettings().question_marker)
    assert split is not None and split.question == "Question: who?" and split.context == "ctx ctx\n\n"
    split = split_question("ctx ctx\n\nWho wrote it?", ContextSettings().question_marker)
    assert split is not None and split.question == "Who wrote it?"
    assert split_question("just a long statement\n\nwith no ask", ContextSettings().question_marker) is None


def test_budget_too_small_for_the_question_sends_uncompressed(embedder: Embedder) -> None:
    tiny = count_text(QUESTION) - 1
    outcome = compress_parts(
        [PROMPT], ContextSettings(enabled=True, budget_tokens=tiny, min_tokens=0), embedder
    )
    assert outcome.texts is None and outcome.reason.startswith("budget of")


def test_short_context_or_no_question_is_left_alone(embedder: Embedder) -> None:
    assert compress_parts([PROMPT], ContextSettings(enabled=True), embedder).texts is not None
    assert (
        compress_parts(["Tell me about dogs."], ContextSettings(enabled=True, min_tokens=0), embedder).texts
        is None
    )
    code = compress_parts(
        ["```python\nx = 1\n```\n\n" + PROMPT], ContextSettings(enabled=True, min_tokens=0), embedder
    )
    assert code.texts is None and "code" in code.reason
    short = compress_parts([PROMPT], ContextSettings(enabled=True, min_tokens=10_000), embedder)
    assert short.texts is None and "min_tokens" in short.reason


def test_multi_part_message_keeps_the_last_part(embedder: Embedder) -> None:
    parts = ["\n\n".join(PASSAGES), "When was the Eiffel Tower finished?"]
    outcome = compress_parts(parts, ContextSettings(enabled=True, ratio=0.2, min_tokens=0), embedder)
    assert outcome.texts is not None
    assert outcome.texts[1] == parts[1] and "1889" in outcome.texts[0]


def test_parts_share_one_budget_and_an_emptied_part_is_marked(embedder: Embedder) -> None:
    noise = "Bananas are yellow fruit that grow in bunches. " * 40
    parts = [noise, "\n\n".join(PASSAGES[:5]), "When was construction of the Eiffel Tower finished?"]
    outcome = compress_parts(parts, ContextSettings(enabled=True, ratio=0.1, min_tokens=0), embedder)
    assert outcome.texts is not None
    assert outcome.texts[0] == OMITTED and "1889" in outcome.texts[1] and outcome.texts[2] == parts[2]
