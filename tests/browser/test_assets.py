"""The embedded web assets: served with their types, gzipped, revalidated by ETag, and
within the size budgets (console first load <= 150 KB gzipped, widget <= 20 KB)."""

import gzip
import re
import urllib.request


def fetch(desk, path, headers=None):
    req = urllib.request.Request(desk.base + path, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def console_files(desk):
    """The files a first load of the console fetches: the page, what it links, and every
    module the import map and the scripts reach."""
    _, _, html = fetch(desk, "/console/")
    html = html.decode()
    todo = ["index.html"]
    todo += re.findall(r'(?:href|src)="(?:\./)?([\w./-]+\.(?:css|js))"', html)
    todo += re.findall(r'"\./([\w./-]+\.js)"', html)
    seen = []
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.append(name)
        if name.endswith(".js"):
            _, _, body = fetch(desk, "/console/" + name)
            base = name.rsplit("/", 1)[0] + "/" if "/" in name else ""
            for dep in re.findall(r"from\s*['\"]\./([\w./-]+\.js)['\"]", body.decode()):
                todo.append(base + dep)
    return seen


def test_console_first_load_is_within_budget(desk):
    total = 0
    files = console_files(desk)
    for name in files:
        path = "/console/" if name == "index.html" else "/console/" + name
        status, headers, body = fetch(desk, path, {"Accept-Encoding": "gzip"})
        assert status == 200, name
        assert headers["Content-Encoding"] == "gzip", name
        assert gzip.decompress(body), name
        total += len(body)
    print(f"console first load: {len(files)} files, {total} bytes gzipped")
    # Every module the page loads is counted: the entry, the views and the vendored library.
    assert {"app.js", "inbox.js", "ticket.js", "vendor/preact.module.js", "vendor/hooks.module.js"} <= set(files)
    assert total <= 150 * 1024


def test_widget_is_within_budget_and_embeddable_anywhere(desk):
    status, headers, body = fetch(desk, "/widget.js", {"Accept-Encoding": "gzip"})
    assert status == 200
    assert headers["Content-Type"].startswith("text/javascript")
    assert headers["Access-Control-Allow-Origin"] == "*"
    print(f"widget.js: {len(body)} bytes gzipped")
    assert len(body) <= 20 * 1024


def test_assets_revalidate_with_etag(desk):
    status, headers, _ = fetch(desk, "/console/app.js")
    assert status == 200
    etag = headers["ETag"]
    status, _, body = fetch(desk, "/console/app.js", {"If-None-Match": etag})
    assert status == 304 and body == b""


def test_unknown_asset_is_a_json_404(desk):
    status, headers, body = fetch(desk, "/console/nope.js")
    assert status == 404
    assert b'"not_found"' in body
