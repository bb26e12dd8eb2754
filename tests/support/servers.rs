//! Storage emulators that the tests start themselves: Azurite (Azure Blob), moto (S3) and fake-gcs-server
//! (GCS), and stand-ins for the identity services in front of them.
//!
//! `scripts/install-test-servers.sh` installs the emulators under `.tools/` in the repository. A test that
//! needs one calls [`Azurite::start`], [`Moto::start`] or [`Gcs::start`] and gets its own server on a free
//! loopback port, with its own
//! empty storage; dropping the value stops the server and removes its temporary directory. Start-up takes
//! about 1 s for Azurite and 0.6 s for moto on the 2-core machine, so every test gets a fresh instance
//! instead of sharing one per process (a shared `static` would never be dropped, and so never stopped).
//!
//! No server outlives the test process, even when that process is killed: each server runs under a small
//! `sh` watchdog whose stdin is a pipe from the test process. Dropping the handle closes the pipe, and so
//! does the death of the test process for any reason (panic, Ctrl-C, SIGKILL); either way the watchdog sees
//! end-of-file and terminates the server. Drop then waits for the watchdog, and kills the whole process
//! group if it does not exit within a few seconds.
//!
//! A missing installation is a panic with the command to run, never a silent skip.

use std::fs::File;
use std::io::Read as _;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// How long a server may take to accept connections before the test fails.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How many times a server is started on a fresh port when it exits during start-up (say, because another
/// process took the port between our probe and its bind).
const START_ATTEMPTS: usize = 3;

/// The sh watchdog: keeps the pipe on stdin as fd 3, starts the server (its stdin is /dev/null), and kills it
/// once the pipe reports end-of-file. It exits with the server's status, so an early crash shows up as the
/// watchdog exiting.
const WATCHDOG: &str = r#"exec 3<&0 0</dev/null
"$@" 3<&- &
pid=$!
( read -r _ <&3; kill -TERM "$pid" 2>/dev/null ) &
exec 3<&-
wait "$pid""#;

/// The repository's `.tools` directory.
pub fn tools_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools")
}

/// A free TCP port on 127.0.0.1 (bound, read, released).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("cannot bind a loopback port").port()
}

/// A running server process under its watchdog, with its temporary working directory.
struct Server {
    name: &'static str,
    port: u16,
    child: Child,
    /// Closing this pipe tells the watchdog to stop the server.
    watchdog_pipe: Option<ChildStdin>,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Server {
    /// Starts `binary args…` (the port goes where `args` has `{port}`), on a fresh port, and waits until
    /// it accepts TCP connections. Panics with the server's output if it does not.
    fn start(name: &'static str, binary: &Path, args: &[&str]) -> Server {
        if !binary.is_file() {
            panic!(
                "{name} is not installed: run scripts/install-test-servers.sh \
                 (the README's test command does this); expected {}",
                binary.display()
            );
        }
        let mut last_failure = String::new();
        for _ in 0..START_ATTEMPTS {
            let started = Instant::now();
            let mut server = Server::spawn(name, binary, args);
            match server.wait_ready(started) {
                Ok(()) => {
                    eprintln!("{name} started on 127.0.0.1:{} in {:.2?}", server.port, started.elapsed());
                    return server;
                }
                Err(Retry(failure)) => last_failure = failure,
            }
        }
        panic!("{last_failure}");
    }

    fn spawn(name: &'static str, binary: &Path, args: &[&str]) -> Server {
        let dir = tempfile::Builder::new()
            .prefix(&format!("chunkcache-{}-", name.to_lowercase()))
            .tempdir()
            .expect("cannot create a temporary directory");
        let log = dir.path().join("server.log");
        let out = File::create(&log).expect("cannot create the server log");
        let err = out.try_clone().expect("cannot duplicate the server log handle");
        let port = free_port();
        let port_text = port.to_string();
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(WATCHDOG)
            .arg("watchdog")
            .arg(binary)
            .args(args.iter().map(|a| a.replace("{port}", &port_text)))
            .current_dir(dir.path())
            .stdin(Stdio::piped())
            .stdout(out)
            .stderr(err)
            // Its own process group, so that Drop can kill the server and anything it started.
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({}): {e}", binary.display()));
        let watchdog_pipe = child.stdin.take();
        Server { name, port, child, watchdog_pipe, log, _dir: dir }
    }

    /// Polls until the port accepts a connection. `Err` when the server exited (worth a retry on another
    /// port); a panic with the server's output when it did not come up within [`START_TIMEOUT`].
    fn wait_ready(&mut self, started: Instant) -> Result<(), Retry> {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(Retry(format!(
                    "{} exited during start-up ({status}) on port {}; its output:\n{}",
                    self.name,
                    self.port,
                    self.output()
                )));
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if started.elapsed() > START_TIMEOUT {
                self.stop();
                panic!(
                    "{} did not accept connections on 127.0.0.1:{} within {START_TIMEOUT:?}; its output:\n{}",
                    self.name,
                    self.port,
                    self.output()
                );
            }
            sleep(Duration::from_millis(25));
        }
    }

