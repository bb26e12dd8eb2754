//! GCS credentials from workload identity federation: the Harness fork's `project_number`, `pool_id`,
//! `provider_id`, `service_account_email` and `oidc_token_id` settings, as an `object_store`
//! [`CredentialProvider`] that [`crate::store::backend`] hands to `GoogleCloudStorageBuilder::with_credentials`.
//!
//! The fork (`drone-plugins/drone-meltwater-cache`, `internal/gcp/tokenutil.go`, called from
//! `storage/backend/gcs/gcs.go` when all five settings are set) turns the OIDC token Harness issues for the
//! step into an access token of a service account, in two calls:
//! 1. Google STS (`POST https://sts.googleapis.com/v1/token`) exchanges the OIDC token for a federated token:
//!    the token-exchange grant, the token as an `id_token` subject token, the audience
//!    `//iam.googleapis.com/projects/{project_number}/locations/global/workloadIdentityPools/{pool_id}/providers/{provider_id}`,
//!    the `cloud-platform` scope, and an access token asked for;
//! 2. IAM Credentials (`POST https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/{email}:generateAccessToken`,
//!    authorized with the federated token) gives an access token of `service_account_email` for the
//!    `cloud-platform` scope, for Google's default lifetime (one hour).
//!
//! The fork makes both calls once and uses the token for the whole step. Here the token is cached and both
//! calls are made again [`REFRESH_MARGIN`] before it expires, so a step that outlives the token keeps working
//! for as long as the OIDC token itself is accepted.
//!
//! Both endpoints can be moved (`gcp_sts_endpoint`, `gcp_iam_credentials_endpoint`): for private access
//! endpoints, and for the tests' stand-ins. Requests go through the stores' HTTP client settings (timeouts,
//! `ca_bundle`).
//!
//! Nothing secret reaches a message: errors carry the endpoint, the audience, the service account and
//! Google's answer, from which the tokens sent are cut out should it quote one; the provider's `Debug` shows
//! no token either.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use object_store::CredentialProvider;
use object_store::gcp::GcpCredential;

use crate::core::secret::Secret;

/// Google STS, where the OIDC token is exchanged, when `gcp_sts_endpoint` is unset.
pub const DEFAULT_STS_ENDPOINT: &str = "https://sts.googleapis.com";

/// The IAM Service Account Credentials API, where the service account's token comes from, when
/// `gcp_iam_credentials_endpoint` is unset.
pub const DEFAULT_IAM_CREDENTIALS_ENDPOINT: &str = "https://iamcredentials.googleapis.com";

/// The scope the fork asks for in both calls, and the one `object_store`'s own GCS credentials use.
pub const CLOUD_PLATFORM_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

/// RFC 8693's token-exchange grant.
const TOKEN_EXCHANGE_GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// What the exchange asks for.
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
/// What the OIDC token is, as the fork declares it.
const ID_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:id_token";

/// How long before the service account's token expires it is asked for again, so that no request is sent
/// with a token that expires on the way (as for the AWS and Azure tokens).
pub const REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);

/// The settings of a workload identity federation, as the plugin reads them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkloadIdentityOptions {
    /// `project_number` (`PLUGIN_PROJECT_NUMBER`): the number of the project that holds the pool.
    pub project_number: String,
    /// `pool_id` (`PLUGIN_POOL_ID`): the workload identity pool.
    pub pool_id: String,
    /// `provider_id` (`PLUGIN_PROVIDER_ID`): the pool's OIDC provider, which trusts the token's issuer.
    pub provider_id: String,
    /// `service_account_email` (`PLUGIN_SERVICE_ACCOUNT_EMAIL`): the service account impersonated.
    pub service_account_email: String,
    /// `oidc_token_id` (`PLUGIN_OIDC_TOKEN_ID`): the OIDC token itself.
    pub oidc_token: Secret,
    /// `gcp_sts_endpoint` (`PLUGIN_GCP_STS_ENDPOINT`); [`DEFAULT_STS_ENDPOINT`] when unset.
    pub sts_endpoint: Option<String>,
    /// `gcp_iam_credentials_endpoint` (`PLUGIN_GCP_IAM_CREDENTIALS_ENDPOINT`);
    /// [`DEFAULT_IAM_CREDENTIALS_ENDPOINT`] when unset.
    pub iam_credentials_endpoint: Option<String>,
}

