"""The verifier: the shipped model accepts paraphrases and refuses the classic traps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier

from thrifty.cache.pairdata import assign_splits, split_of_key
from thrifty.cache.verifier import (
    LEXICAL_FEATURES,
    TreeEnsemble,
    Verifier,
    default_verifier,
    direction_differs,
    lexical_features,
    negation_differs,
    numbers_differ,
)
from thrifty.embed import shared_embedder


def verdict(a: str, b: str) -> tuple[bool, str]:
    emb = shared_embedder().embed([a, b])
    v = default_verifier().decide([a], [b], emb[:1], emb[1:])[0]
    return v.same, v.reason


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("How can I improve my English speaking skills?", "How do I improve my spoken English?"),
        ("Why is the sky blue?", "Why does the sky look blue?"),
        ("How do I reset my router password?", "How can I reset the password of my router?"),
        ("What are the best books to learn data structures?", "What are the best books for learning data structures?"),
    ],
)
def test_paraphrases_are_the_same_question(a: str, b: str) -> None:
    assert verdict(a, b) == (True, "model")


def test_the_same_text_spelled_differently_is_the_same_question() -> None:
    assert verdict("What is the boiling point of water?", "what's the boiling point of water") == (True, "same text")


@pytest.mark.parametrize(
    ("a", "b", "reason"),
    [
        ("How do I lose 5 kg in a month?", "How do I lose 50 kg in a month?", "numbers differ"),
        ("What was the population of Paris in 1900?", "What was the population of Paris in 2000?", "numbers differ"),
        ("How can I get a refund for my ticket?", "How can I get a refund for my 2 tickets?", "numbers differ"),
        ("Is coffee good for your health?", "Is coffee not good for your health?", "negation differs"),
        ("Why do cats purr?", "Why don't cats purr?", "negation differs"),
        ("How do you convert ethane to ethene?", "How do you convert ethene to ethane?", "direction differs"),
        ("Is it safe to drive from Texas to California?", "Is it safe to drive from California to Texas?",
         "direction differs"),
    ],
)
def test_number_and_negation_traps_are_refused(a: str, b: str, reason: str) -> None:
    assert verdict(a, b) == (False, reason)


def test_a_different_subject_is_refused_by_the_model() -> None:
    same, reason = verdict("How do I learn Python?", "How do I learn Java?")
    assert not same and reason == "model"


def test_guards() -> None:
    assert numbers_differ("price in 2019", "price in 2020")
    assert numbers_differ("the top five films", "the top 10 films")
    assert not numbers_differ("the top five films", "the top 5 films")
    assert not numbers_differ("1,000 words", "1000 words")
    assert negation_differs("can I swim", "can't I swim")
    assert not negation_differs("I can't not go", "I must go there")  # two negations cancel


def test_a_reversed_direction_is_a_different_question_but_a_symmetric_pair_is_not() -> None:
    assert direction_differs("convert miles to kilometers", "convert kilometers to miles")
    assert direction_differs("Is Rust faster than Go?", "Is Go faster than Rust?")
    assert not direction_differs("Python or Java for a beginner?", "Java or Python for a beginner?")
    assert not direction_differs("How is the brain different from the mind?", "How is the mind different from the brain?")
    assert not direction_differs("How do I switch from Windows to Linux?", "How do I switch to Linux from Windows?")
    assert not direction_differs("How do I go to Paris?", "How do I go to Paris from here?")  # other words
    assert not direction_differs("how to learn python", "learn python how to")  # nothing on one side


def test_features_have_their_names() -> None:
    feats = lexical_features("Who wrote Hamlet?", "Who is the author of Hamlet?", 0.8)
    assert len(feats) == len(LEXICAL_FEATURES)
    named = dict(zip(LEXICAL_FEATURES, feats, strict=True))
    assert named["cosine"] == 0.8 and named["qword_same_first"] == 1.0 and named["caps_jaccard"] == 1.0


def test_exported_trees_predict_exactly_like_scikit_learn(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 6)).astype(np.float32)
    x[rng.random(x.shape) < 0.05] = np.nan
    y = ((np.nan_to_num(x[:, 0]) + np.nan_to_num(x[:, 1]) * np.nan_to_num(x[:, 2])) > 0).astype(int)
    clf = HistGradientBoostingClassifier(max_iter=25, random_state=0).fit(x, y)
    trees = TreeEnsemble.from_sklearn(clf)
    assert np.allclose(trees.proba(x), clf.predict_proba(x)[:, 1], atol=1e-9)
    # and survive a save/load round trip without pickle
    path = tmp_path / "v.npz"
    Verifier(trees, None, 0.7, {"lexical_features": list(LEXICAL_FEATURES)}).save(path)
    loaded = Verifier.load(path)
    assert loaded.threshold == 0.7 and loaded.projection is None
    assert np.allclose(loaded.model.proba(x), clf.predict_proba(x)[:, 1], atol=1e-6)


def test_a_model_trained_on_other_features_is_refused(tmp_path: Path) -> None:
    clf = HistGradientBoostingClassifier(max_iter=2).fit(np.eye(4), [0, 1, 0, 1])
    path = tmp_path / "old.npz"
    Verifier(TreeEnsemble.from_sklearn(clf), None, 0.5, {"lexical_features": ["cosine"]}).save(path)
    with pytest.raises(ValueError, match="retrain"):
        Verifier.load(path)


def test_the_shipped_model_records_its_provenance() -> None:
    meta = default_verifier().meta
    assert "QQP" in meta["trained_on"] and meta["val_precision_adjudicated_low"] >= 0.95
    assert "adjudicated" in meta["threshold_rule"]
    assert 0.5 < default_verifier().threshold < 1.0


# Paraphrases the trees score between the threshold chosen by adjudicated precision on val
# (0.856) and the one chosen by QQP's labels before it (0.948): refused then, served now.
@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("What should I do to become a good programmer?", "How can I become a better programmer?"),
        ("What are the best exercises for back pain?", "What is the best exercise for back pain?"),
        ("What are some good books on economics?", "Which are the best books on economics?"),
        ("How can I lose weight fast?", "What is the fastest way to lose weight?"),
    ],
)
def test_paraphrases_below_the_old_threshold_are_now_served(a: str, b: str) -> None:
    emb = shared_embedder().embed([a, b])
    v = default_verifier().decide([a], [b], emb[:1], emb[1:])[0]
    assert (v.same, v.reason) == (True, "model") and v.score < 0.9478


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("What is the best way to learn Python?", "What is the best way to learn Java?"),
        ("Who is the richest person in India?", "Who is the richest person in China?"),
        ("How do I get a job at Google?", "How do I get a job at Amazon?"),
        ("What is the capital of Australia?", "What is the capital of Austria?"),
        ("What is the difference between a virus and a bacterium?", "What is the difference between a virus and a fungus?"),
    ],
)
def test_look_alikes_about_other_entities_stay_refused(a: str, b: str) -> None:
    assert verdict(a, b) == (False, "model")


def test_the_split_keeps_questions_that_share_a_pair_together() -> None:
    rows = [("How to cook rice?", "How do I cook rice?", 1), ("how to cook  rice?", "Best rice recipes?", 0), ("A?", "B?", 0)]
    pairs = assign_splits(rows)
    assert pairs[0].split == pairs[1].split  # linked through one question, modulo case and spacing
    assert pairs[2].split == split_of_key("a?")
    assert {split_of_key(str(i)) for i in range(50)} == {"train", "val", "test"}
