//! S3 credentials from AWS STS: the Harness fork's `assume_role_arn` (with `external_id`), `oidc_token_id` and
//! `user_role_arn` settings, as an `object_store` [`CredentialProvider`] that [`crate::store::backend`] hands to
//! `AmazonS3Builder::with_credentials`.
//!
//! The fork (`drone-plugins/drone-meltwater-cache`, `storage/backend/s3/s3.go`) asks STS for a role's
//! temporary credentials in one of two ways, and may then chain a second role:
//! - `AssumeRoleWithWebIdentity` with `oidc_token_id` (the OIDC token Harness gives the step) as the web
//!   identity token: an unsigned call, no base credentials needed;
//! - `AssumeRole` with the optional `external_id`, signed (SigV4) with the step's base credentials;
//! - then, with `user_role_arn`, another `AssumeRole` (with `user_role_external_id`) signed with the
//!   credentials the step had so far.
//!
//! Each step is one [`StsCredentialProvider`] whose base is the provider before it, so a chain is providers
//! wrapped in providers. Each caches its credentials and asks STS again [`REFRESH_MARGIN`] before they expire
//! (they last [`SESSION_SECONDS`], as in the fork), so a save that outlives one session keeps working.
//!
//! Why not `object_store`'s own web-identity provider: it reads the token from a file
//! (`AWS_WEB_IDENTITY_TOKEN_FILE`) rather than taking it as a value, it refuses an `http` STS endpoint (so it
//! cannot be tested against moto), and `object_store` has no `AssumeRole` at all. Requests are signed by
//! `object_store`'s [`AwsAuthorizer`] and sent through its HTTP client, so nothing here signs by hand.
//!
//! Nothing secret reaches a message: errors carry the STS error code and message, the role ARN and the
//! setting's name, never a token or key.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use object_store::aws::{AwsAuthorizer, AwsCredential, AwsCredentialProvider};
use object_store::client::{HttpClient, HttpRequest, HttpRequestBody};
use object_store::{CredentialProvider, HeaderValue};

use crate::core::secret::Secret;
use crate::store::xml_element;

/// How long the credentials of one session last, as the fork asks (`time.Hour`); STS's default too.
pub const SESSION_SECONDS: u64 = 3600;

/// How long before its credentials expire a provider asks STS again: long enough that no request is signed
/// with credentials that expire while it is on its way (the AWS SDKs use 5 minutes too).
pub const REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);

/// The fork's default `assume_role_session_name`.
pub const DEFAULT_SESSION_NAME: &str = "drone-cache";

/// The STS API version every call names.
const STS_VERSION: &str = "2011-06-15";

/// How a role is assumed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RoleIdentity {
    /// `AssumeRole`, signed with the credentials before it, with an optional external id (the role's trust
    /// policy may require one: `sts:ExternalId`).
    Signed {
        /// `external_id` / `user_role_external_id`.
        external_id: Option<String>,
    },
    /// `AssumeRoleWithWebIdentity` with this OIDC token (`oidc_token_id`); unsigned.
    WebIdentity(Secret),
}

/// One role to assume, and the setting that asked for it (for messages).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AssumeRoleOptions {
    /// The role's ARN.
    pub role_arn: String,
    /// `RoleSessionName`: shows in CloudTrail as who used the role.
    pub session_name: String,
    /// Which STS call, with what.
    pub identity: RoleIdentity,
    /// The setting and its variable that named the role, e.g. `assume_role_arn (PLUGIN_ASSUME_ROLE_ARN)`.
    pub setting: &'static str,
}