impl WorkloadIdentityOptions {
    /// The audience of the token exchange: the pool provider's full resource name, in the fork's format.
    pub fn audience(&self) -> String {
        format!(
            "//iam.googleapis.com/projects/{}/locations/global/workloadIdentityPools/{}/providers/{}",
            self.project_number, self.pool_id, self.provider_id
        )
    }

    /// The flow, for messages and the debug log: names the provider and the service account, never a token.
    pub fn describe(&self) -> String {
        format!(
            "GCS workload identity federation through provider {} as service account {}",
            self.audience(),
            self.service_account_email
        )
    }
}

/// A call of the flow that failed. Each message names the setting to check and what Google answered.
#[derive(Debug, thiserror::Error)]
pub enum WorkloadIdentityError {
    /// STS refused the token exchange (wrong audience, a token the provider does not accept, an expired one).
    #[error(
        "Google STS at {endpoint} refused to exchange the OIDC token (oidc_token_id, PLUGIN_OIDC_TOKEN_ID) for \
         the workload identity provider {audience}: HTTP {status}: {reason}; check project_number \
         (PLUGIN_PROJECT_NUMBER), pool_id (PLUGIN_POOL_ID) and provider_id (PLUGIN_PROVIDER_ID), that the \
         provider accepts this token's issuer, audience and attribute condition, and that the token has not \
         expired"
    )]
    ExchangeRefused {
        /// The token URL.
        endpoint: String,
        /// The audience sent.
        audience: String,
        /// The HTTP status.
        status: u16,
        /// Google's `error: error_description`, or the start of the body.
        reason: String,
    },
    /// IAM Credentials refused the service account's token (no such account, no permission to impersonate).
    #[error(
        "IAM Credentials at {endpoint} refused an access token for service_account_email \
         (PLUGIN_SERVICE_ACCOUNT_EMAIL) {email}: HTTP {status}: {reason}; check the email, and that the pool's \
         identities may impersonate it (the Workload Identity User role, roles/iam.workloadIdentityUser, on \
         the service account)"
    )]
    ImpersonationRefused {
        /// The `generateAccessToken` URL.
        endpoint: String,
        /// The service account.
        email: String,
        /// The HTTP status.
        status: u16,
        /// Google's `STATUS: message`, or the start of the body.
        reason: String,
    },
    /// An endpoint could not be reached, or its answer not read.
    #[error("cannot reach {service} at {endpoint} ({cause}); check {setting} and the network")]
    Unreachable {
        /// `Google STS` or `IAM Credentials`.
        service: &'static str,
        /// The URL.
        endpoint: String,
        /// The transport error.
        cause: String,
        /// The setting that moves the endpoint.
        setting: &'static str,
    },
    /// An endpoint answered 200 without a token.
    #[error("{service} at {endpoint} answered without an access token: is {setting} {service}'s endpoint?")]
    NoToken {
        /// `Google STS` or `IAM Credentials`.
        service: &'static str,
        /// The URL.
        endpoint: String,
        /// The setting that moves the endpoint.
        setting: &'static str,
    },
}

const STS: &str = "Google STS";
const STS_SETTING: &str = "gcp_sts_endpoint (PLUGIN_GCP_STS_ENDPOINT)";
const IAM: &str = "IAM Credentials";
const IAM_SETTING: &str = "gcp_iam_credentials_endpoint (PLUGIN_GCP_IAM_CREDENTIALS_ENDPOINT)";

/// The token URL of an STS endpoint: `{endpoint}/v1/token`.
///
/// # Errors
/// An endpoint that is not an absolute URL.
pub fn token_url(sts_endpoint: &str) -> Result<url::Url, url::ParseError> {
    with_segments(sts_endpoint, &["v1", "token"])
}

/// The `generateAccessToken` URL of a service account:
/// `{endpoint}/v1/projects/-/serviceAccounts/{email}:generateAccessToken`, the email encoded as one path
/// segment.
///
/// # Errors
/// An endpoint that is not an absolute URL.
pub fn generate_access_token_url(iam_endpoint: &str, email: &str) -> Result<url::Url, url::ParseError> {
    with_segments(iam_endpoint, &["v1", "projects", "-", "serviceAccounts", &format!("{email}:generateAccessToken")])
}

fn with_segments(base: &str, segments: &[&str]) -> Result<url::Url, url::ParseError> {
    let mut url = url::Url::parse(base)?;
    url.path_segments_mut()
        .map_err(|()| url::ParseError::RelativeUrlWithCannotBeABaseBase)?
        .pop_if_empty()
        .extend(segments);
    Ok(url)
}

