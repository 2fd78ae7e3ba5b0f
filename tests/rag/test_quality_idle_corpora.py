"""The corpora of the retrieval-quality benchmark added in its seventh and eighth rounds
(``benches/quality/corpora.py``): IDLE's manual and change logs, read from the ``idlelib`` that ships with
this Python (3.11.7 here and in CI), the ``os`` module's functions, and their hand-written query files.
No search runs; fast."""

from __future__ import annotations

import json

from benches.quality.check_data import TARGETED_CORPORA, targeted_entries
from benches.quality.corpora import (
    DATA_DIR,
    Doc,
    hand_keyword_targets,
    idle_help_docs,
    idle_history_docs,
    idle_news_docs,
    load_corpora,
    os_calls_docs,
    tk_calls_docs,
)


def test_idle_help_is_one_document_per_section_with_its_own_text() -> None:
    docs = {d.id: d for d in idle_help_docs()}
    calltips = docs["idle:calltips"]
    assert calltips.metadata == {"title": "Calltips", "source": "idlelib/help.html"}
    assert calltips.text.startswith(
        "Calltips\n\nA calltip is shown automatically when one types ( after the name of an accessible "
        "function. A function name expression may include dots and subscripts."
    )
    # a <pre> block stays code: indented lines, one per line (query generation skips indented blocks)
    usage = docs["idle:command-line-usage"].text
    assert (
        "\n\n    idle.py [-c command] [-d] [-e] [-h] [-i] [-r file] [-s] [-t title] [-] [arg] ...\n" in usage
    )
    assert "\n    -c command  run command in the shell window\n" in usage
    # a section's subsections are documents of their own; headings without text of their own are left out
    assert "A calltip is shown" not in docs["idle:completions"].text
    assert "idle:editing-and-navigation" not in docs and "idle:help-and-preferences" not in docs
    # the page's navigation and the headings' pilcrows are not part of any document
    for doc in docs.values():
        assert "Previous topic" not in doc.text and "\u00b6" not in doc.text, doc.id
        assert len(doc.text) >= 100 + len(doc.metadata["title"])


def test_idle_news_is_one_document_per_issue_with_its_release() -> None:
    docs = idle_news_docs()
    first = docs[0]
    assert first.id == "news:gh-104719"
    assert first.text == (
        "gh-104719: Remove IDLE's modification of tokenize.tabsize and test other uses of tokenize data and "
        "methods."
    )
    assert first.metadata == {"title": "gh-104719", "release": "3.11.z", "source": "idlelib/NEWS.txt"}
    ids = [d.id for d in docs]
    assert len(ids) == len(set(ids))
    # entries written "Issue #N" (older releases) are bpo-N like the rest
    old = next(d for d in docs if d.id == "news:bpo-28572")
    assert old.text.startswith("Issue #28572: Add 10% to coverage of IDLE's test_configdialog.")
    assert old.metadata["release"] == "3.7.0"


def test_idle_history_is_one_document_per_entry_of_the_old_change_log() -> None:
    docs = idle_history_docs()
    assert docs[0] == Doc(
        id="old:IDLE-2.7:01",
        text=(
            "idle.py modified and simplified to better support developing experimental versions of IDLE "
            "which are not installed in the standard location."
        ),
        metadata={"title": "IDLE 2.7", "release": "IDLE 2.7", "source": "idlelib/NEWS2x.txt"},
    )
    by_id = {d.id: d for d in docs}
    assert len(by_id) == len(docs) == 203
    # a release heading with a trailing note keeps its name only; an entry spans its wrapped lines
    assert by_id["old:IDLE-2.6:01"].text == (
        "Issue #2665: On Windows, an IDLE installation upgraded from an old version would not start if a "
        "custom theme was defined."
    )
    last = docs[-1]
    assert last.id == "old:IDLEfork-0.9-Alpha-1:07"
    assert last.text.endswith("Files removed: ExecBinding.py, loader.py, protocol.py, Remote.py, spawn.py")
    assert {d.metadata["release"] for d in docs} == {
        "IDLE 2.7", "IDLE 2.6", "IDLE 1.2", "IDLE 1.1", "IDLE 1.0", "IDLEfork 0.9b1",
        "IDLEfork 0.9 Alpha 2", "IDLEfork 0.9 Alpha 1",
    }  # fmt: skip


