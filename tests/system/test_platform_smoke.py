"""Smoke tests of the shared fixtures and platform endpoints (details in the other test files)."""


def test_root_lists_models_through_function_call(call):
    reply = call("GET", "/")
    assert reply.status == 200
    assert "sampleapi" in [m["name"] for m in reply.json()["models"]]


def test_health_over_http(live_server):
    import httpx

    body = httpx.get(live_server + "/health").json()
    assert body["status"] == "ok"


def test_azurite_accepts_uploads(azurite, tmp_path):
    (tmp_path / "a.txt").write_text("x")
    azurite.upload_folder(tmp_path, container="smoke")
    names = [b.name for b in azurite.service().get_container_client("smoke").list_blobs()]
    assert names == ["a.txt"]
