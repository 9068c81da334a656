//! A throw-away certificate authority for TLS tests against the lab's servers, made with the
//! `openssl` CLI.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

/// openssl commands making a CA (P-256, one day) and a server certificate it signs for
/// localhost and 127.0.0.1, run in the PKI's directory.
const PKI_STEPS: [&str; 3] = [
    "req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.pem -days 1 \
     -subj /CN=peerlink-test-ca -addext basicConstraints=critical,CA:TRUE \
     -addext keyUsage=critical,keyCertSign,cRLSign",
    "req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout server.key -out server.csr \
     -subj /CN=localhost",
    "x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 1 -extfile ext.cnf",
];

/// A throw-away CA and a server certificate for localhost / 127.0.0.1, made with openssl.
pub struct TestPki {
    dir: PathBuf,
    pub ca_cert: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
}

impl TestPki {
    /// Makes the CA and certificate in a fresh temporary directory, or skips the test (see
    /// `lab::skip`) and returns `None` when the openssl CLI is missing.
    pub fn create() -> Option<Self> {
        if Command::new("openssl").arg("version").output().is_err() {
            super::lab::skip(
                "the openssl CLI makes the certificates and is missing (apt-get install openssl)",
            );
            return None;
        }
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "peerlink-pki-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("ext.cnf"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n",
        )
        .unwrap();
        for step in PKI_STEPS {
            let out = Command::new("openssl")
                .args(step.split(' '))
                .current_dir(&dir)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "openssl {step}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Some(Self {
            ca_cert: dir.join("ca.pem"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server.key"),
            dir,
        })
    }
}

impl Drop for TestPki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