/// An STS call that failed. The message names the setting and says what to check.
#[derive(Debug, thiserror::Error)]
pub enum StsError {
    /// STS answered with an error (access denied, invalid token, unknown role, …).
    #[error(
        "STS {action} for {setting} {role_arn:?} at {endpoint} failed with HTTP {status}: {reason}; check the role \
         ARN, its trust policy{advice}, and sts_endpoint (PLUGIN_STS_ENDPOINT)"
    )]
    Refused {
        /// `AssumeRole` or `AssumeRoleWithWebIdentity`.
        action: &'static str,
        /// The setting that named the role.
        setting: &'static str,
        /// The role's ARN.
        role_arn: String,
        /// The STS endpoint.
        endpoint: String,
        /// The HTTP status.
        status: u16,
        /// STS's `<Code>: <Message>`, or the start of the body.
        reason: String,
        /// What else to check for this kind of call.
        advice: &'static str,
    },
    /// STS could not be reached, or its answer could not be read.
    #[error(
        "STS {action} for {setting} {role_arn:?}: cannot reach {endpoint}; check sts_endpoint (PLUGIN_STS_ENDPOINT)"
    )]
    Unreachable {
        /// `AssumeRole` or `AssumeRoleWithWebIdentity`.
        action: &'static str,
        /// The setting that named the role.
        setting: &'static str,
        /// The role's ARN.
        role_arn: String,
        /// The STS endpoint.
        endpoint: String,
        /// The transport error; [`crate::store::retry`] retries it when transient.
        source: object_store::client::HttpError,
    },
    /// STS answered 200 without credentials in the body.
    #[error(
        "STS {action} for {setting} {role_arn:?} at {endpoint} answered without credentials: is sts_endpoint \
             (PLUGIN_STS_ENDPOINT) an STS endpoint?"
    )]
    NoCredentials {
        /// `AssumeRole` or `AssumeRoleWithWebIdentity`.
        action: &'static str,
        /// The setting that named the role.
        setting: &'static str,
        /// The role's ARN.
        role_arn: String,
        /// The STS endpoint.
        endpoint: String,
    },
    /// The base credentials could not be had (for an `AssumeRole`).
    #[error("no base credentials to assume {setting} {role_arn:?} with")]
    Base {
        /// The setting that named the role.
        setting: &'static str,
        /// The role's ARN.
        role_arn: String,
        /// Why.
        source: object_store::Error,
    },
    /// The request could not be signed.
    #[error("cannot sign the STS request for {setting}")]
    Sign {
        /// The setting that named the role.
        setting: &'static str,
        /// Why.
        source: object_store::Error,
    },
}

/// Credentials with the moment they stop being valid.
#[derive(Debug)]
struct Session {
    credential: Arc<AwsCredential>,
    expires: Instant,
}

/// A [`CredentialProvider`] that gives the credentials of one role, from STS, cached until
/// [`REFRESH_MARGIN`] before they expire.
#[derive(Debug)]
pub struct StsCredentialProvider {
    role: AssumeRoleOptions,
    /// The credentials that sign an `AssumeRole` (unused for a web identity).
    base: Option<AwsCredentialProvider>,
    endpoint: http::Uri,
    region: String,
    client: HttpClient,
    /// Held across the STS call so that concurrent requests wait for one call instead of each making one.
    session: tokio::sync::Mutex<Option<Session>>,
}

impl StsCredentialProvider {
    /// A provider for `role`, calling STS at `endpoint` (signed for `region`) through `client`. `base` signs an
    /// `AssumeRole`; a web identity needs none.
    pub fn new(
        role: AssumeRoleOptions,
        base: Option<AwsCredentialProvider>,
        endpoint: http::Uri,
        region: String,
        client: HttpClient,
    ) -> Self {
        Self { role, base, endpoint, region, client, session: tokio::sync::Mutex::new(None) }
    }

    /// The endpoint as messages show it, without the `/` that `Uri` adds.
    fn endpoint_text(&self) -> String {
        self.endpoint.to_string().trim_end_matches('/').to_owned()
    }

    fn action(&self) -> &'static str {
        match self.role.identity {
            RoleIdentity::Signed { .. } => "AssumeRole",
            RoleIdentity::WebIdentity(_) => "AssumeRoleWithWebIdentity",
        }
    }

    /// Asks STS for the role's credentials.
    async fn assume(&self) -> Result<Session, StsError> {
        let action = self.action();
        let role = &self.role;
        let mut request = HttpRequest::new(HttpRequestBody::from(request_form(role)));
        *request.method_mut() = http::Method::POST;
        *request.uri_mut() = self.endpoint.clone();
        request
            .headers_mut()
            .insert("content-type", HeaderValue::from_static("application/x-www-form-urlencoded; charset=utf-8"));
        if let (RoleIdentity::Signed { .. }, Some(base)) = (&role.identity, &self.base) {
            let base = base.get_credential().await.map_err(|source| StsError::Base {
                setting: role.setting,
                role_arn: role.role_arn.clone(),
                source,
            })?;
            AwsAuthorizer::new(&base, "sts", &self.region)
                .try_authorize(&mut request, None)
                .map_err(|source| StsError::Sign { setting: role.setting, source })?;
        }
        let unreachable = |source| StsError::Unreachable {
            action,
            setting: role.setting,
            role_arn: role.role_arn.clone(),
            endpoint: self.endpoint_text(),
            source,
        };
        let started = Instant::now();
        let response = self.client.execute(request).await.map_err(unreachable)?;
        let status = response.status();
        let body = response.into_body().bytes().await.map_err(unreachable)?;
        let body = String::from_utf8_lossy(&body);
        if !status.is_success() {
            return Err(StsError::Refused {
                action,
                setting: role.setting,
                role_arn: role.role_arn.clone(),
                endpoint: self.endpoint_text(),
                status: status.as_u16(),
                reason: error_reason(&body),
                advice: match role.identity {
                    RoleIdentity::Signed { .. } => {
                        " and external id, the base credentials (access_key/secret_key, or the role before it)"
                    }
                    RoleIdentity::WebIdentity(_) => {
                        " (it must trust the token's issuer and audience), oidc_token_id (PLUGIN_OIDC_TOKEN_ID)"
                    }
                },
            });
        }
        let no_credentials = || StsError::NoCredentials {
            action,
            setting: role.setting,
            role_arn: role.role_arn.clone(),
            endpoint: self.endpoint_text(),
        };
        let (credential, lifetime) = parse_credentials(&body, SystemTime::now()).ok_or_else(no_credentials)?;
        Ok(Session { credential: Arc::new(credential), expires: started + lifetime })
    }
}

