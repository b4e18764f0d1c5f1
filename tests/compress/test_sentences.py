from thrifty.compress.sentences import split_sentences


def test_spans_cut_back_out_of_the_source() -> None:
    text = "Dr. Smith flew to Washington. He met J. F. Kennedy in 1960!  Was it fun? Yes.\n\nA new paragraph."
    sentences = split_sentences(text)
    assert [s.text for s in sentences] == [
        "Dr. Smith flew to Washington.",
        "He met J. F. Kennedy in 1960!",
        "Was it fun?",
        "Yes.",
        "A new paragraph.",
    ]
    assert all(text[s.start : s.end] == s.text for s in sentences)
    assert [s.paragraph for s in sentences] == [0, 0, 0, 0, 1]


def test_list_items_are_sentences() -> None:
    sentences = split_sentences("Steps:\n- open the lid\n- pour the water\n1. wait")
    assert [s.text for s in sentences] == ["Steps:", "- open the lid", "- pour the water", "1. wait"]


def test_abbreviations_do_not_end_sentences() -> None:
    sentences = split_sentences("The U.S. Army arrived, e.g. Gen. Grant came. Then it rained.")
    assert [s.text for s in sentences] == ["The U.S. Army arrived, e.g. Gen. Grant came.", "Then it rained."]


def test_an_abbreviation_after_a_bracket_does_not_end_a_sentence() -> None:
    text = "James J. Andrews (c. 1829 - June 7, 1862) was a civilian scout. He led a raid."
    assert [s.text for s in split_sentences(text)] == [
        "James J. Andrews (c. 1829 - June 7, 1862) was a civilian scout.",
        "He led a raid.",
    ]
