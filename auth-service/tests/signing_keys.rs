//! Signing private keys at rest: sealed with a key-encryption key (KEK) from the
//! environment, sealed in place by `signing-key encrypt`, re-sealed when the KEK
//! rotates; a key that does not open stops the service from starting.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use axum::http::{Method, StatusCode};
use common::*;
use edge_auth_service::audit::Ctx;
use edge_auth_service::secrets::{Kek, KeyRing};
use edge_auth_service::service::{Options, Service};
use edge_auth_service::{store, Error};
use serde_json::json;

const K1: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
const K2: &str = "f0e1d2c3b4a5968778695a4b3c2d1e0f00112233445566778899aabbccddeeff";

fn ring(current: Option<&str>, previous: Option<&str>) -> KeyRing {
    match current {
        None => KeyRing::none(),
        Some(c) => KeyRing::new(
            Kek::from_hex("K", c).unwrap(),
            previous.map(|p| Kek::from_hex("P", p).unwrap()),
        )
        .unwrap(),
    }
}

fn with(keks: KeyRing) -> Options {
    Options {
        keks,
        ..Options::default()
    }
}

/// The app again on the same database, with other KEKs.
fn reopen(app: TestApp, keks: KeyRing) -> TestApp {
    let TestApp {
        dir,
        config,
        backend,
        clock,
        svc,
        router,
        ..
    } = app;
    drop(router);
    sync(|| drop(svc));
    TestApp::open(dir, config, backend, clock, with(keks))
}

/// Opening the database with these KEKs: `Err` when a published key does not open.
fn try_open(app: &TestApp, keks: KeyRing) -> Result<Service, Error> {
    let opts = Options {
        tokens: Some(token_config()),
        ..with(keks)
    };
    sync(|| Service::open_with(&app.config, opts, app.clock.clone()))
}

fn stored_keys(app: &TestApp) -> Vec<(Vec<u8>, Option<String>)> {
    sync(|| app.svc.db().read(store::all_signing_keys))
        .unwrap()
        .into_iter()
        .map(|k| (k.private_key, k.kek_id))
        .collect()
}

async fn a_session_works(app: &TestApp) {
    let (_, raw) = app.create_key("acme", "svc", &[], None).await;
    let r = app.sdk("/v1/sessions", &raw, Some(json!({"subject": "u"}))).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let jwks = app.call(Method::GET, "/.well-known/jwks.json", None, None).await;
    assert_eq!(jwks.status, StatusCode::OK);
    assert!(!jwks.body["keys"].as_array().unwrap().is_empty());
}

async fn keys_are_sealed_with_the_kek(b: Backend) {
    let app = TestApp::with_options(b, with(ring(Some(K1), None)));
    app.create_tenant("acme").await;
    let id = ring(Some(K1), None).current_id().unwrap().to_owned();
    let stored = stored_keys(&app);
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].1.as_deref(), Some(id.as_str()), "the first key is sealed");
    assert_eq!(
        stored[0].0.len(),
        12 + 32 + 16,
        "nonce, sealed scalar, tag: no clear scalar"
    );
    a_session_works(&app).await;
    let r = app.admin(Method::POST, "/admin/v1/signing-keys/rotate", None).await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert!(stored_keys(&app).iter().all(|(_, k)| k.as_deref() == Some(id.as_str())));
    a_session_works(&app).await;
    // the KEK is needed to start: without it, or with another one, the service refuses
    for keks in [ring(None, None), ring(Some(K2), None)] {
        match try_open(&app, keks) {
            Err(Error::SigningKeySealed(_)) => {}
            other => panic!("started without the KEK: {:?}", other.err()),
        }
    }
}

async fn clear_keys_are_sealed_by_encrypt_and_the_kek_rotates(b: Backend) {
    // a database from before: keys in clear
    let app = TestApp::on(b);
    app.create_tenant("acme").await;
    assert_eq!(stored_keys(&app)[0].1, None);
    let clear = stored_keys(&app)[0].0.clone();
    // encrypting needs a KEK
    assert!(matches!(
        sync(|| app.svc.encrypt_signing_keys(&Ctx::cli())),
        Err(Error::InvalidRequest(_))
    ));

    // with a KEK: it starts (clear keys still open), and `encrypt` seals them
    let app = reopen(app, ring(Some(K1), None));
    a_session_works(&app).await;
    let out = sync(|| app.svc.encrypt_signing_keys(&Ctx::cli())).unwrap();
    assert_eq!((out["sealed"].clone(), out["resealed"].clone()), (json!(1), json!(0)));
    let stored = stored_keys(&app);
    assert!(stored[0].1.is_some());
    assert!(
        !stored[0].0.windows(clear.len()).any(|w| w == clear.as_slice()),
        "no clear copy left"
    );
    a_session_works(&app).await;
    let again = sync(|| app.svc.encrypt_signing_keys(&Ctx::cli())).unwrap();
    assert_eq!(again["sealed"], 0, "idempotent");

    // KEK rotation: the new KEK with the old as previous opens both, `encrypt` re-seals
    let app = reopen(app, ring(Some(K2), Some(K1)));
    a_session_works(&app).await;
    let out = sync(|| app.svc.encrypt_signing_keys(&Ctx::cli())).unwrap();
    assert_eq!((out["sealed"].clone(), out["resealed"].clone()), (json!(0), json!(1)));
    let k2 = ring(Some(K2), None).current_id().unwrap().to_owned();
    assert!(stored_keys(&app).iter().all(|(_, k)| k.as_deref() == Some(k2.as_str())));
    // the old KEK alone no longer opens anything; the new one alone does
    assert!(matches!(
        try_open(&app, ring(Some(K1), None)),
        Err(Error::SigningKeySealed(_))
    ));
    let app = reopen(app, ring(Some(K2), None));
    a_session_works(&app).await;
    let audited = app.audit().await;
    assert_eq!(
        audited.iter().filter(|e| e["action"] == "signing_key.encrypt").count(),
        4,
        "three done (two changing keys) and the refused one"
    );
}

async fn an_altered_sealed_key_stops_the_service(b: Backend) {
    let app = TestApp::with_options(b, with(ring(Some(K1), None)));
    let kid = sync(|| app.svc.db().read(store::all_signing_keys)).unwrap()[0]
        .kid
        .clone();
    let (mut blob, kek) = stored_keys(&app).remove(0);
    let last = blob.len() - 1;
    blob[last] ^= 1;
    sync(|| {
        app.svc
            .db()
            .write(|c| store::reseal_signing_key(c, &kid, &blob, kek.as_deref()))
    })
    .unwrap();
    assert!(matches!(
        try_open(&app, ring(Some(K1), None)),
        Err(Error::SigningKeySealed(_))
    ));
}

backends!(
    keys_are_sealed_with_the_kek,
    clear_keys_are_sealed_by_encrypt_and_the_kek_rotates,
    an_altered_sealed_key_stops_the_service,
);