def test_os_calls_is_one_document_per_public_function_with_its_docstring() -> None:
    docs = {d.id: d for d in os_calls_docs()}
    assert docs["os:chown"].text.startswith(
        "os.chown(path, uid, gid, *, dir_fd=None, follow_symlinks=True)\n\n"
        "Change the owner and group id of path to the numeric uid and gid."
    )
    assert docs["os:chown"].metadata == {"title": "os.chown", "source": "os"}
    assert docs["os:makedirs"].text.startswith("os.makedirs(name, mode=511, exist_ok=False)\n\n")
    # classes (os.stat_result, os.DirEntry) and private names are not functions of the module
    assert "os:stat_result" not in docs and "os:DirEntry" not in docs
    assert not any(i.startswith("os:_") for i in docs)
    assert all(len(d.text.split("\n\n", 1)[1]) >= 60 for d in docs.values())


def test_tk_calls_is_one_document_per_method_with_its_docstring() -> None:
    docs = tk_calls_docs()
    by_id = {d.id: d for d in docs}
    assert len(by_id) == len(docs) == 173
    after = by_id["tk:Misc.after"]
    assert after.text.startswith(
        "tkinter.Misc.after(self, ms, func=None, *args)\n\nCall function once after given time."
    )
    assert after.metadata == {"title": "tkinter.Misc.after", "source": "tkinter"}
    # classes in order, methods sorted; a docstring an earlier method already has is left out
    assert [d.id.split(".")[0] for d in docs[:1]] == ["tk:Misc"]
    bodies = [d.text.split("\n\n", 1)[1] for d in docs]
    assert len(set(bodies)) == len(bodies) and all(len(b) >= 60 for b in bodies)


def test_the_held_out_query_files_cover_their_documents() -> None:
    help_ids = [d.id for d in idle_help_docs()]
    entries = json.loads((DATA_DIR / "quality_idle_help.json").read_text(encoding="utf-8"))
    assert sorted(e["doc"] for e in entries) == sorted(help_ids)  # one entry per section
    targeted = {
        "idle_news": idle_news_docs(),
        "idle_history": idle_history_docs(),
        "os_calls": os_calls_docs(),
        "tk_calls": tk_calls_docs(),
    }
    assert tuple(targeted) == TARGETED_CORPORA
    for name, docs in targeted.items():
        entries = json.loads((DATA_DIR / f"quality_{name}.json").read_text(encoding="utf-8"))
        firsts = [e["doc"] if isinstance(e["doc"], str) else e["doc"][0] for e in entries]
        assert firsts == hand_keyword_targets(sorted(d.id for d in docs)), name
        assert all(2 <= len(e["keyword"].split()) <= 4 for e in entries), name
    names = ["idle_help", "idle_news", "idle_history", "os_calls", "tk_calls", "prose"]
    corpora = load_corpora(names)
    assert [c.held_out for c in corpora] == [True, False, True, True, True, False]
    assert targeted_entries(corpora) == []
    for corpus in corpora[:5]:
        styles = [q.style for q in corpus.queries]
        expected = len(help_ids) if corpus.name == "idle_help" else 40
        assert styles.count("keyword") == styles.count("paraphrase") == expected, corpus.name
        assert styles.count("verbatim") > 0 and styles.count("rare_removed") > 0


def test_the_section_reader_nests_sections_whatever_else_is_left_open() -> None:
    """help.html's reader on a made-up page: unclosed void tags (<br>, <img>) inside a section and a section
    without an id do not shift which text belongs to which section."""
    from benches.quality.corpora import _SectionText

    reader = _SectionText()
    reader.feed(
        '<div>nav</div><section id="outer"><h2>Outer<a class="headerlink" href="#outer">\u00b6</a></h2>'
        "<p>First line<br>still outer <img src=x></p>"
        '<section id="inner"><h3>Inner</h3><pre>code()\nmore()</pre><p>Inner text.</p></section>'
        "<section><p>no id</p></section>"
        "<p>Outer again.</p></section><footer>foot</footer>"
    )
    reader.close()
    got = {sec_id: (title, " ".join(text.split())) for sec_id, title, text in reader.sections}
    assert got == {
        "inner": ("Inner", "code() more() Inner text."),
        "outer": ("Outer", "First line still outer Outer again."),
    }
    inner = next(text for sec_id, _, text in reader.sections if sec_id == "inner")
    assert "    code()\n    more()" in inner