#[async_trait]
impl CredentialProvider for StsCredentialProvider {
    type Credential = AwsCredential;

    async fn get_credential(&self) -> object_store::Result<Arc<AwsCredential>> {
        let mut session = self.session.lock().await;
        if let Some(current) = session.as_ref()
            && Instant::now() + REFRESH_MARGIN < current.expires
        {
            return Ok(Arc::clone(&current.credential));
        }
        let fresh =
            self.assume().await.map_err(|e| object_store::Error::Generic { store: "S3", source: Box::new(e) })?;
        let credential = Arc::clone(&fresh.credential);
        *session = Some(fresh);
        Ok(credential)
    }
}

/// The form body of the STS call for `role`.
fn request_form(role: &AssumeRoleOptions) -> String {
    let mut form = url::form_urlencoded::Serializer::new(String::new());
    let seconds = SESSION_SECONDS.to_string();
    form.append_pair("Version", STS_VERSION)
        .append_pair("RoleArn", &role.role_arn)
        .append_pair("RoleSessionName", &role.session_name)
        .append_pair("DurationSeconds", &seconds);
    match &role.identity {
        RoleIdentity::Signed { external_id } => {
            form.append_pair("Action", "AssumeRole");
            if let Some(external_id) = external_id {
                form.append_pair("ExternalId", external_id);
            }
        }
        RoleIdentity::WebIdentity(token) => {
            form.append_pair("Action", "AssumeRoleWithWebIdentity").append_pair("WebIdentityToken", token.expose());
        }
    }
    form.finish()
}

/// The credentials in an STS answer (`AssumeRoleResponse` or `AssumeRoleWithWebIdentityResponse`, which share
/// their `<Credentials>` element), and how long they last from `now`. An expiration that cannot be read, or
/// one already past, gives [`REFRESH_MARGIN`] plus one minute: used for a minute, then asked for again.
fn parse_credentials(body: &str, now: SystemTime) -> Option<(AwsCredential, Duration)> {
    let credentials = xml_element(body, "Credentials")?;
    let credential = AwsCredential {
        key_id: xml_element(credentials, "AccessKeyId")?.to_owned(),
        secret_key: xml_element(credentials, "SecretAccessKey")?.to_owned(),
        token: Some(xml_element(credentials, "SessionToken")?.to_owned()),
    };
    let at_least = REFRESH_MARGIN + Duration::from_secs(60);
    let lifetime = xml_element(credentials, "Expiration")
        .and_then(|text| chrono::DateTime::parse_from_rfc3339(text).ok())
        .and_then(|expiration| SystemTime::from(expiration).duration_since(now).ok())
        .map_or(at_least, |lifetime| lifetime.max(at_least));
    Some((credential, lifetime))
}

