"""The README and docs/ point only at files that exist: a screenshot or a doc renamed in one
place and not the other shows as a broken image on the project's front page."""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "deploy" / "README.md"]
# Markdown links and images whose target is a path in the repository (not a URL or an anchor).
LINK = re.compile(r"!?\[[^\]]*\]\((?!https?://|#|mailto:)([^)\s#]+)")


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_names_a_file_that_exists(document):
    targets = LINK.findall(document.read_text())
    missing = [t for t in targets if not (document.parent / t).exists() and not (ROOT / t).exists()]
    assert missing == [], f"{document.relative_to(ROOT)} links to files that do not exist: {missing}"


def test_the_readme_shows_a_screenshot_of_each_role():
    images = re.findall(r"!\[([^\]]+)\]\((docs/img/[^)]+\.png)\)", (ROOT / "README.md").read_text())
    assert {alt for alt, _ in images} >= {"warden", "PCSO", "supervisor", "analyst", "partner", "DPO", "admin"}
