"""The knowledge base: importing files, chunking, retrieval, and its API and command line."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from core.chunking import chunk_entry
from core.errors import ValidationFailed
from core.kb_import import parse_csv, parse_markdown, parse_yaml, read_path
from core.knowledge import IndexCache, create_entry, import_entries, list_entries
from core.models import KnowledgeEntry, Widget
from core.retrieval import Index, edit_distance
from core.services import Services
from core.widgets import create_widget
from tests.test_api_helpers import api, api_key, widget  # noqa: F401
from tests.test_cli import _json, deskbell
from tests.test_knowledge_embeddings import HashingEmbedder

# ---------------------------------------------------------------- importing files


def test_a_markdown_page_is_one_entry_titled_by_front_matter_or_heading():
    [entry] = parse_markdown("---\ntags: [billing, plans]\n---\n# Pricing\n\nIt is free.\n\n## Support\n\nBy email.\n", "pricing.md")
    assert entry == {"title": "Pricing", "answer": "It is free.\n\n## Support\n\nBy email.", "tags": ["billing", "plans"], "source": "pricing.md"}
    [untitled] = parse_markdown("Just text.", "getting-started.md")
    assert untitled["title"] == "Getting started"


def test_a_faq_csv_reads_question_answer_and_tags_columns():
    text = '\ufeffQuestion,Answer,Tags\n"Do you ship abroad?","Yes, to the EU.","shipping; eu"\n\n"Returns?","30 days.",\n'
    assert parse_csv(text, "faq.csv") == [
        {"title": "Do you ship abroad?", "answer": "Yes, to the EU.", "tags": ["shipping", "eu"], "source": "faq.csv"},
        {"title": "Returns?", "answer": "30 days.", "tags": [], "source": "faq.csv"},
    ]
    assert parse_csv("question;answer\nA?;B\n", "semi.csv")[0]["answer"] == "B"


def test_csv_problems_name_the_file_and_row():
    with pytest.raises(ValidationFailed, match="faq.csv:3"):
        parse_csv("question,answer\nA?,B\nC?,\n", "faq.csv")
    with pytest.raises(ValidationFailed, match="first row"):
        parse_csv("q1,a1\nA?,B\n", "faq.csv")


def test_yaml_takes_lists_entries_or_question_answer_pairs():
    assert parse_yaml("- question: A?\n  answer: B\n  tags: x, y\n")[0]["tags"] == ["x", "y"]
    assert parse_yaml("entries:\n  - title: A?\n    body: B\n")[0]["title"] == "A?"
    assert parse_yaml("A?: B\nC?: D\n")[1] == {"title": "C?", "answer": "D", "tags": [], "source": "faq.yaml"}
    with pytest.raises(ValidationFailed, match="faq.yaml#2"):
        parse_yaml("- question: A?\n  answer: B\n- question: C?\n")
    with pytest.raises(ValidationFailed, match="faq.yaml:2"):
        parse_yaml("- a: [\n- b\n")


def test_a_folder_is_read_recursively_in_order(tmp_path: Path):
    (tmp_path / "b").mkdir()
    (tmp_path / "a.md").write_text("# A\n\nalpha")
    (tmp_path / "b" / "c.yaml").write_text("- question: C?\n  answer: gamma\n")
    (tmp_path / "notes.txt").write_text("ignored")
    entries = read_path(tmp_path)
    assert [(e["title"], e["source"]) for e in entries] == [("A", "a.md"), ("C?", "b/c.yaml")]
    with pytest.raises(ValidationFailed, match="no such file"):
        read_path(tmp_path / "missing")


def test_the_sample_knowledge_base_loads():
    entries = read_path(Path(__file__).parent.parent / "bot" / "sample_kb")
    assert len(entries) >= 40 and len({e["title"] for e in entries}) == len(entries)


# ---------------------------------------------------------------- chunking and retrieval


def test_long_pages_are_split_at_headings_and_short_answers_stay_whole():
    page = "Intro text.\n\n## Install\n\nRun make.\n\n## Configure\n\nSet variables.\n"
    passages = chunk_entry(7, "Guide", page, ["setup"])
    assert [(p.heading, p.text) for p in passages] == [(None, "Intro text."), ("Install", "Run make."), ("Configure", "Set variables.")]
    assert all(p.title == "Guide" and p.tags == ("setup",) and p.entry_id == 7 for p in passages)
    assert len(chunk_entry(1, "Q", "A short answer.")) == 1
    long = "\n\n".join(f"Paragraph {n} " + "word " * 60 for n in range(10))
    assert all(len(p.text) <= 1200 for p in chunk_entry(1, "Long", long))


def test_edit_distance_counts_swaps_once():
    assert edit_distance("emial", "email") == 1
    assert edit_distance("widgit", "widget") == 1
    assert edit_distance("color", "colour") == 1
    assert edit_distance("abc", "xyz", limit=2) == 3


INDEX = Index.build(
    [p for n, (t, a) in enumerate(
        [("How much does it cost?", "deskbell is free and open source."),
         ("How do I add the chat widget to my website?", "Paste one script tag into your pages."),
         ("Can I get email notifications?", "Set SMTP_URL and notify_emails.")], 1)
     for p in chunk_entry(n, t, a)]
)


@pytest.mark.parametrize(
    ("question", "entry"),
    [("what is the price", 1), ("is it free?", 1), ("embed the chat on my site", 2), ("emial notifications", 3),
     ("how do i add the widgit", 2)],
)
def test_paraphrases_and_typos_find_the_entry(question, entry):
    assert INDEX.search(question)[0].passage.entry_id == entry


@pytest.mark.parametrize("question", ["what licnese is it", "pricng"])
def test_a_typo_of_a_lexicon_word_the_entries_lack_finds_them_through_its_synonyms(question):
    """ "licnese" is closest to "license", a lexicon word no entry uses; its synonym "opensource" (entry 1) counts."""
    hits = INDEX.search(question)
    assert hits and hits[0].passage.entry_id == 1 and hits[0].coverage > 0.5


def test_questions_about_something_else_have_low_confidence():
    best = INDEX.search("what's the weather in paris")
    assert not best or best[0].confidence < 0.3
    assert INDEX.search("what") == []  # only stopwords


# ---------------------------------------------------------------- storage


async def test_importing_again_updates_by_title_and_replace_mirrors_the_file(services: Services):
    async with services.db.write() as session:
        widget = await create_widget(session, {"name": "Shop"})
        assert await import_entries(session, widget.id, [{"title": "A?", "answer": "1"}, {"title": "B?", "answer": "2"}]) == (2, 0)
        assert await import_entries(session, widget.id, [{"title": "a?", "answer": "1 changed"}]) == (0, 1)
        assert await import_entries(session, widget.id, [{"title": "C?", "answer": "3"}], replace=True) == (1, 0)
        titles = [e.title for e in await list_entries(session, widget.id)]
    assert titles == ["C?"]


async def test_the_index_is_rebuilt_only_when_entries_change(services: Services):
    cache = IndexCache()
    async with services.db.write() as session:
        widget = await create_widget(session, {"name": "Shop"})
        await create_entry(session, widget.id, {"title": "Shipping?", "answer": "Free over 50 euros."})
    async with services.db.read() as session:
        first = await cache.index_for(session, widget.id)
        assert await cache.index_for(session, widget.id) is first
    async with services.db.write() as session:
        entry = (await session.execute(select(KnowledgeEntry))).scalar_one()
        entry.answer = "Free over 30 euros."
    async with services.db.read() as session:
        rebuilt = await cache.index_for(session, widget.id)
    assert rebuilt is not first and "30 euros" in rebuilt.search("shipping")[0].passage.text


class GatedHashing(HashingEmbedder):
    """The stand-in model, embedding only once the test opens the gate: a build that never ends by itself."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.gate.wait(timeout=30)  # never hang a test run
        return super().embed(texts)