    /// The server's stdout and stderr so far.
    fn output(&self) -> String {
        let mut text = String::new();
        match File::open(&self.log) {
            Ok(mut f) => {
                let _ = f.read_to_string(&mut text);
            }
            Err(e) => text = format!("(cannot read {}: {e})", self.log.display()),
        }
        text
    }

    /// Stops the server: closes the watchdog's pipe, waits a little, then kills the process group.
    fn stop(&mut self) {
        drop(self.watchdog_pipe.take());
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if Instant::now() >= deadline => {
                    // The process group id is the watchdog's pid (`process_group(0)`).
                    let _ = Command::new("kill")
                        .args(["-KILL", "--", &format!("-{}", self.child.id())])
                        .stderr(Stdio::null())
                        .status();
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break;
                }
                Ok(None) => sleep(Duration::from_millis(20)),
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // The temporary directory (`_dir`) is removed when the field drops, right after this.
        self.stop();
    }
}

/// A start attempt that failed, with its explanation.
struct Retry(String);

/// An Azurite blob service with its own in-memory storage, for one test.
pub struct Azurite {
    /// Path-style blob endpoint of the dev account: `http://127.0.0.1:PORT/devstoreaccount1`.
    pub endpoint: String,
    /// The emulator's well-known account name.
    pub account: &'static str,
    /// The emulator's well-known account key (public, documented by Microsoft).
    pub key: &'static str,
    /// The port the blob service listens on.
    pub port: u16,
    _server: Server,
}

/// How every test starts Azurite: on loopback, in memory, accepting any API version.
const AZURITE_ARGS: &[&str] = &[
    "--blobHost",
    "127.0.0.1",
    "--blobPort",
    "{port}",
    "--inMemoryPersistence",
    "--disableTelemetry",
    "--skipApiVersionCheck",
    "--loose",
];

impl Azurite {
    /// Azurite's built-in development account.
    pub const ACCOUNT: &'static str = "devstoreaccount1";
    /// Azurite's built-in development account key.
    pub const KEY: &'static str =
        "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

    /// Starts Azurite's blob service on a free port, in memory, and waits until it accepts connections.
    ///
    /// # Panics
    /// When Azurite is not installed (the message says how to install it) or does not start within 20 s
    /// (the message holds its output).
    pub fn start() -> Azurite {
        let binary = tools_dir().join("azurite/node_modules/.bin/azurite-blob");
        let server = Server::start("Azurite", &binary, &[AZURITE_ARGS, &["--silent"]].concat());
        Azurite {
            endpoint: format!("http://127.0.0.1:{}/{}", server.port, Self::ACCOUNT),
            account: Self::ACCOUNT,
            key: Self::KEY,
            port: server.port,
            _server: server,
        }
    }
}

/// Azurite over HTTPS with OAuth (`--oauth basic`), and a stand-in for the Microsoft identity platform
/// (`tests/support/azure_ad_server.py`) that issues its tokens, both with a certificate of a test CA made
/// with `openssl` for this instance only. Azurite's basic OAuth mode checks a token's issuer, audience and
/// lifetime, not its signature; the identity server checks every credential it is sent.
pub struct AzureAd {
    /// Azurite's blob endpoint: `https://127.0.0.1:PORT/devstoreaccount1`.
    pub endpoint: String,
    /// The identity server's base URL, as `AZURE_AUTHORITY_HOST`: `https://127.0.0.1:PORT`.
    pub authority_host: String,
    /// Its managed identity endpoint, as `AZURE_MSI_ENDPOINT`.
    pub msi_endpoint: String,
    /// The PEM file of the test CA, for `ca_bundle`.
    pub ca_bundle: PathBuf,
    /// The directory that holds the CA and the servers' certificates.
    pub dir: tempfile::TempDir,
    identity: Server,
    _azurite: Server,
}

