//! Container creation against a real Azurite.

use std::time::Duration;

use chunkcache::store::azure_admin::{AzureAdminErrorKind, ensure_container};
use url::Url;

use crate::support::servers::Azurite;

const TIMEOUT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn creates_a_missing_container_once() {
    let azurite = Azurite::start();
    let endpoint = Url::parse(&azurite.endpoint).unwrap();
    let created = ensure_container(&endpoint, azurite.account, azurite.key, "build-cache", TIMEOUT).await.unwrap();
    assert!(created, "a new container must be reported as created");
    let again = ensure_container(&endpoint, azurite.account, azurite.key, "build-cache", TIMEOUT).await.unwrap();
    assert!(!again, "an existing container must be reported as already there");

    // A trailing slash on the endpoint addresses the same container.
    let slash = Url::parse(&format!("{}/", azurite.endpoint)).unwrap();
    let third = ensure_container(&slash, azurite.account, azurite.key, "build-cache", TIMEOUT).await.unwrap();
    assert!(!third);
}

#[tokio::test]
async fn wrong_key_is_reported_as_such_without_the_key() {
    let azurite = Azurite::start();
    let endpoint = Url::parse(&azurite.endpoint).unwrap();
    // Valid base64, 64 bytes like a real key, but not the account's key.
    let wrong_key = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAxMjM0NTY3ODk6Kw==";
    let err = ensure_container(&endpoint, azurite.account, wrong_key, "build-cache", TIMEOUT).await.unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err.kind, AzureAdminErrorKind::WrongAccountKey { .. }), "{msg}");
    assert!(msg.contains("account key is wrong"), "{msg}");
    assert!(msg.contains("devstoreaccount1") && msg.contains("build-cache"), "{msg}");
    assert!(!msg.contains(wrong_key) && !msg.contains(azurite.key), "{msg}");
}

#[tokio::test]
async fn invalid_container_name_is_rejected_with_the_rules() {
    let azurite = Azurite::start();
    let endpoint = Url::parse(&azurite.endpoint).unwrap();
    let err = ensure_container(&endpoint, azurite.account, azurite.key, "My_Cache", TIMEOUT).await.unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err.kind, AzureAdminErrorKind::InvalidContainerName { .. }), "{msg}");
    assert!(msg.contains("\"My_Cache\"") && msg.contains("lowercase"), "{msg}");
}

#[tokio::test]
async fn unreachable_endpoint_names_account_and_container() {
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let endpoint = Url::parse(&format!("http://127.0.0.1:{port}/devstoreaccount1")).unwrap();
    let err = ensure_container(&endpoint, Azurite::ACCOUNT, Azurite::KEY, "build-cache", TIMEOUT).await.unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err.kind, AzureAdminErrorKind::Request { .. }), "{msg}");
    assert!(msg.contains("devstoreaccount1") && msg.contains("build-cache"), "{msg}");
    assert!(!msg.contains(Azurite::KEY), "{msg}");
}
