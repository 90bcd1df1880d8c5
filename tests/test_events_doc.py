"""docs/events.md is generated from the catalogue's schema objects: it must not drift."""
from hub.core.events import EVENT_TYPES, docs


def test_committed_events_doc_matches_the_catalogue():
    assert docs.DOC.read_text(encoding="utf-8") == docs.render(), \
        "docs/events.md is out of date: run `coexhub events-doc` and commit it"


def test_every_event_is_documented_with_a_valid_example():
    text = docs.render()
    for name, event_type in EVENT_TYPES.items():
        assert f"### `{name}`" in text
        assert not event_type.errors(event_type.example), name


def test_cli_check(runner):
    result = runner.invoke(["events-doc", "--check"])
    assert result.exit_code == 0, result.output