impl AzureAd {
    /// The tenant the identity server serves.
    pub const TENANT: &'static str = "72f988bf-0000-4000-8000-2d7cd011db47";
    /// The app registration it knows.
    pub const CLIENT_ID: &'static str = "0b5a3d4e-1111-4222-8333-c1e47cf1a001";
    /// That app's client secret.
    pub const CLIENT_SECRET: &'static str = "client-secret-value-Q8~x";
    /// The one OIDC token its federated credential accepts.
    pub const ASSERTION: &'static str = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJwaXBlbGluZSJ9.oidc-token-signature";
    /// The client id of the machine's user-assigned managed identity.
    pub const MSI_CLIENT_ID: &'static str = "5e1f0a2b-3333-4444-8555-a0b1c2d3e4f5";

    /// Makes the certificates and starts both servers.
    ///
    /// # Panics
    /// When `openssl` fails, or a server does not start (with its output).
    pub fn start() -> AzureAd {
        let dir = tempfile::Builder::new().prefix("chunkcache-azure-ad-").tempdir().expect("temporary directory");
        let script = r#"set -e
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.pem -days 2 \
  -subj /CN=chunkcache-test-ca -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout server.key -out server.csr \
  -subj /CN=127.0.0.1
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' > ext
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 -extfile ext"#;
        let output = Command::new("sh").arg("-c").arg(script).current_dir(dir.path()).output().expect("openssl runs");
        assert!(output.status.success(), "openssl failed: {}", String::from_utf8_lossy(&output.stderr));
        let cert = dir.path().join("server.pem").display().to_string();
        let key = dir.path().join("server.key").display().to_string();

        let azurite = Server::start(
            "Azurite (https, oauth)",
            &tools_dir().join("azurite/node_modules/.bin/azurite-blob"),
            &[AZURITE_ARGS, &["--oauth", "basic", "--cert", &cert, "--key", &key]].concat(),
        );
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/azure_ad_server.py");
        let identity = Server::start(
            "identity server",
            &script,
            &[
                "--port",
                "{port}",
                "--cert",
                &cert,
                "--key",
                &key,
                "--tenant",
                Self::TENANT,
                "--client-id",
                Self::CLIENT_ID,
                "--client-secret",
                Self::CLIENT_SECRET,
                "--assertion",
                Self::ASSERTION,
                "--msi-client-id",
                Self::MSI_CLIENT_ID,
            ],
        );
        AzureAd {
            endpoint: format!("https://127.0.0.1:{}/{}", azurite.port, Azurite::ACCOUNT),
            authority_host: format!("https://127.0.0.1:{}", identity.port),
            msi_endpoint: format!("https://127.0.0.1:{}/metadata/identity/oauth2/token", identity.port),
            ca_bundle: dir.path().join("ca.pem"),
            dir,
            identity,
            _azurite: azurite,
        }
    }

    /// The tokens the identity server issued so far, by flow (`client_secret`, `client_assertion`,
    /// `managed_identity`), in order.
    pub fn issued(&self) -> Vec<String> {
        self.identity.output().lines().filter_map(|line| line.strip_prefix("issued ")).map(str::to_owned).collect()
    }
}

/// A moto S3 server with its own in-memory state, for one test. It accepts any credentials.
pub struct Moto {
    /// `http://127.0.0.1:PORT` (use path-style addressing).
    pub endpoint: String,
    /// A region moto accepts.
    pub region: &'static str,
    /// Any access key works; this is the conventional one.
    pub access_key: &'static str,
    /// Any secret key works; this is the conventional one.
    pub secret_key: &'static str,
    /// The port the server listens on.
    pub port: u16,
    _server: Server,
}

impl Moto {
    /// Starts `moto_server` on a free port and waits until it accepts connections.
    ///
    /// # Panics
    /// When moto is not installed (the message says how to install it) or does not start within 20 s
    /// (the message holds its output).
    pub fn start() -> Moto {
        let binary = tools_dir().join("moto/bin/moto_server");
        let server = Server::start("moto", &binary, &["-H", "127.0.0.1", "-p", "{port}"]);
        Moto {
            endpoint: format!("http://127.0.0.1:{}", server.port),
            region: "us-east-1",
            access_key: "test",
            secret_key: "test",
            port: server.port,
            _server: server,
        }
    }

