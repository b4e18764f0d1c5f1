"""Multi-hop aware selection: the second hop follows the bridge, titles come along, the budget holds."""

import pytest

from thrifty.compress.extract import Embedder, Weights, compress, score_sentences, select
from thrifty.compress.multihop import split_title_lines, structure, subject
from thrifty.compress.sentences import split_sentences
from thrifty.embed import shared_embedder
from thrifty.ledger.tokens import count_text

#: A HotpotQA-style prompt: the film's paragraph names the actress; her own paragraph, which
#: holds the answer, shares no word with the question. The distractors share many.
PARAGRAPHS = [
    (
        "Meet Corliss Archer",
        "Meet Corliss Archer was a radio program that ran from 1943 to 1956. The program aired on CBS "
        "and later on NBC as a summer replacement. Fewer than 24 episodes of the radio program are known "
        "to exist.",
    ),
    (
        "Shirley Temple",
        "Shirley Temple Black was an American actress, singer and dancer. She was the top box-office draw "
        "as a child from 1935 to 1938. As an adult, she was named ambassador to Ghana and to "
        "Czechoslovakia and served as Chief of Protocol of the United States.",
    ),
    (
        "Lord High Treasurer",
        "The post of Lord High Treasurer was an English government position. A holder of the government "
        "position ranked below the Lord High Steward. The position was held in commission after 1714.",
    ),
    (
        "Kiss and Tell (1945 film)",
        "Kiss and Tell is a 1945 American comedy film starring then 17-year-old Shirley Temple as Corliss "
        "Archer. In the film, two teenage girls cause their parents much concern. The parents' bickering "
        "causes more problems than it solves.",
    ),
    (
        "Secretary of State for Constitutional Affairs",
        "The Secretary of State for Constitutional Affairs was a British government position created in "
        "2003. Certain functions of the Lord Chancellor were transferred to the position. The government "
        "position was held by the woman and man who led the department.",
    ),
    (
        "Meet Corliss Archer (TV series)",
        "Meet Corliss Archer is an American television sitcom that aired on CBS in 1951. The program was "
        "an adaptation of the radio series, based on short stories by F. Hugh Herbert. Corliss Archer was "
        "portrayed on television by Ann Baker.",
    ),
]
QUESTION = "What government position was held by the woman who portrayed Corliss Archer in the film Kiss and Tell?"
CONTEXT = "\n\n".join(f"{title}\n{text}" for title, text in PARAGRAPHS)
ANSWER = "served as Chief of Protocol of the United States."
SINGLE_PASS = Weights(hop=0, anchor=0, paragraph=0, title=0, passage_lexical=0)


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return shared_embedder()


def test_title_lines_are_cut_off_their_paragraph() -> None:
    text = "Context:\nTitle: Ed Wood\nEd Wood was a filmmaker. He was American.\n\nNo title here. Just prose."
    sentences, titles = split_title_lines(split_sentences(text))
    assert [s.text for s in sentences] == [
        "Context:\nTitle: Ed Wood",
        "Ed Wood was a filmmaker.",
        "He was American.",
        "No title here.",
        "Just prose.",
    ]
    assert titles == {0}
    for s in sentences:  # still spans of the source
        assert text[s.start : s.end] == s.text
    # A first line that ends like a sentence, or a long one, is prose, not a title.
    prose = "It rained.\nThen it stopped.\n\n" + " ".join(["word"] * 30) + "\nMore text."
    assert split_title_lines(split_sentences(prose))[1] == set()


@pytest.mark.parametrize(
    ("text", "is_title", "expected"),
    [
        ("[3] Ed Wood (film)", True, "Ed Wood"),
        ("Title: Kiss and Tell (1945 film)", True, "Kiss and Tell"),
        ("Document [1](Title: Ed Wood) Edward Davis Wood Jr. was a filmmaker.", False, "Ed Wood"),
        ("James J. Andrews (c. 1829 - June 7, 1862) was a Kentucky civilian.", False, "James J. Andrews"),
        ("William Ewart Gladstone, ( ; 29 December 1809) was a statesman.", False, "William Ewart Gladstone"),
        ("The Kritikos Lagonikos (Cretan Hound) is a breed.", False, "The Kritikos Lagonikos Cretan Hound"),
    ],
)
def test_subject_of_a_paragraph(text: str, is_title: bool, expected: str) -> None:
    assert subject(text, is_title) == expected


def test_second_hop_keeps_the_bridge_that_a_single_pass_drops() -> None:
    budget = int(count_text(CONTEXT) * 0.5)
    single = compress(QUESTION, CONTEXT, budget, None, SINGLE_PASS)
    assert ANSWER not in single.text  # the answer shares no word with the question
    multi = compress(QUESTION, CONTEXT, budget, None, Weights())
    assert "starring then 17-year-old Shirley Temple as Corliss Archer" in multi.text  # first hop
    assert ANSWER in multi.text  # second hop, via "Shirley Temple"
    # The kept sentences bring their paragraph's title, on its own line as in the source.
    assert "Shirley Temple\nShirley Temple Black was an American actress" in multi.text
    assert "Kiss and Tell (1945 film)\nKiss and Tell is a 1945" in multi.text


def test_second_hop_with_the_shipped_embedder(embedder: Embedder) -> None:
    budget = int(count_text(CONTEXT) * 0.4)
    bridge = "Shirley Temple Black was an American actress"
    assert bridge not in compress(QUESTION, CONTEXT, budget, embedder, SINGLE_PASS).text
    assert bridge in compress(QUESTION, CONTEXT, budget, embedder).text


@pytest.mark.parametrize("ratio", [0.1, 0.2, 0.3, 0.4, 0.6])
def test_anchors_and_hops_stay_within_the_budget(ratio: float, embedder: Embedder) -> None:
    budget = int(count_text(CONTEXT) * ratio)
    for weights in (Weights(), Weights(anchor=2), SINGLE_PASS):
        out = compress(QUESTION, CONTEXT, budget, embedder, weights)
        # Each kept span is charged its tokens plus one for the separator.
        assert sum(count_text(out.sentences[i].text) + 1 for i in out.kept) <= budget
        assert out.tokens_after <= budget + len(out.kept)


def test_every_kept_sentence_brings_its_title_line() -> None:
    sentences, titles = split_title_lines(split_sentences(CONTEXT))
    shape = structure(sentences, titles)
    out = compress(QUESTION, CONTEXT, int(count_text(CONTEXT) * 0.3), None, Weights())
    for i in out.kept:
        head = int(shape.anchor[i])
        assert head in titles and head in out.kept


def test_lead_sentences_come_along_where_there_is_no_title() -> None:
    untitled = "\n\n".join(text for _, text in PARAGRAPHS)
    budget = int(count_text(untitled) * 0.3)
    out = compress(QUESTION, untitled, budget, None, Weights(anchor=2))
    sentences = out.sentences
    leads = {i for i, s in enumerate(sentences) if i == 0 or sentences[i - 1].paragraph != s.paragraph}
    for i in out.kept:
        lead = max(j for j in leads if j <= i)
        assert lead in out.kept


def test_single_pass_weights_select_as_before(embedder: Embedder) -> None:
    budget = int(count_text(CONTEXT) * 0.3)
    out = compress(QUESTION, CONTEXT, budget, embedder, SINGLE_PASS)
    sentences = split_sentences(CONTEXT)
    expected = select(sentences, score_sentences(QUESTION, sentences, embedder, SINGLE_PASS), budget)
    assert out.kept == expected
