//! HTML pages. Every inline script and style carries the response's CSP nonce; anything
//! without it does not run (see `http::headers`).

use axum::Extension;
use axum::response::{Html, IntoResponse};

use crate::http::headers::CspNonce;

/// `GET /`: a status page for people who open the server in a browser.
pub async fn home() -> impl IntoResponse {
    let drawn = CspNonce::generate();
    let nonce = drawn.as_ref().map_or("", |n| n.0.as_str());
    let page = Html(format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Rampart</title>
<style nonce="{nonce}">body{{font-family:system-ui,sans-serif;margin:3rem;max-width:40rem}}code{{background:#eee;padding:0 .2em}}</style>
</head>
<body>
<h1>Rampart is running</h1>
<p>The API is under <code>/v1</code>; liveness at <code>/healthz</code>, readiness at <code>/readyz</code>.</p>
<p id="status">Checking readiness…</p>
<script nonce="{nonce}">
fetch('/readyz').then(r => r.json()).then(j => {{
  document.getElementById('status').textContent = 'Database: ' + (j.status === 'ready' ? 'ready' : 'unavailable');
}}).catch(() => {{ document.getElementById('status').textContent = 'Database: unavailable'; }});
</script>
</body>
</html>
"#
    ));
    (drawn.map(Extension), page)
}
