//! Interop with aiocoap 0.4.17 (a third-party RFC 8613 implementation),
//! both directions, over real UDP on 127.0.0.1, including each side's
//! Echo-based recovery after a restart (RFC 8613 App. B.1.2).
//!
//! The venv comes from `interop/aiocoap/setup-venv.sh` (idempotent); set
//! `SSM_AIOCOAP_PYTHON` to reuse one. Contexts are generated fresh per run.
use ssm_coap::{Code, Message, MessageType, Token};
use ssm_testkit::{aiocoap_python, repo, TempDir};
mod common;

use ssm_oscore::*;
use ssm_runtime::random_bytes;
use ssm_runtime::store::FileSequenceStore;
use ssm_runtime::udp::OscoreClient;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::UdpSocket;
use tokio::process::{Child, Command};

struct Keys {
    secret: [u8; 32],
    client_id: Vec<u8>,
    server_id: Vec<u8>,
}

impl Keys {
    fn fresh() -> Self {
        Keys {
            secret: random_bytes(),
            client_id: random_bytes::<3>().to_vec(),
            server_id: random_bytes::<2>().to_vec(),
        }
    }

    fn ours(&self, client: bool, ssn: SequenceNumber, replay: ReplayState) -> SecurityContext {
        let (s, r) = if client {
            (&self.client_id, &self.server_id)
        } else {
            (&self.server_id, &self.client_id)
        };
        SecurityContext::derive(
            &ContextParams {
                master_secret: &self.secret,
                master_salt: None,
                id_context: None,
                sender_id: Id::new(s).unwrap(),
                recipient_id: Id::new(r).unwrap(),
            },
            ssn,
            replay,
        )
        .unwrap()
    }

    /// An aiocoap FilesystemSecurityContext directory.
    fn write_aiocoap(&self, dir: &Path, client: bool) {
        let (s, r) = if client {
            (&self.client_id, &self.server_id)
        } else {
            (&self.server_id, &self.client_id)
        };
        std::fs::create_dir_all(dir).unwrap();
        let settings = serde_json::json!({
            "sender-id_hex": hex::encode(s),
            "recipient-id_hex": hex::encode(r),
            "secret_hex": hex::encode(self.secret),
            "algorithm": "AES-CCM-16-64-128",
            "kdf-hashfun": "sha256",
        });
        std::fs::write(dir.join("settings.json"), settings.to_string()).unwrap();
    }
}

async fn start_our_server(
    keys: &Keys,
    dir: &Path,
    restarted: bool,
) -> (SocketAddr, tokio::task::JoinHandle<std::io::Result<()>>) {
    common::start_server(dir, restarted, |ssn, replay| keys.ours(false, ssn, replay)).await
}

