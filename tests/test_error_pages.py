"""Unknown API paths answer in the protocol's error shape; web pages keep HTML."""


def test_unknown_api_path_is_json_404(client, db):
    response = client.get("/api/v1/no/such/thing")
    assert response.status_code == 404
    assert response.json() == {"code": "not_found", "message": "No such endpoint.", "fields": {}}


def test_attachment_path_with_encoded_slash_is_json_404(client, db):
    response = client.put("/api/v1/attachments/ab%2Fcd", b"x", content_type="image/png")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


def test_unknown_page_is_html_404(client, db):
    response = client.get("/no/such/page")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")
