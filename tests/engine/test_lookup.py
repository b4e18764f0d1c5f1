from thrifty.engine.lookup import PromptLookup


def test_draft_continues_the_last_ngram_from_the_prompt() -> None:
    pl = PromptLookup([1, 2, 3, 4, 5, 6, 9, 2, 3], ngram_min=2, ngram_max=3)
    assert pl.draft(3) == [4, 5, 6]


def test_longest_ngram_wins_and_most_recent_occurrence() -> None:
    pl = PromptLookup([7, 2, 3, 10, 1, 2, 3, 11, 1, 2, 3], ngram_min=2, ngram_max=3)
    assert pl.draft(1) == [11]  # 3-gram (1, 2, 3) was followed by 11
    pl.add(12)
    assert pl.draft(2) == []


def test_generated_tokens_extend_the_index() -> None:
    pl = PromptLookup([5, 6], ngram_min=2, ngram_max=2)
    for t in (7, 8, 5, 6):
        pl.add(t)
    assert pl.draft(4) == [7, 8, 5, 6]
