from thrifty.compress.fewshot import Example, FewshotSettings, find_examples, prune
from thrifty.embed import shared_embedder

POOL = [
    Example(input="Translate to French: cat", output="chat"),
    Example(input="What is 12 times 3?", output="36"),
    Example(input="Translate to French: dog", output="chien"),
    Example(input="What is 7 plus 8?", output="15"),
    Example(input="Is a tomato a fruit?", output="Yes, botanically."),
]


def shots(indices: list[int]) -> list[dict[str, str]]:
    out = []
    for i in indices:
        out += [{"role": "user", "content": POOL[i].input}, {"role": "assistant", "content": POOL[i].output}]
    return out


def test_prunes_to_the_k_closest_examples() -> None:
    messages = [
        {"role": "system", "content": "Be exact."},
        *shots([0, 1, 2, 3, 4]),
        {"role": "user", "content": "What is 9 times 6?"},
    ]
    found = find_examples(messages, POOL, len(messages) - 1)
    assert [j for _, j in found] == [0, 1, 2, 3, 4]
    result = prune(
        messages, len(messages) - 1, FewshotSettings(enabled=True, k=2, pool=POOL), shared_embedder()
    )
    assert result is not None
    kept, removed = result
    assert kept[0] == messages[0] and kept[-1] == messages[-1]
    assert kept[1:-1] == shots([1, 3])  # the two arithmetic examples, in their original order
    assert len(removed) == 6


def test_client_turns_that_are_not_pool_examples_stay() -> None:
    messages = [
        {"role": "user", "content": "hello"},
        {"role": "assistant", "content": "hi"},
        *shots([0]),
        {"role": "user", "content": "dog?"},
    ]
    assert prune(messages, 4, FewshotSettings(enabled=True, k=0, pool=POOL), shared_embedder()) == (
        messages[:2] + messages[4:],
        messages[2:4],
    )


def test_inject_when_none_sent() -> None:
    messages = [{"role": "system", "content": "S"}, {"role": "user", "content": "Translate to French: horse"}]
    result = prune(messages, 1, FewshotSettings(enabled=True, k=2, pool=POOL, inject=True), shared_embedder())
    assert result is not None
    kept, removed = result
    assert removed == [] and kept[0] == messages[0] and kept[-1] == messages[-1]
    assert {kept[1]["content"], kept[3]["content"]} == {POOL[0].input, POOL[2].input}
