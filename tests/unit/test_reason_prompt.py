"""The reason service's prompts and answer clean-up (mcp_gemma.llm.reason), exact values."""

from __future__ import annotations

from mcp_gemma.llm.reason import COMPLETION_STOPS, FEW_SHOT, chat_messages, clean_answer, completion_prompt


def test_completion_prompt_is_few_shot_and_ends_where_the_answer_starts() -> None:
    prompt = completion_prompt("Where is  it?", "It is\nhere.", [(7, "The  thing sits\nthere.")])
    assert prompt.startswith(FEW_SHOT)
    assert prompt.endswith(
        "Context: [chunk:7] The thing sits there. It is here.\nQuestion: Where is it?\nAnswer:"
    )
    assert completion_prompt("Q?", None, []) == f"{FEW_SHOT}Question: Q?\nAnswer:"
    assert "\nQuestion:" in COMPLETION_STOPS and "\n\n" in COMPLETION_STOPS


def test_chat_messages_carry_the_context_and_no_answer_label() -> None:
    system, user = chat_messages("Q?", "C.", [(3, "T.")])
    assert (system.role, user.role) == ("system", "user")
    assert user.content == "Knowledge base:\n[chunk:3] T.\n\nContext:\nC.\n\nQuestion: Q?"


def test_clean_answer_drops_echoes_and_repeated_lines() -> None:
    assert clean_answer("  Paris \n") == "Paris"
    assert clean_answer("Answer: Paris") == "Paris"
    assert clean_answer("Paris\nIt is big.\nParis\nIt is big.") == "Paris\nIt is big."
    assert clean_answer("one\n\ntwo") == "one\n\ntwo"
