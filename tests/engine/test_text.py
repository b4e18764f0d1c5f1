from thrifty.engine.text import TextStream


def test_text_passes_through_without_stops() -> None:
    ts = TextStream([])
    assert ts.feed(b"Hello") == "Hello"
    assert ts.feed(b", world") == ", world"
    assert ts.flush() == ""


def test_stop_split_across_tokens_is_never_shown() -> None:
    ts = TextStream(["\nUser:"])
    out = [ts.feed(p) for p in (b"Sure.", b"\n", b"Us", b"er:", b" more")]
    assert "".join(out) == "Sure."
    assert ts.stopped
    assert ts.text == "Sure."


def test_held_back_text_is_released_when_it_stops_matching() -> None:
    ts = TextStream(["END"])
    assert ts.feed(b"the E") == "the "
    assert ts.feed(b"gg") == "Egg"
    assert not ts.stopped


def test_utf8_split_inside_a_character() -> None:
    ts = TextStream([])
    snow = "☃".encode()
    assert ts.feed(snow[:1]) == ""
    assert ts.feed(snow[1:]) == "☃"
