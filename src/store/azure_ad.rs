//! Azure AD (Microsoft Entra ID) sign-in for Azure Blob stores, for accounts whose shared keys are disabled.
//!
//! [`AzureSignIn::choose`] picks how a store signs in from [`AzureOptions`], in the Harness fork's order of
//! priority (`drone-plugins/drone-meltwater-cache`, `storage/backend/azure/azure.go`) followed by the flows
//! that CI machines provide without any setting:
//!
//! | flow | needs | token from |
//! |---|---|---|
//! | OIDC token (the fork's `oidc_token_id`) | client id, tenant id, the token | `{authority}/{tenant}/oauth2/v2.0/token`, `client_assertion` grant ([`ClientAssertionCredential`]) |
//! | service principal | client id, client secret, tenant id | the same endpoint, `client_credentials` grant with the secret (`object_store`) |
//! | shared key, SAS | account key or SAS token | — |
//! | workload identity federation | client id, tenant id, token file (`AZURE_FEDERATED_TOKEN_FILE`) | the same endpoint, `client_assertion` grant with the file's content, read again at each refresh (`object_store`) |
//! | managed identity | asked for (`AZURE_USE_MSI`, or an MSI endpoint) | the instance metadata service (IMDS) |
//!
//! A managed identity is used only when asked for: `object_store` would otherwise fall back to it, and off
//! Azure a request to IMDS fails with an error that says nothing about what to set.
//!
//! Tokens are requested when the store is opened ([`check_sign_in`]), so that a wrong secret fails the
//! command at once with a message naming the flow, instead of in the middle of a restore.

use std::sync::Arc;
use std::time::{Duration, Instant};

use object_store::CredentialProvider;
use object_store::azure::{AzureCredential, AzureCredentialProvider};

use crate::core::secret::Secret;
use crate::store::backend::AzureOptions;

/// Microsoft's public-cloud authority host, where tokens come from when `AZURE_AUTHORITY_HOST` is unset.
pub const DEFAULT_AUTHORITY_HOST: &str = "https://login.microsoftonline.com";

/// The OAuth scope of Azure Storage.
const STORAGE_SCOPE: &str = "https://storage.azure.com/.default";

/// A token is requested again when it has less than this left, so that no request is sent with a token that
/// expires on the way.
const REFRESH_MARGIN: Duration = Duration::from_secs(300);

/// How a store signs in to Azure Storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AzureSignIn {
    /// The Harness fork's `oidc_token_id`: an OIDC token of the CI system, exchanged for a storage token.
    OidcToken {
        /// The app registration (client) id.
        client_id: String,
        /// The directory (tenant) id.
        tenant_id: String,
        /// The OIDC token itself.
        token: Secret,
    },
    /// A service principal with a client secret.
    ClientSecret {
        /// The app registration (client) id.
        client_id: String,
        /// The directory (tenant) id.
        tenant_id: String,
        /// The client secret.
        secret: Secret,
    },
    /// The storage account key.
    SharedKey(Secret),
    /// A SAS token.
    Sas(Secret),
    /// Workload identity federation with a token file, as AKS and CI runners provide it.
    TokenFile {
        /// The app registration (client) id.
        client_id: String,
        /// The directory (tenant) id.
        tenant_id: String,
        /// The file that holds the OIDC token (re-read at each refresh: the platform rotates it).
        path: std::path::PathBuf,
    },
    /// The machine's managed identity; a client id selects a user-assigned one.
    ManagedIdentity {
        /// The user-assigned identity's client id, when there is one.
        client_id: Option<String>,
    },
}