    /// A raw `object_store` client for `bucket` on this server, to look under chunkcache's API.
    pub fn object_store(&self, bucket: &str) -> std::sync::Arc<dyn object_store::ObjectStore> {
        let store = object_store::aws::AmazonS3Builder::new()
            .with_endpoint(&self.endpoint)
            .with_allow_http(true)
            .with_bucket_name(bucket)
            .with_region(self.region)
            .with_access_key_id(self.access_key)
            .with_secret_access_key(self.secret_key)
            .build()
            .unwrap();
        std::sync::Arc::new(store)
    }
}

/// Runs `future` to completion on a runtime of its own (the tests' setup requests are not async).
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(future)
}

/// The stand-ins of `tests/support/google_server.py`.
fn google_server() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/google_server.py")
}

/// The lines of a stand-in's log that start with `prefix`, without it.
fn log_lines(server: &Server, prefix: &str) -> Vec<String> {
    server.output().lines().filter_map(|line| line.strip_prefix(prefix)).map(str::to_owned).collect()
}

/// fake-gcs-server (in memory, for one test) behind the storage front of `tests/support/google_server.py`,
/// which lets through only the credentials the test names and turns the XML API's uploads, which
/// fake-gcs-server lacks, into JSON API uploads (see that file). Point clients at [`Gcs::endpoint`].
pub struct Gcs {
    /// The front's URL, as a client's GCS endpoint: `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// fake-gcs-server's own URL, for setup that needs no credentials (creating buckets).
    pub emulator_endpoint: String,
    front: Server,
    _emulator: Server,
}

impl Gcs {
    /// Starts fake-gcs-server and its front. The front accepts the bearer `access_token`, and self-signed JWTs
    /// of the service account `client_email` (what `object_store` sends with a service-account key).
    ///
    /// # Panics
    /// When fake-gcs-server is not installed (the message says how to install it), or a server does not start.
    pub fn start(access_token: Option<&str>, client_email: Option<&str>) -> Gcs {
        let binary = tools_dir().join("fake-gcs-server/bin/fake-gcs-server");
        // The public host is the one the XML API is served on (path-style: /BUCKET/OBJECT).
        let emulator = Server::start(
            "fake-gcs-server",
            &binary,
            &[
                "-scheme",
                "http",
                "-backend",
                "memory",
                "-host",
                "127.0.0.1",
                "-port",
                "{port}",
                "-public-host",
                "127.0.0.1",
                "-log-level",
                "warn",
            ],
        );
        let upstream = format!("127.0.0.1:{}", emulator.port);
        let mut args = vec!["storage", "--port", "{port}", "--upstream", &upstream];
        if let Some(token) = access_token {
            args.extend(["--access-token", token]);
        }
        if let Some(email) = client_email {
            args.extend(["--client-email", email]);
        }
        let front = Server::start("GCS front", &google_server(), &args);
        Gcs {
            endpoint: format!("http://127.0.0.1:{}", front.port),
            emulator_endpoint: format!("http://127.0.0.1:{}", emulator.port),
            front,
            _emulator: emulator,
        }
    }