async def _index_now(services: Services, cache: IndexCache, widget_id: int) -> Index:
    async with services.db.read() as session:
        return await asyncio.wait_for(cache.index_now(session, widget_id), timeout=10.0)  # the gate holds 30 s


async def _index_for(services: Services, cache: IndexCache, widget_id: int) -> Index:
    async with services.db.read() as session:
        return await cache.index_for(session, widget_id)


async def test_while_embeddings_build_the_keyword_index_answers_and_one_build_serves_all(services: Services):
    model = GatedHashing()
    cache = IndexCache(embedder=model)
    async with services.db.write() as session:
        widget = await create_widget(session, {"name": "Shop"})
        await create_entry(session, widget.id, {"title": "Shipping?", "answer": "Free over 50 euros."})
    stand_in = await _index_now(services, cache, widget.id)
    assert stand_in.dense is None and "50 euros" in stand_in.search("shipping")[0].passage.text
    assert await _index_now(services, cache, widget.id) is stand_in  # one stand-in, one build, per version
    waiting = asyncio.create_task(_index_for(services, cache, widget.id))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    model.gate.set()
    built = await waiting  # the build the first question started, not a second one
    assert built.dense is not None and await _index_now(services, cache, widget.id) is built

    model.gate.clear()  # an edit: the next build waits at the gate again
    async with services.db.write() as session:
        await import_entries(session, widget.id, [{"title": "Shipping?", "answer": "Free over 30 euros."}])
    try:
        edited = await _index_now(services, cache, widget.id)
        assert edited.dense is None and "30 euros" in edited.search("shipping")[0].passage.text
    finally:
        model.gate.set()
    rebuilt = await _index_for(services, cache, widget.id)
    assert rebuilt.dense is not None and "30 euros" in rebuilt.search("shipping")[0].passage.text