impl AzureSignIn {
    /// The flow [`AzureOptions`] asks for (see the table in this file's docs).
    ///
    /// # Errors
    /// When no flow is complete: what is missing, naming the variables and the plugin's settings. Half an
    /// Azure AD configuration (a client id without a tenant, say) is named as such rather than reported as
    /// "no credentials".
    pub fn choose(azure: &AzureOptions) -> Result<Self, String> {
        let ad = &azure.ad;
        let client_id = ad.client_id.clone().filter(|id| !id.trim().is_empty());
        let tenant_id = ad.tenant_id.clone().filter(|id| !id.trim().is_empty());
        if let (Some(client_id), Some(tenant_id)) = (&client_id, &tenant_id) {
            let (client_id, tenant_id) = (client_id.clone(), tenant_id.clone());
            if let Some(token) = &ad.oidc_token {
                return Ok(Self::OidcToken { client_id, tenant_id, token: token.clone() });
            }
            if let Some(secret) = &ad.client_secret {
                return Ok(Self::ClientSecret { client_id, tenant_id, secret: secret.clone() });
            }
        }
        if let Some(key) = &azure.key {
            return Ok(Self::SharedKey(key.clone()));
        }
        if let Some(sas) = &azure.sas {
            return Ok(Self::Sas(sas.clone()));
        }
        if let (Some(client_id), Some(tenant_id), Some(path)) = (&client_id, &tenant_id, &ad.federated_token_file) {
            return Ok(Self::TokenFile {
                client_id: client_id.clone(),
                tenant_id: tenant_id.clone(),
                path: path.clone(),
            });
        }
        if ad.managed_identity || ad.msi_endpoint.is_some() {
            return Ok(Self::ManagedIdentity { client_id });
        }
        let wants_ad = ad.client_secret.is_some() || ad.oidc_token.is_some() || ad.federated_token_file.is_some();
        if wants_ad || (client_id.is_some() != tenant_id.is_some()) {
            let missing = match (&client_id, &tenant_id) {
                (None, _) => "a client id: set AZURE_CLIENT_ID (plugin: azure_client_id)",
                (_, None) => "a tenant id: set AZURE_TENANT_ID (plugin: azure_tenant_id)",
                _ => {
                    "a client secret or an OIDC token: set AZURE_CLIENT_SECRET (plugin: azure_client_secret), \
                      AZURE_FEDERATED_TOKEN_FILE (plugin: azure_federated_token_file) or the plugin's oidc_token_id"
                }
            };
            return Err(format!("the Azure AD sign-in is incomplete, it lacks {missing}"));
        }
        Err("no credentials: set AZURE_STORAGE_KEY (plugin: account_key), AZURE_STORAGE_SAS_TOKEN (plugin: \
             sas_token) or AZURE_STORAGE_CONNECTION_STRING; or sign in with Azure AD: AZURE_CLIENT_ID and \
             AZURE_TENANT_ID with AZURE_CLIENT_SECRET or AZURE_FEDERATED_TOKEN_FILE (plugin: azure_client_id, \
             azure_tenant_id, azure_client_secret or oidc_token_id), or AZURE_USE_MSI=true for the machine's \
             managed identity (plugin: azure_use_msi)"
            .to_owned())
    }

    /// Whether the flow signs in with Azure AD (and so sends bearer tokens).
    pub fn is_azure_ad(&self) -> bool {
        !matches!(self, Self::SharedKey(_) | Self::Sas(_))
    }

    /// The flow, for messages: names the client and tenant ids (not secrets), never a secret.
    pub fn describe(&self) -> String {
        match self {
            Self::OidcToken { client_id, tenant_id, .. } => {
                format!(
                    "Azure AD sign-in with the OIDC token (oidc_token_id) as client {client_id} of tenant {tenant_id}"
                )
            }
            Self::ClientSecret { client_id, tenant_id, .. } => {
                format!(
                    "Azure AD sign-in with the client secret of service principal {client_id} of tenant {tenant_id}"
                )
            }
            Self::SharedKey(_) => "the account key".to_owned(),
            Self::Sas(_) => "the SAS token".to_owned(),
            Self::TokenFile { client_id, tenant_id, path } => format!(
                "Azure AD workload identity federation with the token file {} as client {client_id} of tenant \
                 {tenant_id}",
                path.display()
            ),
            Self::ManagedIdentity { client_id: Some(id) } => {
                format!("Azure AD sign-in with the managed identity {id}")
            }
            Self::ManagedIdentity { client_id: None } => "Azure AD sign-in with the machine's managed identity".into(),
        }
    }

    /// What to check when this flow's sign-in is refused.
    pub fn advice(&self) -> &'static str {
        match self {
            Self::OidcToken { .. } => {
                "check azure_client_id and azure_tenant_id, that the app registration has a federated credential \
                 for this pipeline's token (issuer, subject, audience), and that the token has not expired"
            }
            Self::ClientSecret { .. } => {
                "check AZURE_CLIENT_SECRET (plugin: azure_client_secret) and that it has not expired, and the client \
                 and tenant ids"
            }
            Self::TokenFile { .. } => {
                "check that AZURE_FEDERATED_TOKEN_FILE holds a current token and that the app registration has a \
                 federated credential for it (issuer, subject, audience)"
            }
            Self::ManagedIdentity { .. } => {
                "check that this machine has a managed identity (and, for a user-assigned one, its client id in \
                 AZURE_CLIENT_ID) and that the metadata endpoint can be reached"
            }
            Self::SharedKey(_) | Self::Sas(_) => "check the credentials",
        }
    }
}

