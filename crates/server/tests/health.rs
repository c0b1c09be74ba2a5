//! Liveness and readiness: `/readyz` answers 503 in the envelope when the database is gone,
//! while `/healthz` still says the process is up.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

mod common;

use common::{TestApp, error_of};

both_backends!(readiness_follows_the_database);

async fn readiness_follows_the_database(app: TestApp) {
    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    app.store.close().await;
    let (status, code, _) =
        error_of(app.client.get(app.url("/readyz")).send().await.unwrap()).await;
    assert_eq!((status, code.as_str()), (503, "UNAVAILABLE"));
    assert_eq!(
        app.client
            .get(app.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}
