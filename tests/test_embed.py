"""The embedder's word-piece states: what the sentence vector is pooled from."""

from __future__ import annotations

import numpy as np

from thrifty.embed import shared_embedder


def test_token_states_are_unit_vectors_per_piece_without_cls_and_sep() -> None:
    embedder = shared_embedder()
    texts = ["Why is the sky blue?", "Is the sky really blue or is it an illusion of the eye?", ""]
    states = embedder.token_states(texts, batch_size=2)
    assert len(states) == 3
    for text, (ids, vecs) in zip(texts, states, strict=True):
        expected = embedder._tokenizer.encode(text).ids[1:-1]  # without [CLS] and [SEP]
        assert ids.tolist() == expected
        assert vecs.shape == (len(expected), 384)
        assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    # batched with a longer text or alone: padding does not change a text's states
    alone = embedder.token_states(texts[:1])[0][1]
    assert np.allclose(alone, states[0][1], atol=1e-4)


def test_a_piece_is_closest_to_the_same_word_in_the_other_question() -> None:
    embedder = shared_embedder()
    (ids_a, a), (ids_b, b) = embedder.token_states(["Why is the sky blue?", "What makes the sky look blue?"])
    sky = embedder._tokenizer.token_to_id("sky")
    i, j = ids_a.tolist().index(sky), ids_b.tolist().index(sky)
    assert int(np.argmax(a[i] @ b.T)) == j