/// The token URL of a tenant: `{authority}/{tenant}/oauth2/v2.0/token`.
pub fn token_url(authority_host: Option<&str>, tenant_id: &str) -> String {
    let host = authority_host.unwrap_or(DEFAULT_AUTHORITY_HOST).trim_end_matches('/');
    format!("{host}/{tenant_id}/oauth2/v2.0/token")
}

/// Exchanges an OIDC token given as a value (the Harness fork's `oidc_token_id`) for a storage token, with
/// the `client_assertion` grant. `object_store` has this flow only with a token *file*; writing a secret to
/// disk for it would leave it behind whenever the process is killed.
pub struct ClientAssertionCredential {
    token_url: String,
    client_id: String,
    assertion: Secret,
    client: reqwest::Client,
    cached: tokio::sync::Mutex<Option<(Arc<AzureCredential>, Instant)>>,
}

impl std::fmt::Debug for ClientAssertionCredential {
    // By hand: the cached storage token must not show (the assertion is a `Secret`, shown redacted).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientAssertionCredential")
            .field("token_url", &self.token_url)
            .field("client_id", &self.client_id)
            .field("assertion", &self.assertion)
            .finish_non_exhaustive()
    }
}

impl ClientAssertionCredential {
    /// A provider that posts to `token_url` with `client`, which carries the timeouts and trusted roots.
    pub fn new(token_url: String, client_id: String, assertion: Secret, client: reqwest::Client) -> Self {
        Self { token_url, client_id, assertion, client, cached: tokio::sync::Mutex::new(None) }
    }

    async fn fetch(&self) -> Result<(String, Duration), String> {
        let form = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("client_id", &self.client_id)
            .append_pair("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
            .append_pair("client_assertion", self.assertion.expose().trim())
            .append_pair("scope", STORAGE_SCOPE)
            .append_pair("grant_type", "client_credentials")
            .finish();
        let response = self
            .client
            .post(&self.token_url)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .header("Accept", "application/json")
            .body(form)
            .send()
            .await
            .map_err(|e| {
                format!("the token request to {} failed: {}", self.token_url, crate::core::error::one_line(&e))
            })?;
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        if !status.is_success() {
            return Err(format!("{} answered HTTP {}: {}", self.token_url, status.as_u16(), body.trim()));
        }
        #[derive(serde::Deserialize)]
        struct TokenResponse {
            access_token: String,
            expires_in: u64,
        }
        let token: TokenResponse = serde_json::from_str(&body)
            .map_err(|e| format!("{} answered with no access token ({e})", self.token_url))?;
        Ok((token.access_token, Duration::from_secs(token.expires_in)))
    }
}

#[async_trait::async_trait]
impl CredentialProvider for ClientAssertionCredential {
    type Credential = AzureCredential;

