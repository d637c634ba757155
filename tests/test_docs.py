"""The generated docs stay in step with the code."""

from __future__ import annotations

from provision.model.reference import reference_markdown

from conftest import ROOT


def test_profile_reference_is_up_to_date() -> None:
    committed = (ROOT / "docs" / "profile-reference.md").read_text(encoding="utf-8")
    assert committed == reference_markdown(), (
        "docs/profile-reference.md is stale: run  provision profiles reference > docs/profile-reference.md"
    )


def test_reference_covers_every_settings_key_with_its_versions() -> None:
    text = reference_markdown()
    assert "| `autoAnswerCalls` | `''`, `hold`, `all` | 3.22+ |" in text
    assert "| `silent` | true, false | up to 3.21.6 |" in text
    assert "| `domain` | text (up to 1040) | all |" in text