async def test_with_a_broken_model_the_keyword_index_is_the_index(services: Services):
    model = HashingEmbedder(fail=True)
    cache = IndexCache(embedder=model)
    async with services.db.write() as session:
        widget = await create_widget(session, {"name": "Shop"})
        await create_entry(session, widget.id, {"title": "Shipping?", "answer": "Free over 50 euros."})
    assert (await _index_now(services, cache, widget.id)).dense is None  # the build behind it finds the model broken
    built = await _index_for(services, cache, widget.id)
    assert built.dense is None and await _index_now(services, cache, widget.id) is built
    assert len(model.calls) == 1  # tried once, never again


# ---------------------------------------------------------------- API

KB = "/api/v1/widgets/{id}/knowledge"


async def test_entries_can_be_created_listed_changed_and_deleted(api, widget):
    base = KB.format(id=widget.id)
    created = await api.post(base, {"title": "Do you ship abroad?", "answer": "Yes, to the EU.", "tags": ["shipping"]})
    assert created["widget_id"] == widget.id and created["tags"] == ["shipping"] and created["source"] is None
    assert await api.get(f"{base}/{created['id']}") == created
    changed = await api.patch(f"{base}/{created['id']}", {"answer": "Yes, worldwide.", "tags": []})
    assert changed["answer"] == "Yes, worldwide." and changed["tags"] == [] and changed["title"] == created["title"]
    page = await api.get(base)
    assert [e["id"] for e in page["items"]] == [created["id"]] and page["next_cursor"] is None
    await api.delete(f"{base}/{created['id']}")
    await api.error("GET", f"{base}/{created['id']}", 404)


async def test_bad_entries_name_every_bad_field(api, widget):
    error = await api.error("POST", KB.format(id=widget.id), 422, json={"answer": "", "tags": "x", "colour": 1})
    assert error["fields"].keys() == {"colour"}
    error = await api.error("POST", KB.format(id=widget.id), 422, json={"answer": "", "tags": "x"})
    assert set(error["fields"]) == {"title", "answer", "tags"}


async def test_an_entry_of_another_widget_or_an_unknown_widget_is_not_found(api, widget, services):
    async with services.db.write() as session:
        other = await create_widget(session, {"name": "Other"})
        entry = await create_entry(session, other.id, {"title": "Q?", "answer": "A."})
    await api.error("GET", f"{KB.format(id=widget.id)}/{entry.id}", 404)
    await api.error("GET", KB.format(id=999999), 404)


async def test_importing_text_over_the_api(api, widget):
    base = KB.format(id=widget.id)
    csv_text = "question,answer,tags\nDo you ship abroad?,Yes to the EU.,shipping\nReturns?,Within 30 days.,\n"
    result = await api.ok("POST", f"{base}/import", json={"format": "csv", "content": csv_text, "source": "faq.csv"})
    assert result == {"created": 2, "updated": 0, "total": 2}
    entries = (await api.get(base))["items"]
    assert {e["source"] for e in entries} == {"faq.csv"}
    error = await api.error("POST", f"{base}/import", 422, json={"format": "yaml", "content": "- question: A?\n"})
    assert "api.yaml#1" in error["message"]


async def test_trying_a_question_shows_the_answer_and_the_matches(api, widget, services):
    base = KB.format(id=widget.id)
    await api.post(base, {"title": "Do you ship abroad?", "answer": "Yes, to every EU country.", "tags": ["shipping"]})
    result = await api.ok("POST", f"{base}/ask", json={"question": "do you ship to other countries?"})
    assert result["kind"] == "answer" and result["answer"] == "Yes, to every EU country." and result["provider"] == "retrieval"
    assert result["matches"][0]["title"] == "Do you ship abroad?" and result["tokens"] == 0
    unknown = await api.ok("POST", f"{base}/ask", json={"question": "what's the weather like?"})
    assert unknown["kind"] == "ask_email" and unknown["reason"] == "low_confidence"
    assert unknown["actions"][0]["type"] == "offline_form"


async def test_assistant_settings_have_defaults_and_change_field_by_field(api, widget):
    path = f"/api/v1/widgets/{widget.id}/assistant"
    defaults = await api.get(path)
    assert defaults["name"] == "Assistant" and defaults["provider"] is None and defaults["escalate_on_low_confidence"] is True
    changed = await api.patch(path, {"booking_link": "https://cal.example/x", "escalation_keywords": ["Refund"]})
    assert changed == {**defaults, "booking_link": "https://cal.example/x", "escalation_keywords": ["refund"]}
    error = await api.error("PATCH", path, 422, json={"provider": "gpt", "booking_link": "cal.example"})
    assert set(error["fields"]) == {"provider", "booking_link"}