/// STS's `<Code>: <Message>` from an error body, or its start when it is not STS's XML.
fn error_reason(body: &str) -> String {
    match (xml_element(body, "Code"), xml_element(body, "Message")) {
        (Some(code), Some(message)) => format!("{code}: {}", message.split_whitespace().collect::<Vec<_>>().join(" ")),
        (Some(code), None) => code.to_owned(),
        _ => {
            let start: String = body.split_whitespace().collect::<Vec<_>>().join(" ").chars().take(200).collect();
            if start.is_empty() { "(an empty body)".to_owned() } else { start }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role(identity: RoleIdentity) -> AssumeRoleOptions {
        AssumeRoleOptions {
            role_arn: "arn:aws:iam::123456789012:role/cache".into(),
            session_name: DEFAULT_SESSION_NAME.into(),
            identity,
            setting: "assume_role_arn (PLUGIN_ASSUME_ROLE_ARN)",
        }
    }

    fn form(role: &AssumeRoleOptions) -> Vec<(String, String)> {
        url::form_urlencoded::parse(request_form(role).as_bytes()).into_owned().collect()
    }

    #[test]
    fn assume_role_sends_the_external_id_and_web_identity_the_token() {
        let signed = form(&role(RoleIdentity::Signed { external_id: Some("tenant-42".into()) }));
        assert!(signed.contains(&("Action".into(), "AssumeRole".into())), "{signed:?}");
        assert!(signed.contains(&("ExternalId".into(), "tenant-42".into())), "{signed:?}");
        assert!(signed.contains(&("RoleSessionName".into(), "drone-cache".into())), "{signed:?}");
        assert!(signed.contains(&("DurationSeconds".into(), "3600".into())), "{signed:?}");
        assert!(!signed.iter().any(|(name, _)| name == "WebIdentityToken"), "{signed:?}");

        let without = form(&role(RoleIdentity::Signed { external_id: None }));
        assert!(!without.iter().any(|(name, _)| name == "ExternalId"), "{without:?}");

        let web = form(&role(RoleIdentity::WebIdentity(Secret::new("eyJ.a+b/c=.sig"))));
        assert!(web.contains(&("Action".into(), "AssumeRoleWithWebIdentity".into())), "{web:?}");
        assert!(web.contains(&("WebIdentityToken".into(), "eyJ.a+b/c=.sig".into())), "{web:?}");
        assert!(web.contains(&("RoleArn".into(), "arn:aws:iam::123456789012:role/cache".into())), "{web:?}");
    }

    /// The response shape of AWS's `AssumeRole` documentation.
    const RESPONSE: &str = "<AssumeRoleResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">
      <AssumeRoleResult>
        <AssumedRoleUser><Arn>arn:aws:sts::123456789012:assumed-role/demo/drone-cache</Arn></AssumedRoleUser>
        <Credentials>
          <SessionToken>IQoJb3JpZ2luX2VjEOz+/=</SessionToken>
          <SecretAccessKey>wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY</SecretAccessKey>
          <Expiration>2026-12-02T20:00:00Z</Expiration>
          <AccessKeyId>ASIAIOSFODNN7EXAMPLE</AccessKeyId>
        </Credentials>
      </AssumeRoleResult>
    </AssumeRoleResponse>";

    #[test]
    fn credentials_and_their_lifetime_are_read_from_the_answer() {
        let now = SystemTime::from(chrono::DateTime::parse_from_rfc3339("2026-12-02T19:00:00Z").unwrap());
        let (credential, lifetime) = parse_credentials(RESPONSE, now).unwrap();
        assert_eq!(credential.key_id, "ASIAIOSFODNN7EXAMPLE");
        assert_eq!(credential.secret_key, "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY");
        assert_eq!(credential.token.as_deref(), Some("IQoJb3JpZ2luX2VjEOz+/="));
        assert_eq!(lifetime, Duration::from_secs(3600));

        // Already expired by the local clock: used briefly, then asked for again.
        let late = now + Duration::from_secs(7200);
        assert_eq!(parse_credentials(RESPONSE, late).unwrap().1, REFRESH_MARGIN + Duration::from_secs(60));
        assert!(parse_credentials("<html>not STS</html>", now).is_none());
    }

    #[test]
    fn error_bodies_become_code_and_message() {
        let body = "<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code>\n<Message>User is not\n \
                    authorized</Message></Error></ErrorResponse>";
        assert_eq!(error_reason(body), "AccessDenied: User is not authorized");
        assert_eq!(error_reason(""), "(an empty body)");
        assert_eq!(error_reason("502 Bad   Gateway"), "502 Bad Gateway");
    }

    /// A base provider that fails, and counts how often it was asked.
    #[derive(Debug, Default)]
    struct Counting(std::sync::atomic::AtomicUsize);

    #[async_trait]
    impl CredentialProvider for Counting {
        type Credential = AwsCredential;
        async fn get_credential(&self) -> object_store::Result<Arc<AwsCredential>> {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Err(object_store::Error::Generic { store: "test", source: "no base credentials here".into() })
        }
    }

    #[tokio::test]
    async fn a_base_credential_failure_names_the_setting() {
        let base = Arc::new(Counting::default());
        let client = object_store::client::HttpConnector::connect(
            &object_store::client::ReqwestConnector::default(),
            &object_store::ClientOptions::new().with_allow_http(true),
        )
        .unwrap();
        let provider = StsCredentialProvider::new(
            role(RoleIdentity::Signed { external_id: None }),
            Some(base.clone() as AwsCredentialProvider),
            http::Uri::from_static("http://127.0.0.1:9"),
            "us-east-1".into(),
            client,
        );
        let error = provider.get_credential().await.unwrap_err();
        let text = crate::store::BackendCause::new(error).to_string();
        assert!(text.contains("no base credentials to assume assume_role_arn (PLUGIN_ASSUME_ROLE_ARN)"), "{text}");
        assert!(text.contains("no base credentials here"), "{text}");
        assert_eq!(base.0.load(std::sync::atomic::Ordering::SeqCst), 1);
    }
}
