"""``/v1/documents``, ``/v1/search`` and ``/v1/research`` against a running server, with real embeddings."""

from __future__ import annotations

import json
from typing import Any

import httpx

from .conftest import MAX_BODY

PROBLEM = "application/problem+json"
DOCS = {
    "volcano": "Volcanoes erupt molten rock called lava from deep inside the Earth.",
    "violin": "The violin is a string instrument played with a bow.",
    "bread": "Bakers knead dough from flour, water and yeast, then bake it into bread.",
}


def ingest_three(api: httpx.Client, tag: str) -> dict[str, str]:
    ids = {}
    for key, text in DOCS.items():
        doc_id = f"{tag}-{key}"
        r = api.post("/v1/documents", json={"text": text, "id": doc_id, "metadata": {"tag": tag}})
        assert r.status_code == 200, r.text
        assert r.json()["id"] == doc_id and r.json()["status"] == "created"
        assert r.json()["characters"] == len(text)
        ids[key] = doc_id
    return ids


def problem(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM
    body: dict[str, Any] = r.json()
    assert body["status"] == status and body["title"] and body["detail"]
    assert "Traceback" not in r.text
    return body


def test_ingest_search_list_get_delete(api: httpx.Client, tag: str) -> None:
    ids = ingest_three(api, tag)
    again = api.post(
        "/v1/documents", json={"text": DOCS["violin"], "id": ids["violin"], "metadata": {"tag": tag}}
    )
    assert again.json()["status"] == "unchanged"
    where = {"tag": tag}
    for mode, query, expect in (
        ("vector", "molten lava from a mountain", "volcano"),
        ("hybrid", "a bow and strings", "violin"),
        ("semantic", "yeast and flour", "bread"),
    ):
        r = api.post("/v1/search", json={"query": query, "mode": mode, "limit": 3, "filter": where})
        assert r.status_code == 200, r.text
        out = r.json()
        found = [h["doc_id"] for h in out.get("hits", out.get("passages", []))]
        assert found[0] == ids[expect], (mode, found)
        assert sorted(found) == sorted(ids.values())
        assert out["searched_chunks"] == 3
    listed = api.get("/v1/documents", params={"filter": json.dumps(where), "limit": 2})
    assert listed.status_code == 200
    page = listed.json()
    assert (page["total"], page["offset"], page["next_offset"]) == (3, 0, 2)
    assert [d["id"] for d in page["documents"]] == [ids["bread"], ids["violin"]]  # newest first
    doc = api.get(f"/v1/documents/{ids['violin']}", params={"include_chunks": "true"}).json()
    assert doc["text"] == DOCS["violin"] and doc["metadata"] == {"tag": tag}
    assert [c["text"] for c in doc["chunk_list"]] == [DOCS["violin"]]
    gone = api.delete(f"/v1/documents/{ids['violin']}")
    assert gone.json() == {"id": ids["violin"], "deleted": True, "chunks_removed": 1}
    assert ids["violin"] in problem(api.get(f"/v1/documents/{ids['violin']}"), 404)["detail"]
    problem(api.delete(f"/v1/documents/{ids['violin']}"), 404)
    left = api.get("/v1/documents", params={"filter": json.dumps(where)}).json()
    assert sorted(d["id"] for d in left["documents"]) == sorted([ids["volcano"], ids["bread"]])


def test_ids_with_a_slash_and_file_upload(api: httpx.Client, tag: str) -> None:
    text = "# Notes\n\nThe kettle is in the second cupboard.\n"
    r = api.post(
        "/v1/documents",
        files={"file": (f"{tag}.md", text.encode(), "text/markdown")},
        data={"metadata": json.dumps({"tag": tag})},
    )
    assert r.status_code == 200, r.text
    assert (r.json()["id"], r.json()["status"], r.json()["source"]) == (
        f"file:{tag}.md",
        "created",
        f"{tag}.md",
    )
    doc = api.get(f"/v1/documents/file:{tag}.md").json()
    assert doc["text"] == text.strip() or doc["text"] == text
    assert doc["metadata"] == {"format": "md", "source": f"{tag}.md", "tag": tag}
    slashed = api.post("/v1/documents", json={"text": "a/b doc", "id": f"{tag}/a/b"})
    assert slashed.status_code == 200
    assert api.get(f"/v1/documents/{tag}/a/b").json()["text"] == "a/b doc"
    assert api.delete(f"/v1/documents/{tag}/a/b").json()["deleted"] is True


def test_bad_requests_are_problems_naming_the_field(api: httpx.Client) -> None:
    body = problem(api.post("/v1/search", json={"query": "x", "limit": 0}), 422)
    assert "body.limit" in body["detail"] and body["errors"][0]["location"] == "body.limit"
    assert "body.colour" in problem(api.post("/v1/search", json={"query": "x", "colour": 1}), 422)["detail"]
    mixed = problem(api.post("/v1/search", json={"query": "x", "mode": "vector", "diversity": 0.5}), 422)
    assert "diversity is for mode semantic" in mixed["detail"]
    assert "body.text" in problem(api.post("/v1/documents", json={"text": ""}), 422)["detail"]
    assert "not valid JSON" in problem(api.get("/v1/documents", params={"filter": "{nope"}), 422)["detail"]
    assert (
        "unsupported content type text/plain"
        in problem(api.post("/v1/documents", content=b"hello", headers={"content-type": "text/plain"}), 415)[
            "detail"
        ]
    )
    bad_meta = api.post("/v1/documents", files={"file": ("a.txt", b"a")}, data={"metadata": "[1]"})
    assert "metadata must be a JSON object" in problem(bad_meta, 422)["detail"]
    upload = api.post(
        "/v1/documents", files={"file": ("x.exe", b"\x7fELF\x02\x01\x00", "application/octet-stream")}
    )
    assert "x.exe is an ELF executable, not text" in problem(upload, 422)["detail"]
    assert "/v1/nothing" in problem(api.get("/v1/nothing"), 404)["detail"]
    assert "PUT is not allowed" in problem(api.put("/v1/search"), 405)["detail"]


def test_oversize_bodies_get_413(api: httpx.Client) -> None:
    big = {"text": "x" * (MAX_BODY + 1)}
    declared = problem(api.post("/v1/documents", json=big), 413)
    assert f"http.max_request_bytes={MAX_BODY:,}" in declared["detail"]

    def chunks() -> Any:  # no Content-Length: the limit applies while reading
        yield b'{"text": "'
        for _ in range(MAX_BODY // 4096 + 1):
            yield b"y" * 4096
        yield b'"}'

    streamed = api.post("/v1/documents", content=chunks(), headers={"content-type": "application/json"})
    assert f"http.max_request_bytes={MAX_BODY:,}" in problem(streamed, 413)["detail"]


def test_research_without_the_model_returns_evidence(api: httpx.Client, tag: str) -> None:
    ids = ingest_three(api, tag)
    r = api.post(
        "/v1/research",
        json={"query": "how is bread made?", "answer": False, "use_memory": False, "filter": {"tag": tag}},
    )
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["answer"] is None
    assert (report["evidence"][0]["kind"], report["evidence"][0]["source"]) == ("document", ids["bread"])