/// A [`CredentialProvider`] that gives the impersonated service account's access token, cached until
/// [`REFRESH_MARGIN`] before it expires.
pub struct WorkloadIdentityCredential {
    options: WorkloadIdentityOptions,
    token_url: url::Url,
    generate_url: url::Url,
    client: reqwest::Client,
    /// Held across the calls so that concurrent requests wait for one exchange instead of each making one.
    cached: tokio::sync::Mutex<Option<(Arc<GcpCredential>, Instant)>>,
}

impl std::fmt::Debug for WorkloadIdentityCredential {
    // By hand: the cached token must not show.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkloadIdentityCredential")
            .field("options", &self.options)
            .field("token_url", &self.token_url.as_str())
            .field("generate_url", &self.generate_url.as_str())
            .finish_non_exhaustive()
    }
}

impl WorkloadIdentityCredential {
    /// A provider for `options` that calls STS at `token_url` and IAM Credentials at `generate_url` (see
    /// [`token_url`] and [`generate_access_token_url`]) through `client`, which carries the timeouts and
    /// trusted roots.
    pub fn new(
        options: WorkloadIdentityOptions,
        token_url: url::Url,
        generate_url: url::Url,
        client: reqwest::Client,
    ) -> Self {
        Self { options, token_url, generate_url, client, cached: tokio::sync::Mutex::new(None) }
    }

    /// The service account's access token: the cached one, or a fresh one from both calls.
    ///
    /// # Errors
    /// The call that failed, what Google answered, and what to check.
    pub async fn token(&self) -> Result<Arc<GcpCredential>, WorkloadIdentityError> {
        let mut cached = self.cached.lock().await;
        if let Some((credential, expires)) = cached.as_ref()
            && Instant::now() + REFRESH_MARGIN < *expires
        {
            return Ok(Arc::clone(credential));
        }
        let started = Instant::now();
        let federated = self.exchange().await?;
        let (token, lifetime) = self.impersonate(&federated).await?;
        let credential = Arc::new(GcpCredential { bearer: token.expose().to_owned() });
        *cached = Some((Arc::clone(&credential), started + lifetime));
        Ok(credential)
    }

    /// Step 1: the OIDC token for a federated token, at STS.
    async fn exchange(&self) -> Result<Secret, WorkloadIdentityError> {
        let audience = self.options.audience();
        let body = serde_json::json!({
            "grantType": TOKEN_EXCHANGE_GRANT,
            "audience": audience,
            "scope": CLOUD_PLATFORM_SCOPE,
            "requestedTokenType": ACCESS_TOKEN_TYPE,
            "subjectToken": self.options.oidc_token.expose().trim(),
            "subjectTokenType": ID_TOKEN_TYPE,
        });
        let endpoint = self.token_url.as_str();
        let (status, text) =
            self.post(STS, STS_SETTING, self.client.post(self.token_url.clone()).body(body.to_string())).await?;
        if !(200..300).contains(&status) {
            return Err(WorkloadIdentityError::ExchangeRefused {
                endpoint: endpoint.to_owned(),
                audience,
                status,
                reason: self.reason(&text, &[]),
            });
        }
        #[derive(serde::Deserialize)]
        struct ExchangeResponse {
            access_token: String,
        }
        serde_json::from_str::<ExchangeResponse>(&text)
            .ok()
            .filter(|answer| !answer.access_token.is_empty())
            .map(|answer| Secret::new(answer.access_token))
            .ok_or_else(|| WorkloadIdentityError::NoToken {
                service: STS,
                endpoint: endpoint.to_owned(),
                setting: STS_SETTING,
            })
    }

