"""Questions behind a shared template are compared on the part where they differ."""

from __future__ import annotations

import numpy as np

from thrifty.cache.differ import differing, segments, shared_segments, strip_segments, verify_pairs
from thrifty.cache.verifier import default_verifier
from thrifty.embed import shared_embedder

SHOTS = (
    "Question: Tom has 3 apples and buys 4 more. How many apples does he have?\nAnswer: 3 + 4 = 7. #### 7\n\n"
    "Question: A pen costs $2. How much do 5 pens cost?\nAnswer: 5 * 2 = 10. #### 10\n\n"
)


def test_segments_are_lines_and_sentences() -> None:
    assert segments("Read this.  Then answer!\n\nWhat is 2.5 + 1?\n") == [
        "Read this.", "Then answer!", "What is 2.5 + 1?",
    ]  # fmt: skip


def test_a_shared_head_and_tail_are_set_aside() -> None:
    a = SHOTS + "Question: Who wrote Hamlet?\nAnswer:"
    b = SHOTS + "Question: Who painted the Mona Lisa?\nAnswer:"
    assert differing(a, b) == ("Question: Who wrote Hamlet?", "Question: Who painted the Mona Lisa?")


def test_texts_with_nothing_shared_come_back_whole() -> None:
    assert differing(" How do I reset my password? ", "How can I reset my password?") == (
        "How do I reset my password?",
        "How can I reset my password?",
    )


def test_identical_texts_leave_nothing() -> None:
    assert differing(SHOTS + "Q?", SHOTS + "Q?") == ("", "")


def test_segments_many_prompts_share_are_stripped_for_the_search() -> None:
    texts = [SHOTS + f"Question: item {i}?\nAnswer:" for i in range(3)] + ["Just a question?"]
    shared = shared_segments(texts)
    assert "Answer:" in shared and "Question: item 1?" not in shared
    assert strip_segments(texts[1], shared) == "Question: item 1?"
    # A text made only of shared segments is kept whole rather than emptied.
    assert strip_segments("Answer:", shared) == "Answer:"


def _pairs(pairs: list[tuple[str, str]]) -> list[bool]:
    emb = shared_embedder()
    va = emb.embed([a for a, _ in pairs])
    vb = emb.embed([b for _, b in pairs])
    verdicts, _ = verify_pairs(
        default_verifier(), emb.embed, list(zip([a for a, _ in pairs], va, strict=True)),
        list(zip([b for _, b in pairs], vb, strict=True)),
    )  # fmt: skip
    return [v.same for v in verdicts]


def test_the_verifier_decides_on_the_differing_part() -> None:
    different = (SHOTS + "Question: What is the capital of Australia?\nAnswer:",
                 SHOTS + "Question: What is the largest city of Australia?\nAnswer:")  # fmt: skip
    paraphrase = (SHOTS + "Question: How do I reset my router password?\nAnswer:",
                  SHOTS + "Question: How can I reset the password of my router?\nAnswer:")  # fmt: skip
    one_adds = (SHOTS + "Question: Who wrote Hamlet?", SHOTS + "Question: Who wrote Hamlet?\nIn which year?")
    assert _pairs([different, paraphrase, one_adds]) == [False, True, False]


def test_embeddings_are_reused_where_nothing_is_stripped() -> None:
    calls: list[list[str]] = []
    emb = shared_embedder()

    def embed(texts: list[str]) -> np.ndarray:
        calls.append(texts)
        return emb.embed(texts)

    a, b = "How do I reset my password?", "How can I reset my password?"
    verify_pairs(default_verifier(), embed, [(a, emb.embed_one(a))], [(b, emb.embed_one(b))])
    assert calls == []
    verify_pairs(default_verifier(), embed, [(SHOTS + a, None)], [(SHOTS + b, None)])
    assert calls == [[a, b]]
