//! The real servers these tests start besides the gateway harness: server-everything
//! over Streamable HTTP, a gateway with extra environment, and a private CA for TLS.
#![allow(dead_code, clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use crate::common::{self, free_port, wait_until};

/// `@modelcontextprotocol/server-everything` over Streamable HTTP on a free port.
pub struct Everything {
    child: Child,
    port: u16,
    log: Arc<Mutex<String>>,
}

impl Everything {
    pub fn start() -> Everything {
        let deps = common::deps();
        let port = free_port();
        let mut child = Command::new(&deps.node)
            .arg(&deps.everything_js)
            .arg("streamableHttp")
            .env("PORT", port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start server-everything");
        let log = Arc::new(Mutex::new(String::new()));
        for pipe in [
            child.stdout.take().map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
            child.stderr.take().map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    let mut l = log.lock();
                    l.push_str(&line);
                    l.push('\n');
                }
            });
        }
        let up = wait_until(Duration::from_secs(30), || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
        let e = Everything { child, port, log };
        assert!(up, "server-everything did not listen on {port}; log:\n{}", e.log());
        e
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/mcp", self.port)
    }

    pub fn log(&self) -> String {
        self.log.lock().clone()
    }
}

impl Drop for Everything {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
/// A gateway started with extra environment variables (the harness's inherits ours).
pub struct EnvGateway {
    child: Child,
    pub mcp_url: String,
}

impl EnvGateway {
    pub fn start(yaml: &str, env: &[(&str, &str)]) -> EnvGateway {
        let dir = common::scratch_dir("gw-env");
        let path = dir.join("config.yaml");
        std::fs::write(&path, yaml).expect("config");
        let mut child = Command::new(common::bin())
            .args(["gateway", "--config", path.to_str().expect("path")])
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn shadowcat");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(url) = line.split_whitespace().find_map(|p| p.strip_prefix("mcp=")) {
                    let _ = tx.send(url.to_owned());
                }
            }
        });
        let mcp_url = rx.recv_timeout(Duration::from_secs(30)).expect("gateway listening");
        EnvGateway { child, mcp_url }
    }
}

impl Drop for EnvGateway {
    fn drop(&mut self) {
        common::signal(self.child.id() as i32, "TERM");
        if !wait_until(Duration::from_secs(10), || matches!(self.child.try_wait(), Ok(Some(_)))) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// A CA (its PEM) and a TLS server config for `localhost` signed by it.
pub fn private_ca() -> (String, Arc<tokio_rustls::rustls::ServerConfig>) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    use tokio_rustls::rustls;
    let ca_key = KeyPair::generate().expect("key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).expect("CA");
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().expect("key");
    let leaf = CertificateParams::new(vec!["localhost".to_owned()])
        .expect("params")
        .signed_by(&leaf_key, &issuer)
        .expect("leaf");
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into());
    let mut config =
        rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(vec![leaf.der().clone()], key)
            .expect("server config");
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    (ca_cert.pem(), Arc::new(config))
}