    async fn get_credential(&self) -> object_store::Result<Arc<AzureCredential>> {
        let mut cached = self.cached.lock().await;
        if let Some((credential, expiry)) = cached.as_ref()
            && Instant::now() + REFRESH_MARGIN < *expiry
        {
            return Ok(Arc::clone(credential));
        }
        let (token, lifetime) = self
            .fetch()
            .await
            .map_err(|message| object_store::Error::Generic { store: "MicrosoftAzure", source: message.into() })?;
        let credential = Arc::new(AzureCredential::BearerToken(token));
        *cached = Some((Arc::clone(&credential), Instant::now() + lifetime));
        Ok(credential)
    }
}

/// Gets a token through `credentials` once, so that a sign-in that is refused fails when the store is
/// opened. The token is cached by the provider and serves the first requests.
///
/// # Errors
/// The flow, what the identity platform answered, and what to check.
pub async fn check_sign_in(
    credentials: &AzureCredentialProvider,
    sign_in: &AzureSignIn,
    store: &str,
) -> Result<Option<String>, String> {
    match credentials.get_credential().await {
        Ok(credential) => Ok(match credential.as_ref() {
            AzureCredential::BearerToken(token) => Some(token.clone()),
            _ => None,
        }),
        Err(e) => Err(format!(
            "{} failed for {store}: {}; {}",
            sign_in.describe(),
            crate::core::error::one_line(&e),
            sign_in.advice()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::backend::AzureAdOptions;

    fn options(ad: AzureAdOptions, key: Option<&str>) -> AzureOptions {
        AzureOptions { account: Some("acct".into()), key: key.map(Secret::new), ad, ..AzureOptions::default() }
    }

    fn ad(client: Option<&str>, tenant: Option<&str>) -> AzureAdOptions {
        AzureAdOptions {
            client_id: client.map(str::to_owned),
            tenant_id: tenant.map(str::to_owned),
            ..AzureAdOptions::default()
        }
    }

    #[tokio::test]
    async fn a_provider_never_shows_its_assertion_or_its_cached_token() {
        let provider = ClientAssertionCredential::new(
            "https://login.example/t/oauth2/v2.0/token".into(),
            "client".into(),
            Secret::new("the-assertion"),
            reqwest::Client::new(),
        );
        let token = Arc::new(AzureCredential::BearerToken("the-storage-token".into()));
        *provider.cached.lock().await = Some((token, Instant::now()));
        let shown = format!("{provider:?}");
        assert!(shown.contains("client") && shown.contains("***"), "{shown}");
        assert!(!shown.contains("the-assertion") && !shown.contains("the-storage-token"), "{shown}");
    }

    #[test]
    fn flows_are_chosen_in_the_forks_order_then_the_ambient_ones() {
        let secret = AzureAdOptions { client_secret: Some(Secret::new("s")), ..ad(Some("c"), Some("t")) };
        let both = AzureAdOptions { oidc_token: Some(Secret::new("jwt")), ..secret.clone() };
        assert!(matches!(AzureSignIn::choose(&options(both, Some("k"))), Ok(AzureSignIn::OidcToken { .. })));
        assert!(matches!(AzureSignIn::choose(&options(secret, Some("k"))), Ok(AzureSignIn::ClientSecret { .. })));
        // A token file is what AKS and runners put in every environment: an explicit key wins over it.
        let file = AzureAdOptions { federated_token_file: Some("/t".into()), ..ad(Some("c"), Some("t")) };
        assert!(matches!(AzureSignIn::choose(&options(file.clone(), Some("k"))), Ok(AzureSignIn::SharedKey(_))));
        assert!(matches!(AzureSignIn::choose(&options(file, None)), Ok(AzureSignIn::TokenFile { .. })));
        let msi = AzureAdOptions { managed_identity: true, ..ad(Some("user-assigned"), None) };
        assert_eq!(
            AzureSignIn::choose(&options(msi, None)),
            Ok(AzureSignIn::ManagedIdentity { client_id: Some("user-assigned".into()) })
        );
    }

    #[test]
    fn half_a_sign_in_says_what_is_missing() {
        let err = AzureSignIn::choose(&options(ad(Some("c"), None), None)).unwrap_err();
        assert!(err.contains("incomplete") && err.contains("AZURE_TENANT_ID"), "{err}");
        let err = AzureSignIn::choose(&options(ad(Some("c"), Some("t")), None)).unwrap_err();
        assert!(err.contains("AZURE_CLIENT_SECRET") && err.contains("oidc_token_id"), "{err}");
        let err = AzureSignIn::choose(&options(AzureAdOptions::default(), None)).unwrap_err();
        assert!(err.starts_with("no credentials") && err.contains("AZURE_USE_MSI"), "{err}");
    }

    #[test]
    fn descriptions_name_ids_never_secrets() {
        let flows = [
            AzureSignIn::OidcToken { client_id: "c".into(), tenant_id: "t".into(), token: Secret::new("jwt-1") },
            AzureSignIn::ClientSecret { client_id: "c".into(), tenant_id: "t".into(), secret: Secret::new("pw-2") },
        ];
        for flow in flows {
            let text = format!("{} {flow:?} {}", flow.describe(), flow.advice());
            assert!(text.contains("client c of tenant t") || text.contains("principal c of tenant t"), "{text}");
            assert!(!text.contains("jwt-1") && !text.contains("pw-2"), "{text}");
        }
    }

    #[test]
    fn token_urls_follow_the_authority_host() {
        assert_eq!(token_url(None, "t"), "https://login.microsoftonline.com/t/oauth2/v2.0/token");
        assert_eq!(
            token_url(Some("https://login.chinacloudapi.cn/"), "t"),
            "https://login.chinacloudapi.cn/t/oauth2/v2.0/token"
        );
    }
}