    /// Step 2: the federated token for the service account's access token and how long it lasts, at IAM
    /// Credentials.
    async fn impersonate(&self, federated: &Secret) -> Result<(Secret, Duration), WorkloadIdentityError> {
        let body = serde_json::json!({ "scope": [CLOUD_PLATFORM_SCOPE] });
        let request =
            self.client.post(self.generate_url.clone()).bearer_auth(federated.expose()).body(body.to_string());
        let endpoint = self.generate_url.as_str();
        let (status, text) = self.post(IAM, IAM_SETTING, request).await?;
        if !(200..300).contains(&status) {
            return Err(WorkloadIdentityError::ImpersonationRefused {
                endpoint: endpoint.to_owned(),
                email: self.options.service_account_email.clone(),
                status,
                reason: self.reason(&text, &[federated.expose()]),
            });
        }
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct GenerateResponse {
            access_token: String,
            expire_time: Option<String>,
        }
        let answer = serde_json::from_str::<GenerateResponse>(&text)
            .ok()
            .filter(|answer| !answer.access_token.is_empty())
            .ok_or_else(|| WorkloadIdentityError::NoToken {
                service: IAM,
                endpoint: endpoint.to_owned(),
                setting: IAM_SETTING,
            })?;
        let lifetime = lifetime(answer.expire_time.as_deref(), SystemTime::now());
        Ok((Secret::new(answer.access_token), lifetime))
    }

    /// Sends a request; the status and the body.
    async fn post(
        &self,
        service: &'static str,
        setting: &'static str,
        request: reqwest::RequestBuilder,
    ) -> Result<(u16, String), WorkloadIdentityError> {
        let endpoint = if service == STS { &self.token_url } else { &self.generate_url };
        let unreachable = |error: reqwest::Error| WorkloadIdentityError::Unreachable {
            service,
            endpoint: endpoint.to_string(),
            cause: crate::core::error::one_line(&error),
            setting,
        };
        let response = request
            .header("Content-Type", "application/json")
            .header("Accept", "application/json")
            .send()
            .await
            .map_err(unreachable)?;
        let status = response.status().as_u16();
        let text = response.text().await.map_err(unreachable)?;
        Ok((status, text))
    }

    /// Google's reason from an error body, without any of the tokens sent.
    fn reason(&self, body: &str, also_secret: &[&str]) -> String {
        let mut reason = error_reason(body);
        for secret in [self.options.oidc_token.expose().trim()].iter().chain(also_secret) {
            if !secret.is_empty() {
                reason = reason.replace(secret, "***");
            }
        }
        reason
    }
}

#[async_trait::async_trait]
impl CredentialProvider for WorkloadIdentityCredential {
    type Credential = GcpCredential;

    async fn get_credential(&self) -> object_store::Result<Arc<GcpCredential>> {
        self.token().await.map_err(|e| object_store::Error::Generic { store: "GCS", source: Box::new(e) })
    }
}

/// How long a token that expires at `expire_time` (RFC 3339, as IAM Credentials gives it) lasts from `now`.
/// A time that cannot be read, or one already past by the local clock, gives [`REFRESH_MARGIN`] plus one
/// minute: the token is used for a minute, then asked for again.
fn lifetime(expire_time: Option<&str>, now: SystemTime) -> Duration {
    let at_least = REFRESH_MARGIN + Duration::from_secs(60);
    expire_time
        .and_then(|text| chrono::DateTime::parse_from_rfc3339(text).ok())
        .and_then(|expires| SystemTime::from(expires).duration_since(now).ok())
        .map_or(at_least, |lifetime| lifetime.max(at_least))
}