async def test_every_knowledge_operation_matches_the_openapi_document(api, widget):
    """One successful call per operation; ``api`` validates each answer against the document."""
    base = KB.format(id=widget.id)
    entry = await api.post(base, {"title": "Q?", "answer": "A."})
    await api.get(base)
    await api.get(f"{base}/{entry['id']}")
    await api.patch(f"{base}/{entry['id']}", {"tags": ["x"]})
    await api.ok("POST", f"{base}/import", json={"format": "markdown", "content": "# Title\n\nBody"})
    await api.ok("POST", f"{base}/ask", json={"question": "Q?"})
    await api.get(f"/api/v1/widgets/{widget.id}/assistant")
    await api.patch(f"/api/v1/widgets/{widget.id}/assistant", {"name": "Ada"})
    await api.delete(f"{base}/{entry['id']}")
    assert api.checked >= 9


# ---------------------------------------------------------------- command line


def test_kb_import_and_ask_from_the_command_line(empty_db_url, tmp_path: Path):
    assert deskbell(empty_db_url, "migrate").returncode == 0
    widget = _json(deskbell(empty_db_url, "widget", "create", "Shop", "--json"))
    faq = tmp_path / "faq.csv"
    faq.write_text("question,answer\nDo you ship abroad?,Yes to every EU country.\n")
    imported = _json(deskbell(empty_db_url, "kb", "import", str(faq), "--widget", widget["key"], "--json"))
    assert imported == {"widget_id": widget["id"], "created": 1, "updated": 0, "total": 1}
    asked = deskbell(empty_db_url, "kb", "ask", "do you ship to other countries", "--widget", widget["key"])
    assert asked.returncode == 0 and "Yes to every EU country." in asked.stdout and "Do you ship abroad?" in asked.stdout
    listed = _json(deskbell(empty_db_url, "kb", "list", "--widget", str(widget["id"]), "--json"))
    assert [e["title"] for e in listed["items"]] == ["Do you ship abroad?"]
    bad = deskbell(empty_db_url, "kb", "import", str(tmp_path / "nope.csv"), "--widget", widget["key"])
    assert bad.returncode != 0 and bad.stderr.strip().endswith("no such file or folder") and "Traceback" not in bad.stderr


async def knowledge_calls(services: Services, widget) -> dict[str, tuple[str, str, object]]:  # type: ignore[no-untyped-def]
    """One successful call per knowledge operation, for the API contract test in test_api_openapi.py."""
    async with services.db.write() as session:
        kept = await create_entry(session, widget.id, {"title": "Do you ship abroad?", "answer": "Yes, to the EU.", "tags": ["shipping"]})
        doomed = await create_entry(session, widget.id, {"title": "Old question?", "answer": "Old answer."})
    base = KB.format(id=widget.id)
    return {
        "listKnowledgeEntries": ("GET", f"{base}?limit=5", None),
        "createKnowledgeEntry": ("POST", base, {"title": "Returns?", "answer": "Within 30 days.", "tags": ["returns"]}),
        "getKnowledgeEntry": ("GET", f"{base}/{kept.id}", None),
        "updateKnowledgeEntry": ("PATCH", f"{base}/{kept.id}", {"tags": ["shipping", "eu"]}),
        "deleteKnowledgeEntry": ("DELETE", f"{base}/{doomed.id}", None),
        "importKnowledge": ("POST", f"{base}/import", {"format": "yaml", "content": "- question: Hours?\n  answer: 9 to 5.\n"}),
        "askKnowledge": ("POST", f"{base}/ask", {"question": "do you ship to other countries?"}),
        "getAssistantSettings": ("GET", f"/api/v1/widgets/{widget.id}/assistant", None),
        "updateAssistantSettings": ("PATCH", f"/api/v1/widgets/{widget.id}/assistant", {"booking_link": "https://cal.example/x"}),
    }


async def test_the_demo_seed_turns_the_assistant_on_with_the_sample_knowledge_base(services: Services):
    from bot.seed import seed_demo
    from core.knowledge import count_entries

    async with services.db.write() as session:
        demo = await seed_demo(session)
    async with services.db.read() as session:
        widget = (await session.execute(select(Widget).where(Widget.key == demo.widget_key))).scalar_one()
        assert widget.ai_enabled and await count_entries(session, widget.id) >= 40
    status = await services.watcher.status_of(widget)
    assert status.mode == "ai"  # nobody on duty: the assistant answers, with no account anywhere
    result = await services.assistant.ask(widget, "how do I connect slack?")  # type: ignore[union-attr]
    assert result["kind"] == "answer" and result["matches"][0]["title"] == "How do I connect deskbell to Slack?"