    /// Creates `bucket` on the emulator (the JSON API's bucket insert).
    pub fn create_bucket(&self, bucket: &str) {
        let request = reqwest::Client::new()
            .post(format!("{}/storage/v1/b", self.emulator_endpoint))
            .header("content-type", "application/json")
            .body(format!(r#"{{"name":"{bucket}"}}"#));
        let status = block_on(request.send()).expect("bucket insert request").status();
        assert!(status.is_success(), "creating bucket {bucket} answered {status}");
    }

    /// The requests the front let through, as `METHOD PATH by access_token|self_signed_jwt`.
    pub fn authorized(&self) -> Vec<String> {
        log_lines(&self.front, "authorized ")
    }

    /// The requests the front refused for their credentials.
    pub fn refused(&self) -> Vec<String> {
        log_lines(&self.front, "refused ")
    }
}

/// Stand-ins for Google STS and IAM Credentials (`tests/support/google_server.py`, one process each, so that
/// a client that sends one's call to the other fails): STS exchanges [`GoogleIdentity::OIDC_TOKEN`] for the
/// pool provider of [`GoogleIdentity::audience`] into [`GoogleIdentity::FEDERATED_TOKEN`], and IAM
/// Credentials gives [`GoogleIdentity::ACCESS_TOKEN`] for [`GoogleIdentity::SERVICE_ACCOUNT`] to that
/// federated token. Every other credential, audience, scope or account is refused as Google refuses it.
pub struct GoogleIdentity {
    /// STS's base URL, as `gcp_sts_endpoint`.
    pub sts_endpoint: String,
    /// IAM Credentials' base URL, as `gcp_iam_credentials_endpoint`.
    pub iam_endpoint: String,
    sts: Server,
    iam: Server,
}

impl GoogleIdentity {
    /// The project that holds the pool.
    pub const PROJECT_NUMBER: &'static str = "123456789012";
    /// The workload identity pool.
    pub const POOL: &'static str = "harness-pool";
    /// Its OIDC provider.
    pub const PROVIDER: &'static str = "harness-provider";
    /// The one service account the pool's identities may impersonate.
    pub const SERVICE_ACCOUNT: &'static str = "ci-cache@chunkcache-test.iam.gserviceaccount.com";
    /// The one OIDC token the provider accepts.
    pub const OIDC_TOKEN: &'static str = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJwaXBlbGluZSJ9.gcp-oidc-token-signature";
    /// The federated token STS issues for it.
    pub const FEDERATED_TOKEN: &'static str = "federated-token-0f1e2d3c4b5a";
    /// The service account's access token IAM Credentials issues.
    pub const ACCESS_TOKEN: &'static str = "ya29.c.service-account-access-token-9a8b7c";

    /// The pool provider's audience, in the format Google expects.
    pub fn audience() -> String {
        format!(
            "//iam.googleapis.com/projects/{}/locations/global/workloadIdentityPools/{}/providers/{}",
            Self::PROJECT_NUMBER,
            Self::POOL,
            Self::PROVIDER
        )
    }

    /// Starts both stand-ins.
    ///
    /// # Panics
    /// When one does not start (with its output).
    pub fn start() -> GoogleIdentity {
        let audience = Self::audience();
        let sts = Server::start(
            "Google STS stand-in",
            &google_server(),
            &[
                "sts",
                "--port",
                "{port}",
                "--audience",
                &audience,
                "--subject-token",
                Self::OIDC_TOKEN,
                "--federated-token",
                Self::FEDERATED_TOKEN,
            ],
        );
        let iam = Server::start(
            "IAM Credentials stand-in",
            &google_server(),
            &[
                "iam",
                "--port",
                "{port}",
                "--federated-token",
                Self::FEDERATED_TOKEN,
                "--service-account",
                Self::SERVICE_ACCOUNT,
                "--access-token",
                Self::ACCESS_TOKEN,
            ],
        );
        GoogleIdentity {
            sts_endpoint: format!("http://127.0.0.1:{}", sts.port),
            iam_endpoint: format!("http://127.0.0.1:{}", iam.port),
            sts,
            iam,
        }
    }

    /// The token exchanges STS granted, as `audience=… scope=… subject_token_type=… requested_token_type=…`.
    pub fn exchanged(&self) -> Vec<String> {
        log_lines(&self.sts, "exchanged ")
    }

    /// The access tokens IAM Credentials issued, as `service_account=… scope=…`.
    pub fn issued(&self) -> Vec<String> {
        log_lines(&self.iam, "issued ")
    }

    /// What either refused, with Google's error.
    pub fn refused(&self) -> Vec<String> {
        [log_lines(&self.sts, "refused "), log_lines(&self.iam, "refused ")].concat()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accepts(port: u16) -> bool {
        TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], port)), Duration::from_millis(500)).is_ok()
    }

    #[test]
    fn azurite_starts_and_stops_with_its_handle() {
        let azurite = Azurite::start();
        assert!(accepts(azurite.port));
        assert_eq!(azurite.endpoint, format!("http://127.0.0.1:{}/devstoreaccount1", azurite.port));
        let port = azurite.port;
        drop(azurite);
        assert!(!accepts(port), "Azurite still listens on {port} after drop");
    }

    #[test]
    fn moto_starts_and_stops_with_its_handle() {
        let moto = Moto::start();
        assert!(accepts(moto.port));
        let port = moto.port;
        drop(moto);
        assert!(!accepts(port), "moto still listens on {port} after drop");
    }

    /// object_store's `PutMode::Create` on S3 sends `If-None-Match: *`; moto must answer the second put with
    /// 412, which object_store reports as `AlreadyExists`. Chunk uploads rely on this.
    #[tokio::test]
    async fn moto_supports_create_if_absent_puts() {
        use object_store::path::Path as ObjectPath;
        use object_store::{ObjectStore as _, PutMode, PutPayload};

        let moto = Moto::start();
        let bucket = "chunkcache-test";
        // moto accepts an unsigned CreateBucket.
        let status = reqwest::Client::new()
            .put(format!("{}/{bucket}", moto.endpoint))
            .send()
            .await
            .expect("CreateBucket request")
            .status();
        assert!(status.is_success(), "CreateBucket answered {status}");

        let store = moto.object_store(bucket);
        let path = ObjectPath::from("chunks/ab/cd");
        store.put_opts(&path, PutPayload::from_static(b"one"), PutMode::Create.into()).await.unwrap();
        let second = store.put_opts(&path, PutPayload::from_static(b"two"), PutMode::Create.into()).await;
        assert!(
            matches!(second, Err(object_store::Error::AlreadyExists { .. })),
            "second create-if-absent put: {second:?}"
        );
    }

    /// object_store's `PutMode::Create` on GCS sends `x-goog-if-generation-match: 0`; through the front,
    /// fake-gcs-server must answer the second put with 412, which object_store reports as `AlreadyExists`, and
    /// the XML API's reads, ranged reads, lists and deletes must work as GCS's do.
    #[tokio::test]
    async fn gcs_emulator_supports_what_object_store_sends() {
        use futures::TryStreamExt as _;
        use object_store::path::Path as ObjectPath;
        use object_store::{ObjectStore as _, ObjectStoreExt as _, PutMode, PutPayload};

        let token = "test-access-token";
        let gcs = tokio::task::spawn_blocking(move || {
            let gcs = Gcs::start(Some(token), None);
            gcs.create_bucket("chunkcache-test");
            gcs
        })
        .await
        .unwrap();
        let store = object_store::gcp::GoogleCloudStorageBuilder::new()
            .with_base_url(&gcs.endpoint)
            .with_bucket_name("chunkcache-test")
            .with_bearer_token(token)
            .with_client_options(object_store::ClientOptions::new().with_allow_http(true))
            .build()
            .unwrap();
        let path = ObjectPath::from("chunks/ab/cd ef");
        store.put_opts(&path, PutPayload::from_static(b"one two"), PutMode::Create.into()).await.unwrap();
        let second = store.put_opts(&path, PutPayload::from_static(b"two"), PutMode::Create.into()).await;
        assert!(
            matches!(second, Err(object_store::Error::AlreadyExists { .. })),
            "second create-if-absent put: {second:?}"
        );
        assert_eq!(store.get_range(&path, 4..7).await.unwrap().as_ref(), b"two");
        assert_eq!(store.head(&path).await.unwrap().size, 7);
        store.put(&path, PutPayload::from_static(b"replaced")).await.unwrap();
        assert_eq!(store.get(&path).await.unwrap().bytes().await.unwrap().as_ref(), b"replaced");
        let listed: Vec<_> = store.list(Some(&ObjectPath::from("chunks"))).try_collect().await.unwrap();
        assert_eq!(listed.iter().map(|meta| meta.location.to_string()).collect::<Vec<_>>(), ["chunks/ab/cd ef"]);
        store.delete(&path).await.unwrap();
        assert!(matches!(store.head(&path).await, Err(object_store::Error::NotFound { .. })));

        let anonymous = object_store::gcp::GoogleCloudStorageBuilder::new()
            .with_base_url(&gcs.endpoint)
            .with_bucket_name("chunkcache-test")
            .with_bearer_token("some other token")
            .with_client_options(object_store::ClientOptions::new().with_allow_http(true))
            .build()
            .unwrap();
        assert!(anonymous.head(&path).await.is_err());
        assert_eq!(gcs.refused().len(), 1, "{:?}", gcs.refused());
        assert!(gcs.authorized().iter().all(|line| line.ends_with(" by access_token")));
        tokio::task::spawn_blocking(move || drop(gcs)).await.unwrap();
    }
}