/// Google's reason in an error body: STS answers as OAuth does (`{"error", "error_description"}`), the other
/// APIs with `{"error": {"code", "message", "status"}}`. Anything else gives the start of the body.
fn error_reason(body: &str) -> String {
    let one_line = |text: &str| text.split_whitespace().collect::<Vec<_>>().join(" ");
    if let Ok(serde_json::Value::Object(answer)) = serde_json::from_str::<serde_json::Value>(body) {
        match answer.get("error") {
            Some(serde_json::Value::String(code)) => {
                return match answer.get("error_description").and_then(serde_json::Value::as_str) {
                    Some(description) => format!("{code}: {}", one_line(description)),
                    None => code.clone(),
                };
            }
            Some(serde_json::Value::Object(error)) => {
                let message = error.get("message").and_then(serde_json::Value::as_str).map(one_line);
                match (error.get("status").and_then(serde_json::Value::as_str), message) {
                    (Some(status), Some(message)) => return format!("{status}: {message}"),
                    (None, Some(message)) => return message,
                    (Some(status), None) => return status.to_owned(),
                    (None, None) => {}
                }
            }
            _ => {}
        }
    }
    let start: String = one_line(body).chars().take(200).collect();
    if start.is_empty() { "(an empty body)".to_owned() } else { start }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> WorkloadIdentityOptions {
        WorkloadIdentityOptions {
            project_number: "123456789012".into(),
            pool_id: "harness-pool".into(),
            provider_id: "harness-provider".into(),
            service_account_email: "cache@project.iam.gserviceaccount.com".into(),
            oidc_token: Secret::new("eyJ.oidc.token"),
            sts_endpoint: None,
            iam_credentials_endpoint: None,
        }
    }

    #[test]
    fn the_audience_is_the_providers_resource_name_in_the_forks_format() {
        assert_eq!(
            options().audience(),
            "//iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/harness-pool/\
             providers/harness-provider"
        );
        let text = format!("{} {:?}", options().describe(), options());
        assert!(text.contains("as service account cache@project.iam.gserviceaccount.com"), "{text}");
        assert!(!text.contains("eyJ.oidc.token"), "{text}");
    }

    #[test]
    fn urls_follow_the_endpoints() {
        assert_eq!(token_url(DEFAULT_STS_ENDPOINT).unwrap().as_str(), "https://sts.googleapis.com/v1/token");
        assert_eq!(token_url("http://127.0.0.1:8080/").unwrap().as_str(), "http://127.0.0.1:8080/v1/token");
        assert_eq!(
            generate_access_token_url(DEFAULT_IAM_CREDENTIALS_ENDPOINT, "cache@project.iam.gserviceaccount.com")
                .unwrap()
                .as_str(),
            "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/\
             cache@project.iam.gserviceaccount.com:generateAccessToken"
        );
        // An email cannot add path segments.
        let odd = generate_access_token_url("https://iam.example", "a/../b@c").unwrap();
        assert_eq!(odd.path(), "/v1/projects/-/serviceAccounts/a%2F..%2Fb@c:generateAccessToken");
        assert!(token_url("sts.googleapis.com").is_err());
    }

    #[test]
    fn google_errors_become_one_line() {
        let sts = r#"{"error":"invalid_grant","error_description":"The audience in ID Token\n does not match."}"#;
        assert_eq!(error_reason(sts), "invalid_grant: The audience in ID Token does not match.");
        let iam = r#"{"error":{"code":403,"message":"Permission 'iam.serviceAccounts.getAccessToken' denied","status":"PERMISSION_DENIED"}}"#;
        assert_eq!(error_reason(iam), "PERMISSION_DENIED: Permission 'iam.serviceAccounts.getAccessToken' denied");
        assert_eq!(error_reason("<html>502  Bad Gateway</html>"), "<html>502 Bad Gateway</html>");
        assert_eq!(error_reason(""), "(an empty body)");
    }

    #[test]
    fn reasons_never_quote_the_tokens_sent() {
        let provider = WorkloadIdentityCredential::new(
            options(),
            token_url(DEFAULT_STS_ENDPOINT).unwrap(),
            generate_access_token_url(DEFAULT_IAM_CREDENTIALS_ENDPOINT, "a@b").unwrap(),
            reqwest::Client::new(),
        );
        let body = r#"{"error":"invalid_request","error_description":"bad token eyJ.oidc.token or fed-123"}"#;
        assert_eq!(provider.reason(body, &["fed-123"]), "invalid_request: bad token *** or ***");
        assert!(!format!("{provider:?}").contains("eyJ.oidc.token"));
    }

    #[test]
    fn lifetimes_come_from_the_expire_time() {
        let now = SystemTime::from(chrono::DateTime::parse_from_rfc3339("2026-12-02T19:00:00Z").unwrap());
        assert_eq!(lifetime(Some("2026-12-02T20:00:00Z"), now), Duration::from_secs(3600));
        assert_eq!(lifetime(Some("2026-12-02T18:00:00Z"), now), REFRESH_MARGIN + Duration::from_secs(60));
        assert_eq!(lifetime(None, now), REFRESH_MARGIN + Duration::from_secs(60));
    }

    #[tokio::test]
    async fn an_unreachable_endpoint_names_its_setting() {
        let provider = WorkloadIdentityCredential::new(
            options(),
            token_url("http://127.0.0.1:9").unwrap(),
            generate_access_token_url("http://127.0.0.1:9", "a@b").unwrap(),
            reqwest::Client::new(),
        );
        let text = provider.token().await.unwrap_err().to_string();
        assert!(text.starts_with("cannot reach Google STS at http://127.0.0.1:9/v1/token"), "{text}");
        assert!(text.contains("check gcp_sts_endpoint (PLUGIN_GCP_STS_ENDPOINT)"), "{text}");
    }
}