/// Runs aiocoap-client; returns (exit ok, stdout, stderr).
async fn aiocoap_client(py: &Path, creds: &Path, args: &[&str]) -> (bool, Vec<u8>, String) {
    let bin = py.parent().unwrap().join("aiocoap-client");
    let fut = Command::new(bin)
        .arg("-vv")
        .arg("--credentials")
        .arg(creds)
        .args(args)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), fut)
        .await
        .expect("aiocoap-client timed out")
        .unwrap();
    (
        out.status.success(),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn aiocoap_client_against_our_server() {
    let py = aiocoap_python();
    let keys = Keys::fresh();
    let dir = TempDir::new("test-client");
    let client_dir = dir.join("aiocoap-client-ctx");
    keys.write_aiocoap(&client_dir, true);
    let creds = dir.join("creds.json");
    std::fs::write(&creds, serde_json::json!({"coap://127.0.0.1*": {"oscore": {"basedir": format!("{}/", client_dir.display())}}}).to_string()).unwrap();

    let (addr, server) = start_our_server(&keys, &dir, false).await;
    let url = |p: &str| format!("coap://{addr}{p}");
    let (ok, out, err) = aiocoap_client(&py, &creds, &[&url("/hello")]).await;
    assert!(ok, "GET failed: {err}");
    assert_eq!(out, b"hello from ocf-ssm");
    let (ok, out, err) = aiocoap_client(
        &py,
        &creds,
        &["-m", "POST", "--payload", "interop payload", &url("/echo")],
    )
    .await;
    assert!(ok, "POST failed: {err}");
    assert_eq!(out, b"interop payload");

    // Restart our server without its replay window: it must challenge with
    // a protected 4.01 + Echo, which aiocoap answers automatically.
    server.abort();
    let (addr, server) = start_our_server(&keys, &dir, true).await;
    let (ok, out, err) = aiocoap_client(&py, &creds, &[&format!("coap://{addr}/hello")]).await;
    assert!(ok, "GET after our restart failed: {err}");
    assert_eq!(out, b"hello from ocf-ssm");
    assert!(
        err.contains("4.01 Unauthorized / Echo"),
        "aiocoap did not go through Echo recovery:\n{err}"
    );
    server.abort();
    std::fs::remove_dir_all(&dir).unwrap();
}

struct PyServer(Child, u16);

async fn start_aiocoap_server(py: &Path, ctx: &Path) -> PyServer {
    let mut child = Command::new(py)
        .arg(repo().join("interop/aiocoap/oscore_server.py"))
        .args(["--bind", "127.0.0.1", "--port", "0", "--context"])
        .arg(ctx)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("start oscore_server.py");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("READY in time")
        .unwrap()
        .expect("READY line");
    let port = line
        .strip_prefix("READY ")
        .expect("READY <port>")
        .trim()
        .parse()
        .unwrap();
    PyServer(child, port)
}

#[tokio::test(flavor = "multi_thread")]
async fn our_client_against_aiocoap_server() {
    let py = aiocoap_python();
    let keys = Keys::fresh();
    let dir = TempDir::new("test-server");
    let server_dir = dir.join("aiocoap-server-ctx");
    keys.write_aiocoap(&server_dir, false);
    let mut srv = start_aiocoap_server(&py, &server_dir).await;
    let addr: SocketAddr = ([127, 0, 0, 1], srv.1).into();

    let store = FileSequenceStore::new(dir.join("client.ssn"));
    let ssn = SequenceNumber::resume(0, 16);
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut client = OscoreClient::new(
        socket,
        keys.ours(true, ssn, ReplayState::Window(ReplayWindow::new(32))),
        store,
    );
    client.config.ack_timeout = Duration::from_millis(500);

    let mut get = Message::new(MessageType::Confirmable, Code::GET, 0, Token::default());
    get.set_uri_path("/hello");
    let r = client.request(addr, get.clone()).await.unwrap();
    assert_eq!(
        (r.code, r.payload.as_slice()),
        (Code::CONTENT, &b"hello from aiocoap"[..])
    );

    let mut post = Message::new(MessageType::Confirmable, Code::POST, 0, Token::default());
    post.set_uri_path("/echo");
    post.payload = b"from rust".to_vec();
    let r = client.request(addr, post).await.unwrap();
    assert_eq!(
        (r.code, r.payload.as_slice()),
        (Code::CHANGED, &b"from rust"[..])
    );

    let mut on = Message::new(MessageType::Confirmable, Code::POST, 0, Token::default());
    on.set_uri_path("/BinarySwitchResURI");
    on.add_option_uint(ssm_coap::OptionNumber::CONTENT_FORMAT, 60);
    on.payload = vec![0xa1, 0x65, b'v', b'a', b'l', b'u', b'e', 0xf5];
    assert_eq!(client.request(addr, on).await.unwrap().code, Code::CHANGED);
    let mut read = Message::new(MessageType::Confirmable, Code::GET, 0, Token::default());
    read.set_uri_path("/BinarySwitchResURI");
    let r = client.request(addr, read).await.unwrap();
    assert_eq!(
        r.payload,
        vec![0xa1, 0x65, b'v', b'a', b'l', b'u', b'e', 0xf5]
    );
    assert_eq!(client.echo_retries, 0);

    // kill -9 the aiocoap server and restart it from the same directory: its
    // replay window is "unknown", so it challenges with 4.01 + Echo.
    srv.0.kill().await.unwrap();
    let mut srv = start_aiocoap_server(&py, &server_dir).await;
    let addr: SocketAddr = ([127, 0, 0, 1], srv.1).into();
    let r = client.request(addr, get).await.unwrap();
    assert_eq!(
        (r.code, r.payload.as_slice()),
        (Code::CONTENT, &b"hello from aiocoap"[..])
    );
    assert_eq!(client.echo_retries, 1, "the Echo challenge was answered");
    srv.0.kill().await.unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}
